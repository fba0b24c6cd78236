package ticket

import (
	"fmt"
	"time"
)

// out collects what one Step produces.
type out struct {
	msgs    []Message
	effs    []Effect
	persist bool
}

func (o *out) effect(e Effect) { o.effs = append(o.effs, e) }

// Step feeds one input to a member's state for one ticket at local
// monotonic time now, and returns the new state, the messages to send and
// the effects to carry out. It does no I/O and reads no clock: everything it
// needs is in its arguments. The runtime must make a Persist effect durable
// before sending any of the messages (see Effect).
func Step(s State, in Input, now time.Duration) (State, []Message, []Effect) {
	s.P = s.P.clone()
	var o out
	if b, ok := in.(Boot); ok {
		s.boot(&o, b, now)
	} else if !s.booted {
		if c, ok := in.(Command); ok {
			o.effect(Reply{ID: c.ID, Err: ErrNotStarted})
		}
	} else {
		// Timers due at now fire before the input is handled, so that an
		// input never acts on a lease whose stop point has passed.
		if _, isTick := in.(Tick); !isTick {
			s.tick(&o, now)
		}
		switch in := in.(type) {
		case Receive:
			s.receive(&o, in.Msg, now)
		case Tick:
			s.tick(&o, now)
		case Command:
			s.command(&o, in, now)
		case HandlerDone:
			s.handlerDone(&o, in, now)
		case HandoverDone:
			s.handoverDone(&o, in, now)
		case Stopped:
			s.stopped(&o, in, now)
		}
		// Every input also lets due timers fire, so after Step nothing due at
		// now is pending and NextTimer(now) lies in the future.
		if _, isTick := in.(Tick); !isTick {
			s.tick(&o, now)
		}
	}
	effs := o.effs
	if o.persist {
		// How long a promise of ours may bind us, for the next restart:
		// a longer binding from before a configuration change counts
		// until our restart window has outlasted it.
		s.P.Binding = s.cfg.binding()
		if now < s.windowUntil {
			s.P.Binding = max(s.P.Binding, s.binding)
		}
		effs = append([]Effect{Persist{State: s.P.clone()}}, effs...)
	}
	return s, o.msgs, effs
}

func (s *State) self() int { return s.cl.Self }

func (s *State) manual() bool { return s.cfg.Mode == Manual }

// lockFor is how long an acknowledgement binds this member: expire on its
// own clock for an auto ticket, until release for a manual one.
func (s *State) lockFor(now time.Duration) time.Duration {
	if s.manual() {
		return forever
	}
	return now + s.cfg.Expire
}

func (s *State) event(o *out, k EventKind, owner int, now time.Duration, format string, args ...any) {
	s.eventIn(o, k, s.P.Term, owner, now, format, args...)
}

// eventIn is an event about a term other than our own (an owner we see).
func (s *State) eventIn(o *out, k EventKind, term uint64, owner int, now time.Duration, format string, args ...any) {
	reason := fmt.Sprintf(format, args...)
	s.lastChange, s.lastReason = now, k.String()+": "+reason
	o.effect(Event{Kind: k, Term: term, Owner: owner, Reason: reason})
}

func (s *State) newRoundID() uint64 {
	s.seq++
	return s.seq
}

func (s *State) newToken() uint64 {
	s.tokens++
	return s.tokens
}

func (s *State) msg(t MsgType, to int) Message {
	return Message{Type: t, Ticket: s.cfg.Name, Term: s.P.Term, From: s.self(), To: to,
		Site: None, Acked: None}
}

// broadcast sends a bare message of type t to every other member.
func (s *State) broadcast(o *out, t MsgType) {
	for i := range s.cl.Members {
		if i != s.self() {
			o.msgs = append(o.msgs, s.msg(t, i))
		}
	}
}

