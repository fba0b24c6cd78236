package replication

import (
	"errors"
	"fmt"
)

// The operator's recovery commands (after DRBD's invalidate and
// --discard-my-data). Both discard this replica's data in favour of a
// peer's, so both are refused at a primary: the data it serves is never
// thrown away by a command run at it.

// ErrWouldDiscardPrimary: the command would discard a primary's data.
var ErrWouldDiscardPrimary = errors.New("this replica is primary: the command would discard the data it serves (demote it first, or run the command at the peer)")

// Invalidate discards this replica's data: it becomes Inconsistent, and a
// full sync from a connected peer with good data replaces every block
// (for a replica known or suspected to be damaged). Refused at a primary,
// and unless a peer with UpToDate or Consistent data is connected.
func (v *Volume) Invalidate() error {
	v.fence.Lock()
	defer v.fence.Unlock()
	if v.Role() == Primary {
		return fmt.Errorf("invalidate: %w", ErrWouldDiscardPrimary)
	}
	var from *peer
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		good := p.connectedLocked() && (p.remoteDisk == UpToDate || p.remoteDisk == Consistent)
		p.mu.Unlock()
		if good {
			from = p
			break
		}
	}
	if from == nil {
		return errors.New("invalidate: no connected peer holds UpToDate or Consistent data to take a full sync from")
	}
	v.mu.Lock()
	v.m.Current, v.m.History, v.m.Bitmap = 0, nil, map[string]uint64{}
	v.m.Disk, v.m.DiscardMyData = Inconsistent, false
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("invalidate: %w", err)
	}
	v.log.Warn("invalidated: this replica's data is discarded and resynced in full", "from", from.name)
	v.event("invalidated", "volume %s: data discarded here, full sync from %s", v.cfg.Name, from.name)
	// A new handshake sees a new replica here: a full sync from the peer.
	for _, p := range v.peers {
		p.disconnect(errors.New("invalidated by the operator"))
	}
	return nil
}

var errInitialSync = errors.New("initial sync from the first primary")

// SkipInitialSync is the operator's statement that this replica and every
// peer are blank (new devices, zeroed): all of them take the same first
// generation and become UpToDate without a full sync (DRBD's
// new-current-uuid --clear-bitmap). Refused unless every peer is connected,
// and once this side or a peer was written (it holds a generation).
func (v *Volume) SkipInitialSync() error {
	v.fence.Lock()
	defer v.fence.Unlock()
	v.mu.Lock()
	cur := v.m.Current
	v.mu.Unlock()
	if cur != 0 {
		return fmt.Errorf("skip-initial-sync: this replica was written or synced already (generation %016x)", cur)
	}
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		connected, remote := p.connectedLocked(), p.remoteGen
		p.mu.Unlock()
		if !connected {
			return fmt.Errorf("skip-initial-sync: peer %s is not connected: every replica must be seen new", name)
		}
		if remote != 0 {
			return fmt.Errorf("skip-initial-sync: peer %s was written or synced already (generation %016x)", name, remote)
		}
	}
	g := genesis(v.cfg)
	v.mu.Lock()
	v.m.Current, v.m.Disk = g, UpToDate
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("skip-initial-sync: %w", err)
	}
	var e enc
	e.u64(g)
	for _, name := range v.order {
		v.peers[name].enqueue(fSkipSync, e.b)
	}
	v.log.Warn("initial sync skipped by the operator: the replicas are declared blank and equal", "generation", fmt.Sprintf("%016x", g))
	v.event("initial sync skipped", "volume %s: the replicas are declared blank and equal", v.cfg.Name)
	return nil
}

// DiscardMyData resolves a split brain at the side whose changes are to
// go: at the next handshake with the peer it split from, this replica
// takes the peer's data (its blocks written since the split are
// discarded, and counted); the flag is spent when that resync ends. Refused at a primary, and where no peer is in
// split brain with this replica.
func (v *Volume) DiscardMyData() error {
	v.fence.Lock()
	defer v.fence.Unlock()
	if v.Role() == Primary {
		return fmt.Errorf("discard-my-data: %w", ErrWouldDiscardPrimary)
	}
	var split []string
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		if p.state == SplitBrain {
			split = append(split, name)
		}
		p.mu.Unlock()
	}
	if len(split) == 0 {
		return errors.New("discard-my-data: no peer is in split brain with this replica")
	}
	v.mu.Lock()
	v.m.DiscardMyData = true
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("discard-my-data: %w", err)
	}
	v.log.Warn("discard-my-data: this replica's changes since the split go at the next handshake", "peers", split)
	v.event("discard-my-data", "volume %s: the changes made here since the split will be discarded in favour of %v", v.cfg.Name, split)
	for _, name := range split {
		v.peers[name].disconnect(errors.New("discard-my-data by the operator"))
	}
	return nil
}
