package replication

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Connections: the member whose name sorts first dials, the other
// accepts. Both send HELLO (volume, member, size, split-brain policy, a
// nonce), then AUTH, an HMAC-SHA256 with the cluster key over both nonces
// and the sender's name: nobody without the key gets past it, so nobody
// without it can read or write the volume's data. Then each sends its
// STATE (role, disk, generations) and its bitmap for the other, and both
// decide the same thing from the two states: nothing to do, which side
// resyncs which, split brain, or unrelated data.

const protoVersion = 1

// ProtocolVersion is the version of the replication links' handshake; a
// link to a peer of another version is refused with both named.
const ProtocolVersion = protoVersion

func (v *Volume) hello() hello {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("no randomness for a nonce: %v", err))
	}
	return hello{version: protoVersion, volume: v.cfg.Name, member: v.self, policy: v.cfg.SplitBrain,
		size: uint64(v.Size()), nonce: nonce}
}

// mac proves knowledge of the key for one direction of one connection.
func (v *Volume) mac(from string, fromNonce, toNonce []byte) []byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte("geobooth-replication\x00" + v.cfg.Name + "\x00" + from + "\x00"))
	m.Write(fromNonce)
	m.Write(toNonce)
	return m.Sum(nil)
}

// ErrAuth: the peer did not prove it holds the cluster key.
var ErrAuth = errors.New("replication peer failed authentication")

