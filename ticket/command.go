package ticket

import (
	"fmt"
	"time"
)

func (s *State) command(o *out, c Command, now time.Duration) {
	switch c.Op {
	case OpGrant:
		s.grant(o, c, now)
	case OpRevoke:
		s.revoke(o, c, now)
	case OpMove:
		s.move(o, c, now)
	case OpAttrSet, OpAttrDelete:
		s.setAttr(o, c, now)
	case OpRelease:
		if s.hold != owner {
			reply(o, c.ID, ErrNotOwner, "not held here")
			return
		}
		s.stopThen(o, afterRelease, 0, None, now, "released: "+c.Value)
		reply(o, c.ID, nil, "releasing")
	default:
		o.effect(Reply{ID: c.ID, Err: ErrUnknownCommand})
	}
}

func reply(o *out, id uint64, err error, format string, args ...any) {
	if id != 0 {
		o.effect(Reply{ID: id, Err: err, Detail: fmt.Sprintf(format, args...)})
	}
}

// grant handles an operator's grant of the ticket to c.Site. Booth's rules:
// granting to the holder succeeds; a ticket held elsewhere must be moved; a
// grant waits out the lease of an owner that stopped renewing (and
// acquire_after) unless forced, and force is the operator's responsibility.
// (One function on purpose: Booth's grant rules, in the order they apply.)
func (s *State) grant(o *out, c Command, now time.Duration) {
	target := c.Site
	if !s.cl.IsSite(target) {
		reply(o, c.ID, ErrNotSite, "%q is not a site", s.cl.Name(target))
		return
	}
	if target != s.self() {
		if cur := s.knownOwner(now); cur == target {
			reply(o, c.ID, nil, "%s already holds the ticket", s.cl.Name(target))
			return
		} else if cur = s.renewingOwner(now); cur != None && !c.Force {
			reply(o, c.ID, ErrHeldElsewhere, "%s holds the ticket", s.cl.Name(cur))
			return
		}
		m := s.msg(MsgGrantReq, target)
		m.Site = target
		if c.Force {
			m.Flags |= FlagForce
		}
		o.msgs = append(o.msgs, m)
		reply(o, c.ID, nil, "grant forwarded to %s", s.cl.Name(target))
		return
	}
	if s.hold == owner {
		reply(o, c.ID, nil, "already held here")
		return
	}
	if s.stopToken != 0 && s.afterStop == afterRelease && !s.cfg.Mutations.GrantWhileReleasing {
		// Our release (a move, a revoke) waits for the resources to
		// stop; winning now would have it release the new term too.
		reply(o, c.ID, ErrBusy, "a move or release is under way here; grant again once it is done")
		return
	}
	if !s.prereqsMet(false) {
		reply(o, c.ID, ErrPrereq, "attr_prereq for manual grants not met")
		return
	}
	if s.elect.Active || s.handlerToken != 0 {
		// Already trying; from now on as the operator's grant.
		if s.acquireReason == ReasonAuto {
			s.acquireReason = ReasonGrant
		}
		if !s.P.Managed {
			s.P.Managed = true
			o.persist = true
		}
		reply(o, c.ID, nil, "acquiring")
		return
	}
	if s.manual() {
		s.grantManual(o, c, now)
		return
	}
	if !s.P.Managed {
		s.P.Managed = true
		o.persist = true
	}
	cur := s.knownOwner(now)
	switch {
	case c.Force:
		s.event(o, EvForced, s.self(), now, "operator forced a grant; it is their responsibility that no other site holds the ticket")
		s.acquireAt, s.acquireReason, s.acquireForce = now, ReasonForce, true
		reply(o, c.ID, nil, "forced grant under way")
	case s.renewingOwner(now) != None:
		reply(o, c.ID, ErrHeldElsewhere, "%s holds the ticket and renews it", s.cl.Name(cur))
		return
	case cur != None || now < s.windowUntil || (s.promiseTo != None && s.promiseTo != s.self() && now < s.promiseUntil):
		at := s.viewExpires + s.cfg.AcquireAfter
		if s.promiseUntil+s.cfg.AcquireAfter > at && s.promiseTo != s.self() && s.promiseUntil != forever {
			at = s.promiseUntil + s.cfg.AcquireAfter
		}
		if s.windowUntil > at {
			at = s.windowUntil
		}
		if at < now {
			at = now
		}
		s.acquireAt, s.acquireReason, s.acquireForce = at, ReasonGrant, false
		reply(o, c.ID, nil, "waiting %v for the previous lease to run out", (at - now).Round(time.Millisecond))
	default:
		s.acquireAt, s.acquireReason, s.acquireForce = now, ReasonGrant, false
		reply(o, c.ID, nil, "acquiring")
	}
	s.tryAcquireIfDue(o, now)
}

