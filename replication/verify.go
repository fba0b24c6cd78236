package replication

import (
	"context"
	"fmt"
	"time"
)

// Online verify: the replica asks a peer in sync to compare block
// checksums, chunk by chunk, and reports (and, if asked, resyncs) the
// blocks that differ. On the primary each request is preceded by a closed
// epoch, so the peer compares after applying every write that came before
// it.

// VerifyReport is the outcome of a verify.
type VerifyReport struct {
	Peer      string  `json:"peer"`
	Checked   int64   `json:"checked_blocks"`
	Differing []int64 `json:"differing_blocks"`
	Resynced  bool    `json:"resynced"`
}

// Verify compares this replica with peer; with repair, differing blocks
// are marked and resynced from this side, which must be the primary, or
// either side when neither is (the operator names the good copy by where
// they run it). The peer refuses the resync frames when it is primary.
func (v *Volume) Verify(ctx context.Context, peerName string, repair bool) (VerifyReport, error) {
	return v.verify(ctx, peerName, repair, nil)
}

// verify is Verify, telling progress how many blocks were compared and
// how many differ as it goes. (One function on purpose: the compare loop
// with its window of outstanding requests and the repair reads as one.)
func (v *Volume) verify(ctx context.Context, peerName string, repair bool, progress func(checked int64, differing int)) (VerifyReport, error) {
	p := v.peers[peerName]
	if p == nil {
		return VerifyReport{}, fmt.Errorf("no peer %q", peerName)
	}
	if repair && v.Role() != Primary {
		p.mu.Lock()
		remote := p.remoteRole
		p.mu.Unlock()
		if remote == Primary {
			return VerifyReport{Peer: peerName}, fmt.Errorf("%w (%s is primary)", ErrRepairDirection, peerName)
		}
	}
	rep := VerifyReport{Peer: peerName}
	type pending struct {
		first int64
		ch    chan []int64
	}
	var inflight []pending
	var compared int64
	collect := func(pd pending) error {
		select {
		case diff, ok := <-pd.ch:
			if !ok {
				return fmt.Errorf("verify: %w", ErrPeerNotInSync)
			}
			for _, b := range diff {
				rep.Differing = append(rep.Differing, pd.first+b)
			}
			compared = min(pd.first+resyncChunk, v.blocks())
			if progress != nil {
				progress(compared, len(rep.Differing))
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(4 * v.cfg.Timeout.D()):
			return fmt.Errorf("verify: no answer from %s", peerName)
		}
	}
	for first := int64(0); first < v.blocks(); first += resyncChunk {
		n := min(int64(resyncChunk), v.blocks()-first)
		for len(inflight) >= 16 {
			if err := collect(inflight[0]); err != nil {
				return rep, err
			}
			inflight = inflight[1:]
		}
		ch, err := p.askVerify(first, n)
		if err != nil {
			return rep, err
		}
		inflight = append(inflight, pending{first: first, ch: ch})
		rep.Checked += n
	}
	for _, pd := range inflight {
		if err := collect(pd); err != nil {
			return rep, err
		}
	}
	v.met.verifyDiffs.Add(float64(len(rep.Differing)))
	if len(rep.Differing) > 0 {
		v.log.Warn("verify found differing blocks", "peer", peerName, "blocks", len(rep.Differing))
	}
	if repair && len(rep.Differing) > 0 {
		for _, b := range rep.Differing {
			p.bm.setRange(b, b)
		}
		p.mu.Lock()
		gen, ok := p.connGen, p.state == InSync
		if ok {
			p.state = SyncSource
		}
		p.mu.Unlock()
		if ok {
			rep.Resynced = true
			p.startResync(gen)
		}
	}
	return rep, nil
}

// askVerify queues a checksum comparison for blocks [first, first+n).
func (p *peer) askVerify(first, n int64) (chan []int64, error) {
	v := p.v
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if v.Role() == Primary {
		// Only a primary writes; a secondary's comparison may report a
		// block whose write from the primary is still in flight.
		v.forceEpoch()
	}
	hashes, err := blockHashes(v.be, first*BlockSize, n)
	if err != nil {
		return nil, fmt.Errorf("verify read: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != InSync {
		return nil, fmt.Errorf("verify: %w (%s)", ErrPeerNotInSync, p.state)
	}
	p.nextID++
	id := p.nextID
	ch := make(chan []int64, 1)
	p.verifies[id] = ch
	var e enc
	e.u64(id)
	e.u64(uint64(first * BlockSize))
	e.u32(uint32(n))
	for _, h := range hashes {
		e.b = append(e.b, h[:]...)
	}
	p.enqueueLocked(item{typ: fVerifyReq, payload: e.b})
	return ch, nil
}

// answerVerify compares local blocks with the requester's checksums.
func (s *session) answerVerify(d *dec) error {
	v := s.p.v
	id := d.u64()
	off := int64(d.u64())
	n := int64(d.u32())
	if n <= 0 || n > resyncChunk || off%BlockSize != 0 || v.checkRange(off, n*BlockSize) != nil || int64(len(d.b)) != n*16 {
		return fmt.Errorf("%w: verify request", ErrBadFrame)
	}
	local, err := blockHashes(v.be, off, n)
	if err != nil {
		return fmt.Errorf("verify read: %w", err)
	}
	var e enc
	e.u64(id)
	var diff []uint32
	for i := int64(0); i < n; i++ {
		if string(local[i][:]) != string(d.b[i*16:(i+1)*16]) {
			diff = append(diff, uint32(i))
		}
	}
	e.u32(uint32(len(diff)))
	for _, x := range diff {
		e.u32(x)
	}
	s.p.enqueue(fVerifyResp, e.b)
	return nil
}

func (p *peer) takeVerify(d *dec) error {
	id := d.u64()
	cnt := int(d.u32())
	if cnt > resyncChunk || len(d.b) != cnt*4 {
		return fmt.Errorf("%w: verify answer", ErrBadFrame)
	}
	diff := make([]int64, cnt)
	for i := range diff {
		diff[i] = int64(d.u32())
	}
	p.mu.Lock()
	ch := p.verifies[id]
	delete(p.verifies, id)
	p.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: answer to no verify request", ErrBadFrame)
	}
	ch <- diff
	return nil
}
