package booth

import (
	"net/netip"

	"github.com/geobooth/geobooth/booth/handover"
)

// Handover is what this member last promised for each ticket, for its
// first start on geobooth's own protocol (package handover). Only valid
// once the member has stopped sending.
//
// The last promise: a Booth member votes only while no lease runs here
// (or for a leader stepping down), and a vote resets the leader it knew;
// it then acknowledges only the leader's heartbeats. So the site it
// voted for in the current term is its last promise unless a leader it
// did not vote for took over since (it acknowledged that leader's
// heartbeats later): then it cannot tell, and names nobody.
func (a *Engine) Handover() []handover.Ticket {
	addr := func(id uint32) netip.Addr {
		if m, ok := a.members[id]; ok {
			return m.Address
		}
		return netip.Addr{}
	}
	out := make([]handover.Ticket, 0, len(a.tickets))
	for _, t := range a.tickets {
		h := handover.Ticket{Name: t.cfg.Name, Term: uint64(t.term), Granted: t.owned(), Manual: t.cfg.Manual,
			Binding: t.cfg.Expire + t.cfg.AcquireAfter}
		if t.owned() {
			h.Owner = addr(t.leader)
		}
		switch voted := t.votedFor != 0 && t.votedFor != NoLeader; {
		case voted && (!t.owned() || t.votedFor == t.leader):
			h.Acked = addr(t.votedFor)
		case !voted && t.owned():
			h.Acked = addr(t.leader)
		}
		out = append(out, h)
	}
	return out
}