// sendRound sends the round's request to every member that has not answered.
func (s *State) sendRound(o *out, r *round, t MsgType, now time.Duration) {
	for i := range s.cl.Members {
		if i == s.self() || r.acked(i) || r.nacked(i) {
			continue
		}
		m := s.msg(t, i)
		m.Term, m.Round, m.Reason, m.Flags, m.Site = r.Term, r.ID, r.Reason, r.Flags, r.Site
		if t == MsgRenew {
			m.AttrDigest = attrDigest(s.P.Attrs)
			if s.hold == owner && !s.manual() {
				// How long we still act as the owner (until we begin to
				// stop; after that we may even vote for another site), so
				// that members act on us no longer (observerTrust).
				m.Remaining = remaining(s.stopAt, now)
			}
		}
		if t == MsgAttrs {
			m.Attrs = append([]Attr(nil), s.P.Attrs...)
		}
		o.msgs = append(o.msgs, m)
	}
}

func (s *State) startRound(o *out, r *round, t MsgType, term uint64, reason Reason, flags Flags, site int, now time.Duration) {
	*r = round{Active: true, ID: s.newRoundID(), Term: term, Reason: reason, Flags: flags, Site: site,
		FirstSent: now, NextSend: now + s.cfg.Timeout, Sends: 1, Acks: 1 << uint(s.self())}
	s.sendRound(o, r, t, now)
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func (s *State) boot(o *out, b Boot, now time.Duration) {
	fresh := NewState(s.cfg, s.cl)
	fresh.rng = b.Seed
	fresh.seq = fresh.rand() << 16
	fresh.tokens = fresh.rand() << 16
	*s = fresh
	s.booted = true
	s.binding = s.cfg.binding()
	if b.Persisted != nil {
		s.P = b.Persisted.clone()
		s.synced = true
		// A promise given under an earlier configuration (a longer expire)
		// may bind us longer than the current one says.
		s.binding = max(s.binding, s.P.Binding)
	} else {
		s.wiped = true
	}
	s.windowUntil = now + s.cfg.stretched(s.binding)
	// Nothing is shown as the owner until a message proves it: what the
	// disk says is who held the ticket once, not who holds it now.
	// Ask the others what they know; the answers fill in the view and the
	// attributes, and let a member without state vote on manual tickets.
	s.broadcast(o, MsgSyncReq)
	s.nextSync = now + s.cfg.RenewalFreq
	ours := s.P.Managed && s.P.Owner == s.self()
	if b.Running {
		s.bootRunning(o, ours, b.LeaseEnd, now)
	}
	if ours {
		s.restartOwner = true
		if s.manual() {
			// A manual owner resumes once a majority confirms nobody took
			// the ticket while it was down.
			s.startRound(o, &s.renew, MsgRenew, s.P.Term, ReasonRestart, FlagManual, s.self(), now)
			s.nextRenew = now + s.cfg.RenewalFreq
		} else {
			s.acquireAt, s.acquireReason = now, ReasonRestart
		}
	}
}

// bootRunning takes over resources found running at boot: they go on
// running only under a lease of our own that is still long enough to stop
// them in time (for a manual ticket: while we are its owner), and are
// stopped at once otherwise.
func (s *State) bootRunning(o *out, ours bool, leaseEnd, now time.Duration) {
	why := ""
	switch {
	case !ours:
		why = "granted in the local CIB at start, but not held here"
	case s.manual():
	case leaseEnd == 0:
		why = "granted in the local CIB at start without a lease end"
	case leaseEnd-s.cfg.stopLead() <= now:
		why = "granted in the local CIB at start under a lease that ends too soon"
	default:
		// The restart deadman: stop where the owner would have, unless we
		// hold the ticket again by then.
		s.restartStop, s.restartLease = leaseEnd-s.cfg.stopLead(), leaseEnd
	}
	if why != "" {
		s.stopToken, s.afterStop = s.newToken(), afterNothing
		o.effect(StopResources{Token: s.stopToken, Reason: why, Deadline: s.stopDeadline(0, now)})
		return
	}
	s.running = true
}

func (s *State) tick(o *out, now time.Duration) {
	if s.hold == owner && now >= s.stopAt {
		s.loseLease(o, now)
	}
	if s.running && s.hold != owner && s.restartStop > 0 && now >= s.restartStop {
		s.stopRunning(o, s.restartLease, now, "the lease held before the restart ends and was not renewed")
	}
	s.tickRound(o, &s.elect, MsgVoteReq, now)
	s.tickRound(o, &s.renew, MsgRenew, now)
	s.tickRound(o, &s.release, MsgRelease, now)
	s.tickRound(o, &s.attrs, MsgAttrs, now)
	if s.hold == owner && now >= s.nextRenew && !s.renew.Active && !s.elect.Active {
		s.startRenewal(o, now, true)
	}
	if s.restartOwner && s.manual() && s.hold == follower && !s.renew.Active && now >= s.nextRenew {
		// Ask again for confirmation (the others may have been down).
		s.startRound(o, &s.renew, MsgRenew, s.P.Term, ReasonRestart, FlagManual, s.self(), now)
		s.nextRenew = now + s.cfg.RenewalFreq
	}
	if s.viewOwner != None && s.viewOwner != s.self() && now >= s.viewExpires && s.viewExpires != forever {
		s.lostOwner = s.viewOwner
		s.viewOwner = None
		s.event(o, EvLost, s.lostOwner, now, "lease of %s ran out", s.cl.Name(s.lostOwner))
	}
	if s.manual() && s.wiped && !s.synced && now >= s.nextSync {
		s.syncFrom = 0
		s.nextSync = now + s.cfg.RenewalFreq
		s.broadcast(o, MsgSyncReq)
	}
	s.planAcquire(now)
	if s.AcquireDue(now) && !s.paced {
		s.tryAcquire(o, now)
	}
}

func (s *State) tickRound(o *out, r *round, t MsgType, now time.Duration) {
	if !r.Active || now < r.NextSend {
		return
	}
	if r.Sends <= s.cfg.Retries {
		r.Sends++
		r.NextSend = now + s.cfg.Timeout
		s.sendRound(o, r, t, now)
		return
	}
	r.Active = false
	switch t {
	case MsgVoteReq:
		s.unanswered = true
		s.electionFailed(o, now, "no majority answered")
	case MsgRenew:
		if s.hold == owner && !s.manual() {
			// Try again at once while the lease lasts.
			s.nextRenew = now
		}
	}
}

func (s *State) receive(o *out, m Message, now time.Duration) {
	if m.From < 0 || m.From >= len(s.cl.Members) || m.From == s.self() || m.To != s.self() || m.Ticket != s.cfg.Name {
		return
	}
	if m.Term > s.highTerm {
		s.highTerm = m.Term
	}
	switch m.Type {
	case MsgVoteReq:
		s.onVoteReq(o, m, now)
	case MsgVoteResp:
		s.onVoteResp(o, m, now)
	case MsgRenew:
		s.onRenew(o, m, now)
	case MsgRenewAck:
		s.onRenewAck(o, m, now)
	case MsgRelease:
		s.onRelease(o, m, now)
	case MsgReleaseAck:
		s.onReleaseAck(m)
	case MsgGrantReq:
		if m.Site == s.self() {
			s.grant(o, Command{Op: OpGrant, Site: s.self(), Force: m.Flags&FlagForce != 0}, now)
		}
	case MsgRevokeReq:
		if s.hold == owner {
			s.revoke(o, Command{Op: OpRevoke}, now)
		}
	case MsgMoveReq:
		if s.hold == owner {
			s.move(o, Command{Op: OpMove, Site: m.Site}, now)
		}
	case MsgAttrs:
		s.onAttrs(o, m)
	case MsgAttrsAck:
		if s.attrs.Active && m.Round == s.attrs.ID {
			s.attrs.Acks |= 1 << uint(m.From)
			if popcount(s.attrs.Acks) == len(s.cl.Members) {
				s.attrs.Active = false
			}
		}
	case MsgSyncReq:
		r := s.msg(MsgSyncResp, m.From)
		r.Acked = s.P.Acked
		// The owner, only with a proof of its lease and what is left of
		// it: a restarted member shows nothing it cannot trust.
		r.Site, r.Remaining = s.provenOwner(now)
		if s.P.Managed {
			r.Flags |= FlagManaged
		}
		r.Attrs = append([]Attr(nil), s.P.Attrs...)
		o.msgs = append(o.msgs, r)
	case MsgSyncResp:
		s.onSyncResp(o, m, now)
	}
}
