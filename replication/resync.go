package replication

import (
	"crypto/sha256"
	"fmt"
	"math/bits"
	"time"
)

// Resync: the source walks its bitmap for the peer in disk order and sends
// the marked blocks (with csums, first their checksums, and only the
// blocks the target does not already have). Each chunk is read under the
// write lock and queued in the same stream as new writes, so a resync can
// never bring back older data over a newer write. Chunks ride in epochs;
// a chunk's bits are cleared when its epoch is acknowledged, so a broken
// link leaves them set. The target is Inconsistent until the last chunk,
// then takes the source's generation.

const resyncChunk = 256 // blocks (1 MiB)

type rsNeed struct {
	off  int64
	n    int64
	mask []uint64
}

func blockHashes(be Backend, off, n int64) ([][16]byte, error) {
	buf := make([]byte, n*BlockSize)
	if _, err := be.ReadAt(buf, off); err != nil {
		return nil, err
	}
	out := make([][16]byte, n)
	for i := range out {
		sum := sha256.Sum256(buf[int64(i)*BlockSize : int64(i+1)*BlockSize])
		copy(out[i][:], sum[:16])
	}
	return out, nil
}

func (p *peer) sessionAlive(gen int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connGen == gen && p.conn != nil && p.state == SyncSource
}

// waitRoom waits until the peer's queue has room (the resync never fills
// the send buffer on its own).
func (p *peer) waitRoom(gen int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.queued+p.unackedBytes > int64(p.v.cfg.SendBuffer)/2 {
		if p.connGen != gen || p.conn == nil || p.state != SyncSource {
			return false
		}
		p.cond.Wait()
	}
	return p.connGen == gen && p.conn != nil && p.state == SyncSource
}

