package replication

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"time"
)

// A session is one authenticated link with a peer: its send loop (epochs,
// resync and control frames from the peer's queue), its receive loop, and
// the dispatch of each frame it reads.

// session is one live connection with a peer.
type session struct {
	p      *peer
	conn   net.Conn
	gen    int
	out    *bufio.Writer
	seq    uint64
	in     *frameReader
	remote stateMsg
	// dialed: this side connected to the peer's configured address.
	dialed bool
	// target side: the open epoch's operations, applied at its barrier.
	pending      []pendingOp
	pendingBytes int64
	rsStarted    bool
	// discarding: this side is the target of a resync that discards its
	// own writes (a split brain lost, a crashed primary's tail). A block
	// that differs from the source's is counted as discarded when this
	// side wrote it: marked in mine (its bitmap at the handshake) and not
	// in theirs (the source's), or in both when mine is exact (a split
	// brain; a crashed primary's marks also cover its hot extents, where
	// a block the source wrote may not have been written here at all).
	discarding bool
	mine       []uint64
	theirs     []uint64
	mineExact  bool
}

type pendingOp struct {
	kind opKind
	off  int64
	n    int64
	data []byte
	buf  *payloadBuf // data's buffer, given back once applied or dropped
}

// send writes one frame without copying its payload into a frame buffer.
func (s *session) send(typ frameType, payload []byte) error {
	s.seq++
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[0:], frameMagic)
	h[4] = byte(typ)
	binary.BigEndian.PutUint32(h[8:], uint32(len(payload)))
	binary.BigEndian.PutUint64(h[12:], s.seq)
	sum := crc32.Update(crc32.Checksum(h[:], castagnoli), castagnoli, payload)
	var tr [trailerSize]byte
	binary.BigEndian.PutUint32(tr[:], sum)
	s.out.Write(h[:])
	if len(payload) >= directPayload {
		// Past the buffer rather than copied into it: the header
		// (and what was buffered before it) goes first.
		if err := s.out.Flush(); err != nil {
			return err
		}
		if _, err := s.conn.Write(payload); err != nil {
			return err
		}
	} else {
		s.out.Write(payload)
	}
	_, err := s.out.Write(tr[:])
	return err
}

// directPayload is the payload size from which send writes the payload to
// the connection itself: the bufio buffer would copy up to its size of it
// (a quarter of a 1 MiB write; runtime.memmove was a fifth of the
// process's CPU in bench/replication's volume run).
const directPayload = 64 << 10

func newSession(conn net.Conn) *session {
	in := newFrameReader(conn)
	in.max = handshakeBuffer
	return &session{conn: conn, out: bufio.NewWriterSize(conn, handshakeBuffer), in: in}
}

// authenticated switches the session to its stream buffers. The handshake
// reads exact frames from the connection, so nothing is left behind.
func (s *session) authenticated() error {
	if err := s.out.Flush(); err != nil {
		return err
	}
	s.out = bufio.NewWriterSize(s.conn, streamBuffer)
	s.in.r, s.in.max = bufio.NewReaderSize(s.conn, streamBuffer), 0
	return nil
}

// sendLoop writes queued frames, and pings when idle.
func (p *peer) sendLoop(s *session) {
	v := p.v
	ping := v.cfg.PingInterval.D()
	ticker := time.NewTicker(ping)
	defer ticker.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				p.mu.Lock()
				p.cond.Broadcast()
				p.mu.Unlock()
			}
		}
	}()
	last := time.Now()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && p.connGen == s.gen && p.conn != nil && time.Since(last) < ping {
			p.cond.Wait()
		}
		if p.connGen != s.gen || p.conn == nil {
			p.mu.Unlock()
			return
		}
		batch := p.queue
		p.queue = nil
		var sent int64
		for _, it := range batch {
			sent += it.bytes
		}
		p.queued -= sent
		catchUp := p.state == Ahead
		p.mu.Unlock()
		var err error
		if len(batch) == 0 {
			err = s.send(fPing, nil)
		}
		for i, it := range batch {
			if err = s.send(it.typ, it.payload); err != nil {
				for _, left := range batch[i:] {
					left.buf.release()
				}
				break
			}
			// The connection has it (a write returns once the kernel
			// or TLS copied it): its buffer may be reused.
			it.buf.release()
		}
		if err == nil {
			err = s.out.Flush()
		}
		if err != nil {
			s.conn.Close()
			return
		}
		v.met.shipped.WithLabelValues(p.name).Add(float64(sent))
		last = time.Now()
		if catchUp {
			p.startCatchUp(s.gen)
		}
	}
}

