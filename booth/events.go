package booth

import (
	"fmt"
	"time"

	"github.com/geobooth/geobooth/api"
)

// maxEvents bounds the events the arbitrator keeps.
const maxEvents = 256

// seen is what the arbitrator last reported of a ticket.
type seen struct {
	leader  string
	revoked bool
	term    uint32
}

// recordChanges notes every ticket whose leader changed since the last
// call (s.mu held): the events the status page and ticketctl show.
func (s *Server) recordChanges(now time.Duration, wall time.Time) {
	for _, v := range s.arb.Tickets() {
		cur := seen{revoked: v.Revoked, term: v.Term}
		if v.Leader.IsValid() {
			cur.leader = v.Leader.String()
		}
		last, known := s.seen[v.Name]
		s.seen[v.Name] = cur
		if known && last.leader == cur.leader && last.revoked == cur.revoked {
			continue
		}
		e := api.Event{Time: wall, Ticket: v.Name, Term: uint64(v.Term), Owner: cur.leader}
		switch {
		case cur.leader != "":
			e.Kind, e.Reason = "granted", fmt.Sprintf("%s leads (term %d), lease until %s", cur.leader, v.Term,
				wall.Add(v.Expires-now).Format(time.TimeOnly))
		case cur.revoked:
			e.Kind, e.Reason = "revoked", "revoked by "+last.leader
		case !known:
			continue // no owner known at start: nothing happened
		default:
			e.Kind, e.Reason = "lost", fmt.Sprintf("the lease of %s ran out without a renewal", last.leader)
		}
		s.addEvent(e)
		s.log.Info("booth ticket "+e.Kind, "ticket", e.Ticket, "term", e.Term, "owner", e.Owner, "reason", e.Reason)
	}
}

// addEvent puts e in the timeline (s.mu held).
func (s *Server) addEvent(e api.Event) {
	s.eventSeq++
	e.Seq = s.eventSeq
	s.events = append(s.events, e)
	if len(s.events) > maxEvents {
		s.events = s.events[len(s.events)-maxEvents:]
	}
	if s.changedEv != nil {
		close(s.changedEv)
	}
	s.changedEv = make(chan struct{})
}

// Note puts an event of what the ticket guards here (a volume's split
// brain, its promotion) in the timeline, with the ticket's term and
// leader as this member sees them.
func (s *Server) Note(ticket, kind, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := api.Event{Time: time.Now(), Ticket: ticket, Kind: kind, Reason: detail}
	for _, v := range s.arb.Tickets() {
		if v.Name == ticket {
			e.Term = uint64(v.Term)
			if v.Leader.IsValid() {
				e.Owner = v.Leader.String()
			}
		}
	}
	s.addEvent(e)
}

// EventsSince returns the events after seq, oldest first (for alert
// hooks); gap says that some after seq were dropped (only the most recent
// are kept); changed is closed when the next event comes.
func (s *Server) EventsSince(seq uint64) (events []api.Event, gap bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changedEv == nil {
		s.changedEv = make(chan struct{})
	}
	for _, e := range s.events {
		if e.Seq > seq {
			events = append(events, e)
		}
	}
	gap = len(events) > 0 && len(events) == len(s.events) && seq != 0 && events[0].Seq > seq+1
	return events, gap, s.changedEv
}

// Events are the recent ticket events, newest first (as the API gives
// them).
func (s *Server) Events() []api.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Event, len(s.events))
	for i, e := range s.events {
		out[len(out)-1-i] = e
	}
	return out
}