// renewingOwner is the site we know holds the ticket because it renewed
// to us recently (within a renewal period and a round of retries), or
// ourselves; None when we only guess (a view from before a restart, or
// from a third member).
func (s *State) renewingOwner(now time.Duration) int {
	if s.hold == owner {
		return s.self()
	}
	cur := s.knownOwner(now)
	if cur != None && s.viewHeard > 0 && now-s.viewHeard < s.cfg.RenewalFreq+s.cfg.Timeout*time.Duration(s.cfg.Retries+1) {
		return cur
	}
	return None
}

func (s *State) tryAcquireIfDue(o *out, now time.Duration) {
	if s.acquireAt > 0 && now >= s.acquireAt && s.hold == follower && !s.elect.Active {
		s.tryAcquire(o, now)
	}
}

// forcedTermJump is how far a forced grant at a member without state jumps
// ahead of the terms it knows.
const forcedTermJump = 1 << 32

// grantManual: a manual ticket has no lease. A grant needs a majority that
// knows no other holder; a forced grant takes the ticket at once in a
// higher term and the old holder yields when it hears of it.
func (s *State) grantManual(o *out, c Command, now time.Duration) {
	holder := s.P.Owner
	if s.viewOwner != None {
		holder = s.viewOwner
	}
	if !c.Force && s.P.Managed && holder != None && holder != s.self() {
		reply(o, c.ID, ErrHeldElsewhere, "%s holds the manual ticket: move it, or grant with force if %s is down", s.cl.Name(holder), s.cl.Name(holder))
		return
	}
	if !c.Force {
		s.acquireAt, s.acquireReason, s.acquireForce = now, ReasonGrant, false
		reply(o, c.ID, nil, "acquiring")
		s.tryAcquireIfDue(o, now)
		return
	}
	t := s.P.Term
	if s.highTerm > t {
		t = s.highTerm
	}
	t++
	if s.wiped && !s.synced && s.highTerm == 0 {
		// We lost our state and heard from nobody: the crashed holder may
		// come back with a term we never saw. Jump far above any term it
		// could have reached, so it yields to this grant.
		t += forcedTermJump
	}
	s.P.Term, s.P.Acked, s.P.Owner, s.P.Managed = t, s.self(), s.self(), true
	o.persist = true
	s.synced = true
	s.promiseTo, s.promiseUntil, s.promiseHeld = s.self(), forever, true
	s.hold, s.leaseEnd, s.stopAt, s.running = owner, forever, forever, true
	s.heldTerm = t
	s.viewOwner, s.viewTerm, s.viewExpires = s.self(), t, forever
	s.event(o, EvForced, s.self(), now, "operator forced a grant; it is their responsibility that %s is down", s.cl.Name(holder))
	o.effect(StartResources{Term: t, Forced: true})
	s.startRound(o, &s.renew, MsgRenew, t, ReasonForce, FlagManual|FlagForce, s.self(), now)
	s.nextRenew = now + s.cfg.RenewalFreq
	reply(o, c.ID, nil, "granted (forced)")
}