// serve runs one connection with the peer until it fails.
func (p *peer) serve(s *session, mine, theirs hello) {
	v := p.v
	s.p = p
	authed, err := p.handshake(s, mine, theirs)
	if err != nil {
		v.log.Warn("replication handshake failed", "peer", p.name, "from", s.conn.RemoteAddr().String(), "err", err)
		if authed || s.dialed {
			// Only a connection that proved the key, or that this side
			// dialed at the peer's address, speaks for the peer: a
			// stranger's failed attempt leaves the peer's status alone.
			p.setErr(err)
		}
		s.conn.Close()
		return
	}
	defer func() {
		p.mu.Lock()
		mine := p.connGen == s.gen
		p.mu.Unlock()
		if mine {
			p.disconnect(err)
		} else {
			s.conn.Close()
		}
	}()
	s.conn.SetDeadline(time.Time{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		p.sendLoop(s)
	}()
	err = p.receiveLoop(s)
	s.dropPending() // an epoch cut short: never applied
	s.conn.Close()
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
	<-senderDone
}

// handshake authenticates the peer, exchanges states and bitmaps and
// applies the decision; authed tells whether the peer proved the key.
func (p *peer) handshake(s *session, mine, theirs hello) (authed bool, err error) {
	v := p.v
	var e enc
	e.bytes(v.mac(v.self, mine.nonce, theirs.nonce))
	if err := s.send(fAuth, e.b); err != nil {
		return false, err
	}
	if err := s.out.Flush(); err != nil {
		return false, err
	}
	f, err := s.in.read()
	if err != nil {
		return false, fmt.Errorf("read auth: %w", err)
	}
	d := dec{b: f.payload}
	got := d.bytes()
	if f.typ != fAuth || d.done() != nil || !hmac.Equal(got, v.mac(theirs.member, theirs.nonce, mine.nonce)) {
		v.met.authFailures.Inc()
		return false, ErrAuth
	}
	switch {
	case theirs.volume != v.cfg.Name:
		return true, fmt.Errorf("peer serves volume %q, not %q", theirs.volume, v.cfg.Name)
	case theirs.size != uint64(v.Size()):
		return true, fmt.Errorf("peer's volume has %d bytes, ours %d (grown at one side only: run repl resize again at the primary)", theirs.size, v.Size())
	case theirs.policy != v.cfg.SplitBrain:
		return true, fmt.Errorf("peer's split_brain policy %q differs from ours %q", theirs.policy, v.cfg.SplitBrain)
	}
	if err := s.authenticated(); err != nil {
		return true, err
	}
	// Exchange states and bitmaps; send while receiving, as bitmaps of
	// large volumes exceed socket buffers.
	my := v.localState(p)
	sendErr := make(chan error, 1)
	go func() {
		err := s.send(fState, encodeState(my))
		words := p.bm.snapshot()
		for off := 0; err == nil && off < len(words); off += 1 << 16 {
			end := min(off+1<<16, len(words))
			var e enc
			e.u64(uint64(off))
			for _, w := range words[off:end] {
				e.u64(w)
			}
			err = s.send(fBitmap, e.b)
		}
		if err == nil {
			err = s.send(fBitmapDone, nil)
		}
		if err == nil {
			err = s.out.Flush()
		}
		sendErr <- err
	}()
	remote, peerWords, err := p.readStateAndBitmap(s)
	if serr := <-sendErr; err == nil {
		err = serr
	}
	if err != nil {
		return true, err
	}
	s.remote = remote
	return true, p.apply(s, my, remote, peerWords)
}

func (p *peer) readStateAndBitmap(s *session) (stateMsg, []uint64, error) {
	f, err := s.in.read()
	if err != nil {
		return stateMsg{}, nil, fmt.Errorf("read state: %w", err)
	}
	if f.typ != fState {
		return stateMsg{}, nil, fmt.Errorf("%w: expected state, got type %d", ErrBadFrame, f.typ)
	}
	st, err := decodeState(f.payload)
	if err != nil {
		return stateMsg{}, nil, err
	}
	words := make([]uint64, (p.v.blocks()+63)/64)
	for {
		f, err := s.in.read()
		if err != nil {
			return stateMsg{}, nil, fmt.Errorf("read bitmap: %w", err)
		}
		if f.typ == fBitmapDone {
			return st, words, nil
		}
		if f.typ != fBitmap {
			return stateMsg{}, nil, fmt.Errorf("%w: expected bitmap, got type %d", ErrBadFrame, f.typ)
		}
		d := dec{b: f.payload}
		off := d.u64()
		n := len(d.b) / 8
		if off > uint64(len(words)) || uint64(n) > uint64(len(words))-off || len(d.b)%8 != 0 {
			return stateMsg{}, nil, fmt.Errorf("%w: bitmap chunk beyond the volume", ErrBadFrame)
		}
		for i := 0; i < n; i++ {
			words[int(off)+i] = d.u64()
		}
	}
}

func (v *Volume) localState(p *peer) stateMsg {
	v.mu.Lock()
	defer v.mu.Unlock()
	return stateMsg{role: v.role, disk: v.m.Disk, current: v.m.Current, bitmap: v.m.Bitmap[p.name],
		history: append([]uint64(nil), v.m.History...), crashed: v.m.CrashedPrimary, discard: v.m.DiscardMyData, blank: v.m.Blank, primarySince: v.m.PrimarySince,
		dirty: p.bm.ones()}
}

// apply carries out the handshake's decision.
func (p *peer) apply(s *session, my, remote stateMsg, peerWords []uint64) error {
	v := p.v
	dc := guardPrimaries(decide(my, remote, v.cfg.SplitBrain, v.self, p.name), my, remote)
	p.mu.Lock()
	// Close cancels the context before it disconnects the peers (under
	// p.mu): a link whose handshake ends after that is not taken up, or
	// Close would wait for it for ever.
	if v.ctx.Err() != nil {
		p.mu.Unlock()
		return ErrClosed
	}
	old := p.conn
	p.connGen++
	s.gen = p.connGen
	p.conn = s.conn
	p.remoteRole, p.remoteDisk, p.remoteGen = remote.role, remote.disk, remote.current
	p.lastErr = ""
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	v.log.Info("replication peer connected", "peer", p.name, "decision", dc.action, "reason", dc.reason,
		"local_gen", fmt.Sprintf("%016x", my.current), "peer_gen", fmt.Sprintf("%016x", remote.current))
	switch dc.action {
	case actRefuse:
		p.setState(Refused)
		return errors.New(dc.reason)
	case actSplitBrain:
		v.met.splitBrains.Inc()
		v.mu.Lock()
		v.splitBrains++
		v.mu.Unlock()
		p.setState(SplitBrain)
		v.log.Error("split brain: both replicas were written since they parted; waiting for the operator (split_brain policy disconnect)",
			"peer", p.name, "local_changes", my.dirty, "peer_changes", remote.dirty)
		v.event("split brain", "volume %s and %s were both written apart: waiting for the operator", v.cfg.Name, p.name)
		return errors.New("split brain")
	case actNone:
		if remote.role == Primary {
			v.setDisk(UpToDate)
		}
		p.setState(InSync)
	case actSource:
		if dc.split {
			v.met.splitBrains.Inc()
			v.log.Warn("split brain resolved by policy: the peer's changes are discarded", "peer", p.name, "policy", v.cfg.SplitBrain, "peer_changes", remote.dirty)
			v.event("split brain", "volume %s: %s's %d changed blocks discarded (%s)", v.cfg.Name, p.name, remote.dirty, v.cfg.SplitBrain)
		}
		if dc.full {
			p.bm.setRange(0, v.blocks()-1)
		} else {
			p.bm.merge(peerWords)
		}
		p.setState(SyncSource)
		p.startResync(s.gen)
	case actTarget:
		// Blocks that differ from the peer's are what this replica
		// loses: the resync counts them as they arrive (discardedBlock),
		// not the bitmap's marks (a crashed primary's hot extents are
		// marked whether or not the peer has them).
		p.countLosses(s, dc.split, my, peerWords)
		v.setDisk(Inconsistent)
		p.setState(SyncTarget)
	}
	return nil
}

// guardPrimaries: a policy may discard a secondary's changes, never a
// primary's, and two primaries never resync.
func guardPrimaries(dc decision, my, remote stateMsg) decision {
	overwritesPrimary := dc.action == actTarget && my.role == Primary || dc.action == actSource && remote.role == Primary
	switch {
	case overwritesPrimary && dc.split:
		return decision{action: actSplitBrain, reason: "split brain with the losing side primary: " + dc.reason}
	case overwritesPrimary:
		return decision{action: actRefuse, reason: "the resync would overwrite a primary: " + dc.reason}
	case my.role == Primary && remote.role == Primary && dc.action != actSplitBrain:
		return decision{action: actRefuse, reason: "both sides are primary"}
	}
	return dc
}

// countLosses prepares a resync target to count what it loses: the
// writes made here since a split brain a policy (or discard-my-data)
// decided against, or those an old primary had not replicated when it
// crashed.
func (p *peer) countLosses(s *session, split bool, my stateMsg, peerWords []uint64) {
	v := p.v
	if split {
		v.met.splitBrains.Inc()
		why := v.cfg.SplitBrain
		if my.discard {
			why = "discard-my-data"
		}
		s.discarding, s.mine, s.theirs, s.mineExact = true, p.bm.snapshot(), peerWords, true
		v.log.Warn("this replica's writes since the split are discarded", "peer", p.name,
			"by", why, "blocks_at_most", my.dirty)
		v.event("split brain", "volume %s: the blocks written here since the split (at most %d) are discarded, %s wins (%s)", v.cfg.Name, my.dirty, p.name, why)
	} else if my.crashed && my.dirty > 0 {
		s.discarding, s.mine, s.theirs, s.mineExact = true, p.bm.snapshot(), p.crashBase(peerWords), false
		v.log.Warn("this replica crashed as primary and the peer went on: the writes it had not replicated are discarded",
			"peer", p.name, "blocks_at_most", my.dirty)
		v.event("writes discarded", "volume %s: the writes this old primary had not replicated (at most %d blocks) are discarded; resyncing from %s", v.cfg.Name, my.dirty, p.name)
	}
}

func (p *peer) setState(st PeerState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = st
	p.cond.Broadcast()
}

// lostPath keeps, for an old primary that crashed, what the peer had
// marked when they first met again (crashBase).
func (p *peer) lostPath() string { return p.v.cfg.metaBase() + ".lost-" + p.name }

// crashBase returns the peer's marks as they were at the first handshake
// after this replica crashed as primary, and keeps them until the resync
// ends: the peer merges this side's marks into its own bitmap at once, so
// a resync cut and started again would see this side's writes as the
// peer's and count none of them discarded.
func (p *peer) crashBase(peerWords []uint64) []uint64 {
	path := p.lostPath()
	if bm, err := openExistingBitmap(path, p.v.blocks()); err == nil {
		defer bm.close()
		return bm.snapshot()
	} else if !errors.Is(err, fs.ErrNotExist) {
		p.v.log.Warn("cannot read the peer's marks kept from the first handshake after the crash: counting against its current ones", "path", path, "err", err)
		return peerWords
	}
	tmp := path + ".tmp"
	bm, err := openBitmap(tmp, p.v.blocks())
	if err == nil {
		bm.merge(peerWords)
		err = bm.close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		p.v.log.Warn("cannot keep the peer's marks for a resync cut and started again", "path", path, "err", err)
	}
	return peerWords
}

// openExistingBitmap opens a bitmap file that must exist.
func openExistingBitmap(path string, blocks int64) (*bitmap, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return openBitmap(path, blocks)
}
