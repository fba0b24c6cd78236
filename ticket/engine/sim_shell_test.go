package engine

import (
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// The simulator's model of a member's shell: it carries out what the
// engine's Ready asks, with the latencies and failures of a real store,
// CIB and network, and reports back as the real shell does.

// process collects the engine's outputs and carries them out, then sets
// the member's next wake-up.
func (s *sim) process(m *simMember) {
	if !m.up {
		return
	}
	now := m.now(s.now)
	rd := m.eng.Ready(now)
	s.steps++
	if rd.Save != nil {
		s.store(m, rd.Save)
	}
	for _, st := range rd.Stops {
		s.stopRes(m, st)
	}
	for _, e := range rd.Escalations {
		// on_revoke_failure = exit: the daemon exits, and the local
		// cluster stops what it guarded within the guard's time.
		s.logf("%s ESCALATE %s token %d: %s", s.name(m.i), e.Ticket, e.Token, e.Reason)
		s.crash(m, "on_revoke_failure")
		// Its service manager starts it again.
		inc := m.inc
		s.at(s.randDur(s.p.cfg.Tickets[0].Expire)+1, func() {
			if !m.up && m.inc == inc && m.i != s.deadForGood {
				s.boot(m, false)
			}
		})
		return
	}
	for _, e := range rd.Effects {
		s.effect(m, e)
	}
	for _, msg := range rd.Send {
		s.send(m, msg)
	}
	s.arm(m)
}

// arm schedules the member's next tick at the engine's wake-up.
func (s *sim) arm(m *simMember) {
	m.timerGen++
	at, ok := m.eng.NextWake()
	if !ok {
		return
	}
	gen := m.timerGen
	r := max(m.clock.realFor(at), s.now)
	s.later(m, r-s.now, func() {
		if m.timerGen == gen {
			m.eng.Tick(m.now(s.now))
			s.process(m)
		}
	})
}

// store writes a group commit: it takes up to writeMax, and fails while
// the member's disk is bad.
func (s *sim) store(m *simMember, sv *Save) {
	m.writing = sv
	s.later(m, s.randDur(s.p.writeMax)+1, func() {
		m.writing = nil
		var failed map[string]error
		if s.now < m.diskBadUntil {
			failed = map[string]error{}
			for _, r := range sv.Records {
				failed[r.Ticket] = errDisk
			}
			s.logf("%s WRITE FAILED %d records", s.name(m.i), len(sv.Records))
		} else {
			for _, r := range sv.Records {
				r := r
				m.disk[r.Ticket] = &r
			}
		}
		m.eng.Saved(m.now(s.now), sv.ID, failed)
		s.process(m)
	})
}

type simErr string

func (e simErr) Error() string { return string(e) }

const errDisk = simErr("read-only file system")

// stopRes stops a ticket's resources: the CIB revoke and Pacemaker's stop
// take up to stop_timeout, or (a slow stop) up to twice that. The stop
// must be done by its deadline unless it was slow.
func (s *sim) stopRes(m *simMember, st Stop) {
	tc := s.ticketCfg(st.Ticket)
	r := m.res[st.Ticket]
	d := s.randDur(tc.StopTimeout + 1)
	slow := s.chance(s.p.slowStopP)
	if slow {
		d = int64(tc.StopTimeout) + s.randDur(tc.StopTimeout+1)
	}
	s.logf("%s STOP %s (%s), down in %v (slow=%v), deadline in %v", s.name(m.i), st.Ticket, st.Reason,
		time.Duration(d), slow, st.Deadline-m.now(s.now))
	if r.running || r.granting {
		r.stopUntil = max(r.stopUntil, s.now+d)
	}
	// The resources are down when every stop under way is done.
	done := max(s.now+d, r.stopUntil) - s.now
	r.running, r.granting = false, false
	r.gen++
	if deadline := m.clock.realFor(st.Deadline); st.Deadline > 0 && !slow && s.now+d > deadline {
		// Checked when it would have ended, so that what happens
		// meanwhile is in the trace.
		s.at(d, func() {
			s.fail("%s's stop of %s ended %v past its deadline although it took %v, within stop_timeout %v",
				s.name(m.i), st.Ticket, time.Duration(s.now-deadline), time.Duration(d), tc.StopTimeout)
		})
	}
	s.later(m, done, func() {
		r.granted, r.leaseEnd = false, 0
		m.eng.Done(m.now(s.now), st.Ticket, ticket.Stopped{Token: st.Token})
		s.process(m)
	})
}

func (s *sim) ticketCfg(name string) *ticket.Config {
	for i := range s.p.cfg.Tickets {
		if s.p.cfg.Tickets[i].Name == name {
			return &s.p.cfg.Tickets[i]
		}
	}
	panic("unknown ticket " + name)
}

func (s *sim) effect(m *simMember, e Effect) {
	tc := s.ticketCfg(e.Ticket)
	r := m.res[e.Ticket]
	switch ef := e.Effect.(type) {
	case ticket.StartResources:
		s.logf("%s START %s term %d forced=%v", s.name(m.i), e.Ticket, ef.Term, ef.Forced)
		if s.p.cfg.Members[m.i].Role != ticket.Site {
			s.fail("arbitrator %s started resources", s.name(m.i))
		}
		r.granting = true
		r.gen++
		gen := r.gen
		end := int64(0)
		if ef.LeaseEnd > 0 {
			end = m.clock.realFor(ef.LeaseEnd)
		}
		s.later(m, s.randDur(s.p.cibMax)+1, func() {
			if r.gen != gen {
				return // a stop came first
			}
			r.granting, r.granted, r.leaseEnd = false, true, end
			if !r.running {
				r.running, r.since = true, s.now
			}
		})
	case ticket.LeaseRenewed:
		if ef.LeaseEnd > time.Duration(1<<62) {
			s.fail("%s renewed %s with no lease end (%+v)", s.name(m.i), e.Ticket, ef)
			return
		}
		end := m.clock.realFor(ef.LeaseEnd)
		gen := r.gen
		s.later(m, s.randDur(s.p.cibMax)+1, func() {
			if r.gen == gen && r.granted {
				r.leaseEnd = end
			}
		})
	case ticket.RunHandler:
		ok := s.healed || !s.chance(s.p.handlerFailP)
		s.later(m, s.randDur(tc.Timeout), func() {
			m.eng.Done(m.now(s.now), e.Ticket, ticket.HandlerDone{Token: ef.Token, OK: ok})
			s.process(m)
		})
	case ticket.PrepareHandover:
		ok := !s.chance(s.p.handoverFailP)
		s.later(m, s.randDur(2*tc.Timeout), func() {
			m.eng.Done(m.now(s.now), e.Ticket, ticket.HandoverDone{Token: ef.Token, OK: ok})
			s.process(m)
		})
	case ticket.Reply:
		s.logf("%s reply %d: %v %s", s.name(m.i), ef.ID, ef.Err, ef.Detail)
	case ticket.Event:
		switch ef.Kind {
		case ticket.EvAcquired:
			s.held[heldKey{e.Ticket, m.i, ef.Term}] = true
		case ticket.EvMoved, ticket.EvReleased, ticket.EvRevoked, ticket.EvYielded:
			// Given up before its lease ran out: a member that missed the
			// message trusts the lease it knew of (checkTrust).
			k := siteKey{e.Ticket, m.i}
			s.gaveUp[k] = max(s.gaveUp[k], ef.Term)
		}
		s.logf("%s %s event %s term %d owner %d: %s", s.name(m.i), e.Ticket, ef.Kind, ef.Term, ef.Owner, ef.Reason)
	}
}

// send puts a message on the network: lost, duplicated or delayed up to
// maxDelay; refused by a member whose configuration differs (the
// transport compares digests).
func (s *sim) send(from *simMember, msg ticket.Message) {
	to := s.member(from, msg.To)
	if to == nil || !s.links[from.i][to.i] {
		return
	}
	if !s.healed && s.chance(s.p.lossP) {
		return
	}
	copies := 1
	if !s.healed && s.chance(s.p.dupP) {
		copies = 2
	}
	digest := from.cfg.Digest
	for c := 0; c < copies; c++ {
		s.at(s.randDur(s.p.maxDelay)+1, func() {
			if !to.up || to.cfg.Digest != digest {
				return
			}
			if s.keepAll {
				s.logf("deliver %s", msg)
			}
			to.eng.Receive(to.now(s.now), msg)
			s.process(to)
		})
	}
}

// command runs an operator command at member m.
func (s *sim) command(m *simMember, name string, c ticket.Command) {
	if !m.up {
		return
	}
	s.cmdID++
	c.ID = s.cmdID
	if c.Force && c.Op == ticket.OpGrant {
		s.forces = append(s.forces, s.now)
	}
	s.logf("%s COMMAND %s %s site=%d force=%v", s.name(m.i), name, c.Op, c.Site, c.Force)
	if err := m.eng.Command(m.now(s.now), name, c); err != nil {
		panic(err)
	}
	s.process(m)
}
