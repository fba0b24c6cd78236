package engine

import (
	"github.com/geobooth/geobooth/ticket"
)

// The invariants the simulator checks after every event. The first is the
// one the rest exist for: no two sites hold a ticket, or run what it
// guards, at one real instant. The others are stronger and fail sooner:
//
//   - Lease: while a site holds a ticket or its resources run (or still
//     stop, or outlive its dead daemon until the guard stops them), no
//     other site could gather a majority: fewer than a majority of the
//     members would acknowledge it. A lease outliving the promises it
//     rests on fails here at once, before another site happens to take
//     the ticket.
//   - Trust: while a member acts on an owner it does not hold the ticket
//     for (its view's SafeUntil: DNS answers with that site), no other
//     site could gather a majority either.
//   - Proof: a member shows a site as the owner in a term only if that
//     site held the ticket in that term.
//   - Stops (in the shell model): a stop whose resources go down within
//     stop_timeout is done by its deadline.
//
// A violation that follows an operator's forced grant is the operator's
// (force is their responsibility, as Booth says): the run ends there and
// is counted, not failed.

func (s *sim) check() {
	for _, tc := range s.p.cfg.Tickets {
		s.checkTicket(tc.Name)
		if s.violation != "" {
			return
		}
	}
}

func (s *sim) checkTicket(name string) {
	var holders, running []int
	for _, m := range s.ms {
		if m.up && m.eng.State(name).Holds(m.now(s.now)) {
			holders = append(holders, m.i)
			if st := m.eng.State(name); st != nil {
				s.held[heldKey{name, m.i, st.P.Term}] = true
			}
		}
		if m.res[name].active(s.now) {
			running = append(running, m.i)
		}
	}
	if len(holders) > 1 {
		s.blame(name, holders, "two members hold %s: %v", name, s.names(holders))
		return
	}
	if len(running) > 1 {
		s.blame(name, running, "%s runs at two sites: %v", name, s.names(running))
		return
	}
	s.checkLease(name, append(holders, running...), "holds or runs")
	if s.violation == "" {
		s.checkTrust(name, append(holders, running...))
	}
	if s.violation == "" {
		s.checkProofs(name)
	}
}

// checkLease: while x holds or runs the ticket (or is trusted as its
// owner), no other site could gather a majority of acknowledgements.
func (s *sim) checkLease(name string, sites []int, what string) {
	quorum := len(s.ms)/2 + 1
	for _, x := range sites {
		for _, y := range s.sites() {
			if y == x {
				continue
			}
			var would []int
			for _, m := range s.ms {
				if !m.up {
					continue
				}
				yi := s.index(m, y)
				if m.eng.State(name).MayAcknowledge(yi, m.now(s.now)) {
					would = append(would, m.i)
				}
			}
			if len(would) >= quorum {
				s.blame(name, []int{x, y}, "%s %s %s while %v would acknowledge %s",
					s.name(x), what, name, s.names(would), s.name(y))
				return
			}
		}
	}
}

// checkTrust: while a member that does not hold the ticket acts on its
// owner (DNS answers with that site), no other site holds it or runs its
// resources — unless the owner gave the ticket up early (a move, a
// release, a forced grant elsewhere): a member that missed that message
// cannot know.
func (s *sim) checkTrust(name string, active []int) {
	for _, m := range s.ms {
		if !m.up {
			continue
		}
		now := m.now(s.now)
		v := m.eng.State(name).View(now)
		if v.Owner == ticket.None || v.HeldLocally || v.Mode != ticket.Auto || now >= v.SafeUntil {
			continue
		}
		o := s.member(m, v.Owner)
		if o == nil || s.gaveUp[siteKey{name, o.i}] >= v.Term {
			continue
		}
		for _, y := range active {
			if y != o.i {
				s.blame(name, []int{o.i, y}, "%s acts on %s as the owner of %s (term %d, for %v more) while %s holds or runs it",
					s.name(m.i), s.name(o.i), name, v.Term, v.SafeUntil-now, s.name(y))
				return
			}
		}
	}
}

// checkProofs: every owner a member shows held the ticket in that term.
func (s *sim) checkProofs(name string) {
	for _, m := range s.ms {
		if !m.up {
			continue
		}
		v := m.eng.State(name).View(m.now(s.now))
		if v.Owner == ticket.None || v.HeldLocally {
			continue
		}
		o := s.member(m, v.Owner)
		if o == nil || !s.held[heldKey{name, o.i, v.Term}] {
			s.fail("%s shows %s as the owner of %s in term %d, which it never held", s.name(m.i), s.name(o.i), name, v.Term)
			return
		}
	}
}

// blame records a violation, as the operator's when a forced grant came
// after the sites involved began to hold or run the ticket (or within a
// lease and its margins before), and as a bug otherwise.
func (s *sim) blame(name string, sites []int, format string, args ...any) {
	since := s.now
	for _, i := range sites {
		if r := s.ms[i].res[name]; r.active(s.now) && r.since < since {
			since = r.since
		}
	}
	tc := s.ticketCfg(name)
	since -= int64(2 * (tc.Expire + tc.AcquireAfter + tc.StopTimeout))
	for _, f := range s.forces {
		if f >= since {
			s.operator = true
			s.logf("OPERATOR: after a forced grant: "+format, args...)
			s.violation = "operator: forced grant"
			return
		}
	}
	s.fail(format, args...)
}

func (s *sim) names(is []int) []string {
	out := make([]string, len(is))
	for k, i := range is {
		out[k] = s.name(i)
	}
	return out
}