// startCatchUp begins the resync of a peer that fell behind, once what
// was queued before has been sent.
func (p *peer) startCatchUp(gen int) {
	p.mu.Lock()
	if p.state != Ahead || p.connGen != gen || len(p.queue) > 0 {
		p.mu.Unlock()
		return
	}
	p.state = SyncSource
	p.mu.Unlock()
	p.v.log.Info("catching up a peer that fell behind", "peer", p.name, "dirty_blocks", p.bm.ones())
	p.startResync(gen)
}

func (p *peer) enqueue(typ frameType, payload []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enqueueLocked(item{typ: typ, payload: payload})
}

// receiveLoop reads the peer's frames until the connection fails.
func (p *peer) receiveLoop(s *session) error {
	v := p.v
	timeout := v.cfg.Timeout.D()
	for {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		f, err := s.in.read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return fmt.Errorf("no frame from %s for %v (half-open link?)", p.name, timeout)
			}
			if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrChecksum) || errors.Is(err, ErrSequence) || errors.Is(err, ErrFrameSize) {
				v.met.badFrames.Inc()
			}
			return err
		}
		p.mu.Lock()
		p.lastRecv = time.Now()
		p.mu.Unlock()
		if err := p.handle(s, f); err != nil {
			if errors.Is(err, ErrBadFrame) {
				v.met.badFrames.Inc()
			}
			return err
		}
	}
}

// changesReplica: the frames that write to this replica or set its
// generation. Only a secondary takes them: data flows from the primary,
// or, with no primary, from the side that resyncs (the handshake's source,
// or the side an operator ran a repair on).
func changesReplica(t frameType) bool {
	switch t {
	case fWrite, fTrim, fZero, fBarrier, fGen, fBehind, fRSData, fRSCsum, fRSDone, fSkipSync, fResize:
		return true
	}
	return false
}

func (p *peer) handle(s *session, f frame) error {
	v := p.v
	if changesReplica(f.typ) && v.Role() == Primary {
		v.log.Error("refusing a frame that would change this primary", "peer", p.name, "frame", f.typ)
		return fmt.Errorf("%w: %s sent frame type %d, which changes a replica, to this primary", ErrBadFrame, p.name, f.typ)
	}
	d := dec{b: f.payload}
	switch f.typ {
	case fPing:
		return d.done()
	case fRole:
		r := Secondary
		if d.u8() == 1 {
			r = Primary
		}
		p.mu.Lock()
		p.remoteRole = r
		p.mu.Unlock()
		return d.done()
	case fWrite, fTrim, fZero:
		return s.takeOp(f.typ, &d)
	case fBarrier:
		return s.takeBarrier(&d)
	case fBarrierAck:
		epoch := d.u64()
		if err := d.done(); err != nil {
			return err
		}
		p.ack(epoch)
		return nil
	case fGen:
		return s.takeGen(&d)
	case fSkipSync:
		return s.takeSkipSync(&d)
	case fBehind:
		if err := d.done(); err != nil {
			return err
		}
		s.dropPending()
		v.setDisk(Outdated)
		p.setState(Behind)
		return nil
	case fRSData:
		return s.takeResyncData(&d)
	case fRSCsum:
		return s.answerCsums(&d)
	case fRSNeed:
		return p.takeNeed(&d)
	case fRSDone:
		cur, hist := decodeGen(&d)
		if err := d.done(); err != nil {
			return err
		}
		return s.finishTarget(cur, hist)
	case fVerifyReq:
		return s.answerVerify(&d)
	case fVerifyResp:
		return p.takeVerify(&d)
	case fResize:
		return p.takeResize(&d)
	case fResizeDone:
		return p.takeResizeDone(&d)
	}
	return fmt.Errorf("%w: unexpected frame type %d after the handshake", ErrBadFrame, f.typ)
}

// announceRole tells the connected peers of a role change.
func (v *Volume) announceRole(r Role) {
	var e enc
	if r == Primary {
		e.u8(1)
	} else {
		e.u8(0)
	}
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		if p.conn != nil {
			p.enqueueLocked(item{typ: fRole, payload: e.b})
		}
		p.mu.Unlock()
	}
}

// waitState waits until the peer reaches one of states, for tests and
// operators.
func (p *peer) waitState(ctx context.Context, states ...PeerState) error {
	defer p.wakeOnDone(ctx)()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for _, st := range states {
			if p.state == st {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("peer %s is %s: %w", p.name, p.state, ctx.Err())
		}
		p.cond.Wait()
	}
}

// Buffers of a session: small until the peer proved the key (a
// stranger's connection costs a few KiB), then large for the data.
const (
	handshakeBuffer = 4 << 10
	streamBuffer    = 256 << 10
)