// revoke: only the owner can end its lease, by stopping its resources and
// then releasing. Elsewhere the request is forwarded to the owner; with
// force the ticket is revoked locally only.
func (s *State) revoke(o *out, c Command, now time.Duration) {
	switch {
	case s.hold == owner:
		s.P.Managed = false
		o.persist = true
		s.stopThen(o, afterRelease, FlagRevoke, None, now, "revoked by the operator")
		reply(o, c.ID, nil, "revoking")
	case c.Force:
		// The ticket stops being managed here; a lock this member holds
		// for a manual ticket's owner stays (its durable Acked), so that
		// not even a restart frees it: only the owner's release or an
		// operator's forced grant does.
		s.P.Managed, s.P.Owner = false, None
		o.persist = true
		s.viewOwner, s.acquireAt = None, 0
		s.elect.Active = false
		if s.hold == candidate {
			s.hold = follower
		}
		s.event(o, EvRevoked, None, now, "revoked locally by the operator (force)")
		reply(o, c.ID, nil, "revoked locally")
	default:
		cur := s.knownOwner(now)
		if s.manual() && cur == None {
			cur = s.P.Owner
		}
		if cur == None {
			if !s.P.Managed {
				reply(o, c.ID, ErrNotGranted, "not granted")
				return
			}
			s.P.Managed = false
			if s.manual() {
				// Nobody holds it: a vote given for a grant that never
				// completed locks nothing any more.
				s.P.Acked = None
			}
			o.persist = true
			s.acquireAt = 0
			s.event(o, EvRevoked, None, now, "revoked by the operator while nobody held it")
			reply(o, c.ID, nil, "revoked")
			return
		}
		m := s.msg(MsgRevokeReq, cur)
		o.msgs = append(o.msgs, m)
		reply(o, c.ID, nil, "revoke forwarded to %s", s.cl.Name(cur))
	}
}

// move starts a planned handover: the runtime prepares (stops services,
// drains replication) and answers HandoverDone; then the owner stops its
// resources and releases the ticket to the target, which acquires at once.
func (s *State) move(o *out, c Command, now time.Duration) {
	to := c.Site
	if !s.cl.IsSite(to) {
		reply(o, c.ID, ErrNotSite, "%q is not a site", s.cl.Name(to))
		return
	}
	if s.hold != owner {
		cur := s.knownOwner(now)
		switch cur {
		case None:
			reply(o, c.ID, ErrNoOwner, "nobody holds the ticket")
		case to:
			reply(o, c.ID, nil, "%s already holds the ticket", s.cl.Name(to))
		default:
			m := s.msg(MsgMoveReq, cur)
			m.Site = to
			o.msgs = append(o.msgs, m)
			reply(o, c.ID, nil, "move forwarded to %s", s.cl.Name(cur))
		}
		return
	}
	if to == s.self() {
		reply(o, c.ID, nil, "already held here")
		return
	}
	if s.moveToken != 0 || s.stopToken != 0 && s.afterStop == afterRelease {
		reply(o, c.ID, ErrBusy, "a move or release is already under way")
		return
	}
	s.moveTo, s.moveToken = to, s.newToken()
	o.effect(PrepareHandover{Token: s.moveToken, To: to})
	reply(o, c.ID, nil, "handing over to %s", s.cl.Name(to))
}

func (s *State) handoverDone(o *out, in HandoverDone, now time.Duration) {
	if in.Token == 0 || in.Token != s.moveToken {
		return
	}
	to := s.moveTo
	s.moveTo, s.moveToken = None, 0
	if !in.OK || s.hold != owner {
		s.event(o, EvMoveAborted, s.self(), now, "handover to %s not ready; keeping the ticket", s.cl.Name(to))
		return
	}
	s.stopThen(o, afterRelease, 0, to, now, "moving to "+s.cl.Name(to))
}

