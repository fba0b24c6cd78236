package replication

import "slices"

// heldEpoch names the last epoch a replica holds whole: its number and
// the primary that numbered it.
type heldEpoch struct {
	source string
	epoch  uint64
}

// Freshness is how recent a replica's data is, as sites compare it when a
// primary is lost: three or more sites may each hold a different prefix
// of the lost primary's writes, and the one holding the most should take
// over (the others then resync from it).
//
// Within one generation, a primary numbers its epochs in order (from its
// clock at open, so a later run numbers higher), and a secondary holds a
// prefix of them: the last epoch it applied orders it against another
// secondary of the same primary. Across generations, a replica whose
// history holds the other's generation is the more recent.
type Freshness struct {
	Disk       DiskState `json:"disk"`
	Generation uint64    `json:"generation"`
	History    []uint64  `json:"history,omitempty"`
	// Source is the primary whose epochs the replica holds: this site when
	// it was primary itself, else the primary it followed ("" when not
	// known since this run began).
	Source string `json:"source,omitempty"`
	// Epoch is the last epoch of Source it holds whole.
	Epoch uint64 `json:"epoch,omitempty"`
}

// Freshness reports how recent this replica's data is.
func (v *Volume) Freshness() Freshness {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Freshness{Disk: v.m.Disk, Generation: v.m.Current, History: slices.Clone(v.m.History),
		Source: v.held.source, Epoch: v.held.epoch}
}

// Good reports whether the data can be served (UpToDate or Consistent).
func (f Freshness) Good() bool { return f.Disk == UpToDate || f.Disk == Consistent }

// Ahead reports whether f's replica holds writes o's lacks and lacks none
// o holds: a newer generation descended from o's, or more epochs of the
// same primary in the same generation. Replicas that cannot be ordered
// (unrelated generations, unknown epochs) are not ahead of each other.
func (f Freshness) Ahead(o Freshness) bool {
	switch {
	case !f.Good():
		return false
	case !o.Good():
		return true
	case f.Generation == o.Generation:
		return f.Source != "" && f.Source == o.Source && f.Epoch > o.Epoch
	default:
		return o.Generation != 0 && slices.Contains(f.History, o.Generation)
	}
}
