package replication

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// What a secondary does with what it receives: it queues an epoch's
// operations and applies them at the barrier, durably, so the replica is
// always a prefix of completed epochs; it writes resync blocks and takes
// generations and the operator's initial-sync skip.

// applyEpoch applies the operations of a whole epoch and makes them
// durable, so the replica is always a prefix of completed epochs.
func (s *session) applyEpoch() error {
	v := s.p.v
	for _, op := range s.pending {
		var err error
		switch op.kind {
		case opWrite:
			_, err = v.be.WriteAt(op.data, op.off)
		default:
			err = v.be.Punch(op.off, op.n)
		}
		if err != nil {
			v.setDisk(Inconsistent)
			v.met.applyErrors.Inc()
			return fmt.Errorf("apply a replicated write: %w (replica marked Inconsistent)", err)
		}
	}
	if len(s.pending) > 0 {
		if err := v.be.Sync(); err != nil {
			v.setDisk(Inconsistent)
			v.met.applyErrors.Inc()
			return fmt.Errorf("sync a replicated epoch: %w (replica marked Inconsistent)", err)
		}
		if err := v.noteSource(s.p.name); err != nil {
			return err
		}
	}
	s.dropPending()
	return nil
}

// dropPending forgets the open epoch's operations (applied, or never to
// be), and gives their buffers back.
func (s *session) dropPending() {
	for _, op := range s.pending {
		op.buf.release()
	}
	s.pending, s.pendingBytes = nil, 0
}

// startTarget marks the replica Inconsistent at the first resync frame of
// a catch-up (a handshake resync already did).
func (s *session) startTarget() {
	if s.rsStarted {
		return
	}
	s.rsStarted = true
	s.p.v.setDisk(Inconsistent)
	s.p.setState(SyncTarget)
}

func (s *session) finishTarget(cur uint64, hist []uint64) error {
	v, p := s.p.v, s.p
	if err := v.be.Sync(); err != nil {
		return fmt.Errorf("sync after resync: %w", err)
	}
	v.mu.Lock()
	v.m.Current, v.m.History = cur, hist
	v.m.Bitmap[p.name] = 0
	v.m.CrashedPrimary, v.m.Blank = false, false
	// The operator's discard-my-data is spent once the resync it asked
	// for ends (a cut one starts again at the next handshake).
	v.m.DiscardMyData = false
	v.m.Disk = UpToDate
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return err
	}
	p.bm.clearAll()
	if err := p.bm.flush(); err != nil {
		return err
	}
	if err := os.Remove(p.lostPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		v.log.Warn("cannot remove the peer's marks kept since the crash", "err", err)
	}
	s.rsStarted = false
	p.setState(InSync)
	v.log.Info("resync finished: in sync with the peer", "peer", p.name)
	if s.discarding {
		v.mu.Lock()
		n := v.discarded
		v.mu.Unlock()
		v.log.Warn("resync that discarded this replica's writes finished", "peer", p.name, "discarded_blocks_total", n)
		s.discarding, s.mine, s.theirs = false, nil, nil
	}
	return nil
}

// wroteHere says whether this side wrote block blk since it parted from
// the source, as far as the bitmaps tell.
func (s *session) wroteHere(blk int64) bool {
	marked := func(words []uint64) bool {
		w := blk / 64
		return w < int64(len(words)) && words[w]&(1<<(blk%64)) != 0
	}
	return marked(s.mine) && (s.mineExact || !marked(s.theirs))
}

// countDiscarded counts the blocks of a resync chunk that this replica
// wrote (wroteHere) and that differ from the source's: writes of its own
// that the resync throws away.
func (s *session) countDiscarded(off int64, data []byte) {
	v := s.p.v
	local := make([]byte, len(data))
	if _, err := v.be.ReadAt(local, off); err != nil {
		v.log.Warn("cannot read the blocks a resync replaces: not counted", "offset", off, "err", err)
		return
	}
	n := 0
	for i := 0; i+BlockSize <= len(data); i += BlockSize {
		blk := (off + int64(i)) / BlockSize
		if s.wroteHere(blk) && !bytes.Equal(local[i:i+BlockSize], data[i:i+BlockSize]) {
			n++
		}
	}
	if n == 0 {
		return
	}
	v.mu.Lock()
	v.discarded += uint64(n)
	v.mu.Unlock()
	v.met.discarded.Add(float64(n))
}