// stopThen gives the ticket up on our own initiative: stop the resources,
// and once they are down (Stopped), release with flags to site.
func (s *State) stopThen(o *out, next afterStop, flags Flags, site int, now time.Duration, why string) {
	s.hold = follower
	s.renew.Active, s.elect.Active = false, false
	s.viewOwner = None
	s.relFlags, s.relSite = flags, site
	s.stopResources(o, next, s.leaseEnd, now, why)
}

func (s *State) stopped(o *out, in Stopped, now time.Duration) {
	if in.Token == 0 || in.Token != s.stopToken {
		return
	}
	s.stopToken = 0
	if s.afterStop != afterRelease {
		return
	}
	s.afterStop = afterNothing
	// The resources are down: nobody depends on our lease any more.
	if s.promiseTo == s.self() {
		s.promiseTo = None
	}
	s.P.Owner = None
	if s.manual() {
		s.P.Acked = None
	}
	o.persist = true
	flags := s.relFlags
	if s.manual() {
		flags |= FlagManual
	}
	s.lostOwner = s.self()
	s.viewExpires = now
	if s.relSite != None {
		// The target takes over now; do not contend with it unless it has
		// not done so within a lease.
		s.handedTo, s.handedUntil = s.relSite, s.lockFor(now)
	}
	switch {
	case flags&FlagRevoke != 0:
		s.event(o, EvRevoked, None, now, "released by the owner")
	case s.relSite != None:
		s.event(o, EvMoved, s.relSite, now, "handed over to %s", s.cl.Name(s.relSite))
	default:
		s.event(o, EvReleased, None, now, "released")
	}
	s.startRound(o, &s.release, MsgRelease, s.heldTerm, ReasonNone, flags, s.relSite, now)
	s.relSite = None
}

func (s *State) onRelease(o *out, m Message, now time.Duration) {
	if m.Reason == ReasonAbort {
		// The candidate gave up. A promise to a site that held a lease
		// through us stays: an owner whose reassertion failed may still
		// be stopping what that lease guards.
		if s.promiseTo == m.From && m.Term >= s.P.Term && !s.promiseHeld {
			s.promiseTo = None
			if s.manual() && s.P.Acked == m.From {
				s.P.Acked = None
				o.persist = true
			}
		}
		return
	}
	ack := s.msg(MsgReleaseAck, m.From)
	ack.Round, ack.OK = m.Round, true
	o.msgs = append(o.msgs, ack)
	// A promise is dropped only by a release for its own term or a later
	// one: the same site may hold a newer lease whose voters must keep it.
	if s.promiseTo == m.From && m.Term >= s.P.Term {
		s.promiseTo = None
	}
	// Our own term may have grown through elections nobody won; a release
	// from the owner we know, for the term we know it in, still tells us
	// the ticket was released (or revoked).
	fresh := m.Term >= s.P.Term
	fromOwner := s.viewOwner == m.From && m.Term >= s.viewTerm
	if !fresh && !fromOwner {
		return
	}
	if fresh && (s.P.Owner == m.From || (s.manual() && s.P.Acked == m.From)) {
		s.P.Owner = None
		if s.manual() {
			s.P.Acked = None
		}
		o.persist = true
	}
	if s.viewOwner == m.From {
		s.viewOwner, s.viewExpires = None, now
		s.lostOwner = m.From
	}
	if m.Flags&FlagRevoke != 0 {
		if s.P.Managed {
			s.P.Managed = false
			o.persist = true
			s.event(o, EvRevoked, None, now, "revoked by %s", s.cl.Name(m.From))
		}
		s.acquireAt = 0
		return
	}
	if m.Site == s.self() && s.cl.IsSite(s.self()) {
		s.acquireAt, s.acquireReason, s.acquireForce = now, ReasonMove, false
		s.tryAcquireIfDue(o, now)
	}
}

func (s *State) onReleaseAck(m Message) {
	r := &s.release
	if r.Active && m.Round == r.ID {
		r.Acks |= 1 << uint(m.From)
		if popcount(r.Acks) == len(s.cl.Members) {
			r.Active = false
		}
	}
}
