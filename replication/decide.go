package replication

// The handshake decision, from the two replicas' generations (after
// DRBD's table): both sides compute it, mirrored, and agree.

type action string

const (
	actNone       action = "none"
	actSource     action = "sync-source"
	actTarget     action = "sync-target"
	actSplitBrain action = "split-brain"
	actRefuse     action = "refuse"
)

type decision struct {
	action action
	// full: copy every block (no common bitmap generation).
	full bool
	// split: a split brain resolved by the configured policy.
	split  bool
	reason string
}

func (d decision) mirror() decision {
	switch d.action {
	case actSource:
		d.action = actTarget
	case actTarget:
		d.action = actSource
	}
	return d
}

// decide says what this replica (a, named self) does with its peer (b).
func decide(a, b stateMsg, policy, self, peer string) decision {
	switch {
	case a.current == 0 && b.current == 0:
		return decision{action: actNone, reason: "both replicas are new"}
	case a.current == 0:
		return decision{action: actTarget, full: true, reason: "this replica is new: full sync from the peer"}
	case b.current == 0:
		return decision{action: actSource, full: true, reason: "the peer is new: full sync to it"}
	case a.current == b.current:
		return sameGeneration(a, b, self, peer)
	case a.blank && !b.blank:
		return decision{action: actTarget, full: true, reason: "this replica is blank: full sync from the peer"}
	case b.blank && !a.blank:
		return decision{action: actSource, full: true, reason: "the peer is blank: full sync to it"}
	case a.bitmap != 0 && a.bitmap == b.current:
		return decision{action: actSource, reason: "the peer missed this replica's writes: incremental resync"}
	case b.bitmap != 0 && b.bitmap == a.current:
		return decision{action: actTarget, reason: "this replica missed the peer's writes: incremental resync"}
	case a.bitmap != 0 && a.bitmap == b.bitmap:
		return splitBrain(a, b, policy, self, peer, false)
	case inHistory(b.history, a.current):
		return decision{action: actTarget, full: true, reason: "the peer moved on from this replica's generation: full sync"}
	case inHistory(a.history, b.current):
		return decision{action: actSource, full: true, reason: "this replica moved on from the peer's generation: full sync"}
	}
	for _, h := range a.history {
		if inHistory(b.history, h) {
			return splitBrain(a, b, policy, self, peer, true)
		}
	}
	return decision{action: actRefuse, reason: "unrelated data: the replicas share no generation"}
}

// sameGeneration: neither side started a generation the other lacks, but
// one may hold changes the other has not (a primary that pulled ahead, a
// primary that crashed with writes in flight).
func sameGeneration(a, b stateMsg, self, peer string) decision {
	if a.dirty == 0 && b.dirty == 0 && !a.crashed && !b.crashed {
		return decision{action: actNone, reason: "same generation, nothing to resync"}
	}
	// Source: the primary; else the crashed primary; else the side with
	// changes; ties by name.
	aWins := func() bool {
		switch {
		case a.role == Primary && b.role != Primary:
			return true
		case b.role == Primary && a.role != Primary:
			return false
		case a.crashed != b.crashed:
			return a.crashed
		case a.dirty != b.dirty:
			return a.dirty > b.dirty
		}
		return self < peer
	}()
	if aWins {
		return decision{action: actSource, reason: "same generation; this side holds changes the peer lacks"}
	}
	return decision{action: actTarget, reason: "same generation; the peer holds changes this side lacks"}
}

// splitBrain applies the policy: disconnect, or a winner whose data the
// other side receives (bitmaps when they share a base, else everything).
func splitBrain(a, b stateMsg, policy, self, peer string, full bool) decision {
	// The operator's discard-my-data at one side decides first.
	switch {
	case a.discard && !b.discard:
		return decision{action: actTarget, full: full, split: true, reason: "split brain: this replica's changes are discarded (discard-my-data)"}
	case b.discard && !a.discard:
		return decision{action: actSource, full: full, split: true, reason: "split brain: the peer's changes are discarded (discard-my-data at the peer)"}
	}
	win := 0 // 1: a wins, -1: b wins
	leastChanges := func() int {
		switch {
		case a.dirty > b.dirty:
			return 1
		case a.dirty < b.dirty:
			return -1
		case self < peer:
			return 1
		}
		return -1
	}
	switch policy {
	case SplitBrainDiscardSecondary:
		switch {
		case a.role == Primary && b.role != Primary:
			win = 1
		case b.role == Primary && a.role != Primary:
			win = -1
		}
	case SplitBrainDiscardLeastChanges:
		win = leastChanges()
	case SplitBrainDiscardYoungerPrimary:
		switch {
		case a.primarySince == b.primarySince:
			win = leastChanges()
		case b.primarySince == 0 || a.primarySince != 0 && a.primarySince < b.primarySince:
			win = 1
		default:
			win = -1
		}
	}
	switch win {
	case 1:
		return decision{action: actSource, full: full, split: true, reason: "split brain: the peer's changes are discarded (" + policy + ")"}
	case -1:
		return decision{action: actTarget, full: full, split: true, reason: "split brain: this replica's changes are discarded (" + policy + ")"}
	}
	return decision{action: actSplitBrain, reason: "split brain: both replicas were written since they parted"}
}