// takeOp queues a write, trim or zero of the open epoch; the epoch's
// barrier applies them all.
func (s *session) takeOp(typ frameType, d *dec) error {
	v := s.p.v
	d.u64() // epoch: checked at the barrier
	off := int64(d.u64())
	op := pendingOp{off: off}
	var data []byte
	switch typ {
	case fWrite:
		data, d.b = d.b, nil
		op.kind, op.n = opWrite, int64(len(data))
	case fTrim:
		op.kind, op.n = opTrim, int64(d.u64())
	case fZero:
		op.kind, op.n = opZero, int64(d.u64())
	}
	if err := d.done(); err != nil {
		return err
	}
	if err := v.checkRange(op.off, op.n); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if op.kind == opWrite {
		// Kept until the barrier, in a pooled buffer (a new one per
		// frame made the runtime fault in and zero fresh pages).
		op.buf = newPayload(len(data), &s.p.v.buffersOut)
		op.data = op.buf.b
		copy(op.data, data)
	}
	s.pending = append(s.pending, op)
	s.pendingBytes += int64(len(op.data))
	if s.pendingBytes > 2*int64(v.cfg.MaxEpoch)+maxPayload {
		return fmt.Errorf("%w: epoch of more than %d bytes", ErrBadFrame, s.pendingBytes)
	}
	return nil
}

// takeBarrier applies the epoch the barrier closes and acknowledges it.
func (s *session) takeBarrier(d *dec) error {
	p := s.p
	epoch := d.u64()
	if err := d.done(); err != nil {
		return err
	}
	if err := s.applyEpoch(); err != nil {
		return err
	}
	p.v.mu.Lock()
	p.v.held = heldEpoch{source: p.name, epoch: epoch}
	p.v.mu.Unlock()
	var e enc
	e.u64(epoch)
	p.enqueue(fBarrierAck, e.b)
	return nil
}

// takeGen sets the generation the primary started.
func (s *session) takeGen(d *dec) error {
	v := s.p.v
	cur, hist := decodeGen(d)
	if err := d.done(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m.Current == 0 {
		// Only a full sync gives a new replica its first generation.
		return fmt.Errorf("%w: a generation for a replica that was never synced", ErrBadFrame)
	}
	v.m.Current, v.m.History, v.m.Blank = cur, hist, false
	return v.store.save(v.m)
}

// takeSkipSync: the operator declared both replicas blank and equal at
// the peer (only a replica never written or synced takes it).
func (s *session) takeSkipSync(d *dec) error {
	p, v := s.p, s.p.v
	g := d.u64()
	if err := d.done(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m.Current != 0 {
		return fmt.Errorf("%w: %s skipped the initial sync, but this replica was written or synced already", ErrBadFrame, p.name)
	}
	v.m.Current, v.m.Disk = g, UpToDate
	if err := v.store.save(v.m); err != nil {
		return err
	}
	v.log.Warn("initial sync skipped by the operator at the peer: the replicas are declared blank and equal", "peer", p.name)
	return nil
}

// takeResyncData writes a block a resync sends.
func (s *session) takeResyncData(d *dec) error {
	v := s.p.v
	off := int64(d.u64())
	data := d.b
	if err := v.checkRange(off, int64(len(data))); err != nil || off%BlockSize != 0 {
		return fmt.Errorf("%w: resync data at %d", ErrBadFrame, off)
	}
	s.startTarget()
	if s.discarding {
		s.countDiscarded(off, data)
	}
	if _, err := v.be.WriteAt(data, off); err != nil {
		v.setDisk(Inconsistent)
		return fmt.Errorf("resync write: %w", err)
	}
	return nil
}