// sendChunk reads blocks [first, first+n) and queues them as resync data
// in the current epoch.
func (p *peer) sendChunk(first, n int64) error {
	v := p.v
	v.wmu.Lock()
	defer v.wmu.Unlock()
	buf := make([]byte, n*BlockSize)
	if _, err := v.be.ReadAt(buf, first*BlockSize); err != nil {
		return fmt.Errorf("read for resync: %w", err)
	}
	v.mu.Lock()
	epoch := v.epoch
	v.epochWrites++
	v.mu.Unlock()
	var e enc
	e.u64(uint64(first * BlockSize))
	e.b = append(e.b, buf...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.epoch != epoch {
		p.cur = &epochRec{epoch: epoch, first: time.Now()}
		p.unacked = append(p.unacked, p.cur)
	}
	p.cur.resync = append(p.cur.resync, [2]int64{first, first + n - 1})
	p.cur.bytes += int64(len(buf))
	p.unackedBytes += int64(len(buf))
	p.enqueueLocked(item{typ: fRSData, payload: e.b, bytes: int64(len(buf))})
	p.rsSinceBarrier += int64(len(buf))
	if p.rsSinceBarrier >= min(4<<20, int64(v.cfg.SendBuffer)/4) {
		// Close the epoch so the target makes the chunks durable and
		// acknowledges them (which clears their bits).
		p.rsSinceBarrier = 0
		p.mu.Unlock()
		v.forceEpoch()
		p.mu.Lock()
	}
	return nil
}

// throttle keeps the resync under resync_rate.
type throttle struct {
	rate  int64
	start time.Time
	sent  int64
}

func (t *throttle) wait(n int64) {
	t.sent += n
	if t.rate <= 0 {
		return
	}
	due := t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

// startResync runs the source side of a resync in a goroutine the volume
// waits for on Close.
func (p *peer) startResync(gen int) {
	p.v.wg.Add(1)
	go func() {
		defer p.v.wg.Done()
		p.resync(gen)
	}()
}

// resync runs the source side until the peer holds every marked block.
func (p *peer) resync(gen int) {
	v := p.v
	words := p.bm.snapshot()
	total := int64(0)
	for _, w := range words {
		total += int64(bits.OnesCount64(w))
	}
	p.mu.Lock()
	p.resyncTotal, p.resyncSent = total*BlockSize, 0
	p.mu.Unlock()
	v.log.Info("resync started", "peer", p.name, "blocks", total, "csums", v.cfg.Csums)
	start := time.Now()
	th := throttle{rate: int64(v.cfg.ResyncRate), start: start}
	var err error
	if v.cfg.Csums {
		err = p.resyncCsums(gen, words, &th)
	} else {
		runs(words, resyncChunk, func(first, n int64) bool {
			if !p.waitRoom(gen) {
				err = errSessionGone
				return false
			}
			th.wait(n * BlockSize)
			err = p.sendChunk(first, n)
			return err == nil
		})
	}
	if err == nil {
		err = p.finishSource(gen)
	}
	if err != nil {
		if err != errSessionGone {
			v.log.Warn("resync interrupted", "peer", p.name, "err", err)
			p.mu.Lock()
			conn := p.conn
			p.mu.Unlock()
			if conn != nil {
				conn.Close()
			}
		}
		return
	}
	v.log.Info("resync finished", "peer", p.name, "bytes", total*BlockSize, "took", time.Since(start).Round(time.Millisecond))
}

var errSessionGone = fmt.Errorf("replication session ended")

// forceEpochLocked closes the epoch from outside the write path.
func (v *Volume) forceEpochLocked() {
	v.wmu.Lock()
	v.forceEpoch()
	v.wmu.Unlock()
}

// finishSource waits for every resync chunk to be acknowledged (and for
// blocks marked meanwhile, if the peer fell behind again, to be sent),
// then hands the peer this side's generation.
func (p *peer) finishSource(gen int) error {
	v := p.v
	for {
		v.forceEpochLocked()
		p.mu.Lock()
		for len(p.unacked) > 0 && p.connGen == gen && p.conn != nil && p.state == SyncSource {
			p.cond.Wait()
		}
		alive := p.connGen == gen && p.conn != nil && p.state == SyncSource
		p.mu.Unlock()
		if !alive {
			return errSessionGone
		}
		if p.bm.ones() == 0 {
			break
		}
		// Blocks were marked during the resync (the peer fell behind, or a
		// chunk was re-marked): another pass.
		words := p.bm.snapshot()
		var err error
		runs(words, resyncChunk, func(first, n int64) bool {
			if !p.waitRoom(gen) {
				err = errSessionGone
				return false
			}
			err = p.sendChunk(first, n)
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	v.wmu.Lock()
	v.mu.Lock()
	v.m.Bitmap[p.name] = 0
	v.m.CrashedPrimary = false
	cur, hist := v.m.Current, append([]uint64(nil), v.m.History...)
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err == nil {
		p.mu.Lock()
		if p.connGen == gen && p.state == SyncSource {
			p.state = InSync
			p.enqueueLocked(item{typ: fRSDone, payload: encodeGen(cur, hist)})
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	v.wmu.Unlock()
	if err != nil {
		return err
	}
	return p.bm.flush()
}

// resyncCsums sends checksums first; the target answers which blocks it
// lacks, and only those are sent.
func (p *peer) resyncCsums(gen int, words []uint64, th *throttle) error {
	v := p.v
	p.mu.Lock()
	p.needs = make(chan rsNeed, 64)
	needs := p.needs
	p.mu.Unlock()
	outstanding := 0
	var err error
	handle := func(nd rsNeed) error {
		outstanding--
		for i := int64(0); i < nd.n; i++ {
			blk := nd.off/BlockSize + i
			if nd.mask[i/64]&(1<<(i%64)) == 0 {
				p.bm.clear(blk)
			}
		}
		var ferr error
		runs(nd.mask, resyncChunk, func(first, n int64) bool {
			if !p.waitRoom(gen) {
				ferr = errSessionGone
				return false
			}
			th.wait(n * BlockSize)
			ferr = p.sendChunk(nd.off/BlockSize+first, n)
			return ferr == nil
		})
		return ferr
	}
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	wait := func() error {
		timeout.Reset(v.cfg.Timeout.D() * 4)
		select {
		case nd, ok := <-needs:
			if !ok {
				return errSessionGone
			}
			return handle(nd)
		case <-timeout.C:
			return fmt.Errorf("no checksum answer from %s", p.name)
		}
	}
	runs(words, resyncChunk, func(first, n int64) bool {
		if !p.sessionAlive(gen) {
			err = errSessionGone
			return false
		}
		for outstanding >= 16 {
			if err = wait(); err != nil {
				return false
			}
		}
		hashes, herr := blockHashes(v.be, first*BlockSize, n)
		if herr != nil {
			err = fmt.Errorf("read for resync checksums: %w", herr)
			return false
		}
		var e enc
		e.u64(uint64(first * BlockSize))
		e.u32(uint32(n))
		for _, h := range hashes {
			e.b = append(e.b, h[:]...)
		}
		p.enqueue(fRSCsum, e.b)
		outstanding++
		return true
	})
	for err == nil && outstanding > 0 {
		err = wait()
	}
	return err
}

// answerCsums (target) compares the source's checksums with local blocks
// and asks for those that differ.
func (s *session) answerCsums(d *dec) error {
	v := s.p.v
	off := int64(d.u64())
	n := int64(d.u32())
	if n <= 0 || n > resyncChunk || off%BlockSize != 0 || v.checkRange(off, n*BlockSize) != nil || int64(len(d.b)) != n*16 {
		return fmt.Errorf("%w: checksum request", ErrBadFrame)
	}
	s.startTarget()
	local, err := blockHashes(v.be, off, n)
	if err != nil {
		return fmt.Errorf("read for resync checksums: %w", err)
	}
	mask := make([]uint64, (n+63)/64)
	for i := int64(0); i < n; i++ {
		if string(local[i][:]) != string(d.b[i*16:(i+1)*16]) {
			mask[i/64] |= 1 << (i % 64)
		}
	}
	var e enc
	e.u64(uint64(off))
	e.u32(uint32(n))
	for _, w := range mask {
		e.u64(w)
	}
	s.p.enqueue(fRSNeed, e.b)
	return nil
}

// takeNeed (source) hands the target's answer to the resync loop.
func (p *peer) takeNeed(d *dec) error {
	off := int64(d.u64())
	n := int64(d.u32())
	if n <= 0 || n > resyncChunk || int64(len(d.b)) != (n+63)/64*8 {
		return fmt.Errorf("%w: checksum answer", ErrBadFrame)
	}
	mask := make([]uint64, (n+63)/64)
	for i := range mask {
		mask[i] = d.u64()
	}
	p.mu.Lock()
	ch := p.needs
	p.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: unexpected checksum answer", ErrBadFrame)
	}
	select {
	case ch <- rsNeed{off: off, n: n, mask: mask}:
	default:
		return fmt.Errorf("%w: more checksum answers than requests", ErrBadFrame)
	}
	return nil
}
