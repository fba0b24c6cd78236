package ticket

import (
	"sort"
	"time"
)

// refusal says why this member may not acknowledge site c now (0: it may),
// and for how long the obstacle lasts. force skips the promise checks (an
// operator's forced grant), never the term checks.
func (s *State) refusal(c int, force bool, now time.Duration) (Reason, time.Duration) {
	if !s.cl.IsSite(c) {
		return RefuseNotSite, 0
	}
	if force {
		// A forced grant skips the wait for an unreachable owner's lease,
		// not a reachable one: if we heard from the site we promised within
		// a renewal period, it is alive and holding.
		if s.promiseTo != None && s.promiseTo != c && now < s.promiseUntil && now-s.promiseHeard < s.cfg.RenewalFreq+s.cfg.Timeout {
			return RefusePromised, remaining(s.promiseUntil, now)
		}
		return 0, 0
	}
	if now < s.windowUntil && !s.manual() && (s.wiped || c != s.P.Acked) && !s.cfg.Mutations.NoRestartAbstention {
		// After a restart we may have forgotten a promise: a member that
		// kept its state knows it could only have been to P.Acked; one
		// that lost it must wait out any promise it could have given.
		return RefuseRestarting, s.windowUntil - now
	}
	if s.manual() && s.wiped && !s.synced {
		return RefuseRestarting, 0
	}
	if s.promiseTo != None && s.promiseTo != c && !s.cfg.Mutations.IgnorePromises {
		switch {
		case now < s.promiseUntil && !s.promiseHeld:
			// Promised to a candidate: it wins soon (and renews) or gives
			// up and releases us; do not make the asker wait a whole lease.
			return RefusePromised, 0
		case now < s.promiseUntil:
			return RefusePromised, remaining(s.promiseUntil, now)
		case now < s.promiseTail():
			// The holder's lease is over, but its resources may still be
			// stopping (a dead daemon's guard): acquire_after more.
			return RefuseStopping, s.promiseTail() - now
		}
	}
	if s.manual() && s.P.Acked != None && s.P.Acked != c {
		// The lock of a manual ticket holds until its owner releases it,
		// whether or not the ticket is still managed here (a local forced
		// revoke does not free it).
		return RefuseOwned, forever
	}
	return 0, 0
}

// promiseTail is when our promise stops binding us: acquire_after after it
// ends for a promise to a holder, at its end for one to a candidate.
func (s *State) promiseTail() time.Duration {
	if !s.promiseHeld || s.promiseUntil == forever {
		return s.promiseUntil
	}
	return s.promiseUntil + s.cfg.AcquireAfter
}

// ack records that this member acknowledges site c in term t (a vote or a
// renewal): from now on it will not acknowledge another site until the
// promise runs out (auto) or c releases it (manual).
func (s *State) ack(o *out, c int, t uint64, now time.Duration, held bool) {
	volatile := !held && c != s.self() && s.cfg.Mutations.VotesNotPersisted
	if !volatile && (s.P.Term != t || s.P.Acked != c || !s.P.Managed) {
		s.P.Term, s.P.Acked, s.P.Managed = t, c, true
		o.persist = true
	}
	until := s.lockFor(now)
	if s.promiseTo == c && s.promiseHeld && now < s.promiseTail() {
		// A vote for a site that holds a lease through us (an owner's
		// reassertion) does not weaken the promise that backs that lease.
		held, until = true, max(until, s.promiseUntil)
	}
	s.promiseTo, s.promiseUntil, s.promiseHeard, s.promiseHeld = c, until, now, held
}

func (s *State) onVoteReq(o *out, m Message, now time.Duration) {
	r := s.msg(MsgVoteResp, m.From)
	r.Round, r.Acked = m.Round, s.P.Acked
	r.Site, _ = s.provenOwner(now)
	force := m.Reason == ReasonForce
	why, rem := s.refusal(m.From, force, now)
	switch {
	case why != 0:
	case s.hold != follower || s.running:
		// We hold (or are acquiring) the ticket and are evidently reachable:
		// even a forced grant must be a move.
		why = RefuseOwned
	case m.Term < s.P.Term:
		why = RefuseStaleTerm
	case m.Term == s.P.Term && s.P.Acked != None && s.P.Acked != m.From:
		why = RefuseVoted
	case m.Reason == ReasonAuto && !s.P.Managed:
		why = RefuseNotGranted
	}
	if why != 0 {
		r.Reason, r.Remaining = why, rem
		if why == RefusePromised {
			r.Acked = s.promiseTo
		}
		o.msgs = append(o.msgs, r)
		return
	}
	// Whatever we planned to acquire now waits for this promise to end
	// (startElection checks).
	s.ack(o, m.From, m.Term, now, false)
	r.OK, r.Term, r.Acked = true, s.P.Term, s.P.Acked
	o.msgs = append(o.msgs, r)
}

// knownOwner is the owner this member knows of: itself while it holds, or
// the owner its view shows.
func (s *State) knownOwner(now time.Duration) int {
	if s.hold == owner {
		return s.self()
	}
	if s.viewOwner != None && now < s.viewExpires {
		return s.viewOwner
	}
	return None
}

// provenOwner is the owner this member may name to another, with how long
// its lease still runs as seen here: itself while it holds, or an owner it
// has a proof of in the term the message will carry (its own). A member
// that moved on to a later term (it voted in an election nobody won) names
// nobody, so that no term is ever attached to an owner that did not hold
// the ticket in it.
func (s *State) provenOwner(now time.Duration) (int, time.Duration) {
	if s.hold == owner && now < s.stopAt {
		return s.self(), remaining(s.leaseEnd, now)
	}
	if s.viewOwner != None && now < s.viewExpires && s.viewTerm == s.P.Term {
		return s.viewOwner, remaining(s.viewExpires, now)
	}
	return None, 0
}

// planAcquire decides when an auto ticket whose owner is gone will be
// acquired here: after the lease as this member saw it, plus acquire_after,
// plus a delay by rank so the preferred site tries first.
func (s *State) planAcquire(now time.Duration) {
	if s.manual() || !s.P.Managed || !s.cl.IsSite(s.self()) || s.hold != follower || s.elect.Active ||
		s.acquireAt > 0 || s.handlerToken != 0 || now < s.windowUntil || s.afterStop == afterRelease {
		return
	}
	if s.viewOwner != None && now < s.viewExpires || s.handedTo != None && now < s.handedUntil {
		return
	}
	// acquire_after after every lease we know of: the owner's as we saw it,
	// and the one we promised.
	at := max(now, s.viewExpires+s.cfg.AcquireAfter)
	if s.promiseTo != None && s.promiseTo != s.self() && s.promiseUntil != forever {
		at = max(at, s.promiseUntil+s.cfg.AcquireAfter)
	}
	s.acquireAt = at + time.Duration(s.rank())*s.cfg.Timeout + s.jitter(s.cfg.Timeout/2) + 1
	s.acquireReason, s.acquireForce = ReasonAuto, false
}

// rank is how many sites should try before this one: sites ordered by
// weight (higher first) and then configuration order, leaving out the site
// that just lost the ticket.
func (s *State) rank() int {
	var sites []int
	for i := range s.cl.Members {
		if s.cl.IsSite(i) && i != s.lostOwner {
			sites = append(sites, i)
		}
	}
	w := func(i int) int {
		if s.cfg.Weights != nil {
			return s.cfg.Weights[i]
		}
		return s.cl.Members[i].Weight
	}
	sort.SliceStable(sites, func(a, b int) bool { return w(sites[a]) > w(sites[b]) })
	for r, i := range sites {
		if i == s.self() {
			return r
		}
	}
	return 0
}

// outranks reports whether site a has priority over site b for
// conflicting requests: higher weight first, then configuration order.
func (s *State) outranks(a, b int) bool {
	if !s.cl.IsSite(a) || !s.cl.IsSite(b) || a == b {
		return false
	}
	w := func(i int) int {
		if s.cfg.Weights != nil {
			return s.cfg.Weights[i]
		}
		return s.cl.Members[i].Weight
	}
	if w(a) != w(b) {
		return w(a) > w(b)
	}
	return a < b
}

// tryAcquire starts acquiring for acquireReason, after the checks and the
// before-acquire handler.
func (s *State) tryAcquire(o *out, now time.Duration) {
	reason, force := s.acquireReason, s.acquireForce
	s.acquireAt = 0
	if s.postponed(now) {
		return
	}
	if !s.prereqsMet(reason == ReasonAuto) {
		s.event(o, EvHandlerFailed, None, now, "attr_prereq not met, not acquiring")
		if reason == ReasonAuto {
			s.acquireAt, s.acquireReason = now+s.cfg.RenewalFreq, reason
		}
		return
	}
	if s.cfg.checks() {
		s.handlerToken, s.handlerKind = s.newToken(), HandlerAcquire
		s.acquireReason = reason
		o.effect(RunHandler{Token: s.handlerToken, Kind: HandlerAcquire, Force: force})
		return
	}
	s.startElection(o, reason, force, now)
}

// postponed reports whether this site may not vote for itself yet (a
// restart window, a promise to another site), and if so plans the attempt
// for when the obstacle ends.
func (s *State) postponed(now time.Duration) bool {
	force := s.acquireForce
	if !force && now < s.windowUntil && (s.wiped || s.P.Acked != s.self()) && !s.manual() && !s.cfg.Mutations.NoRestartAbstention {
		s.acquireAt = s.windowUntil
		return true
	}
	if why, rem := s.refusal(s.self(), force, now); why != 0 {
		if rem > 0 && rem != forever {
			s.acquireAt = now + rem
		}
		return true
	}
	return false
}

func (s *State) startElection(o *out, reason Reason, force bool, now time.Duration) {
	if s.hold != owner && s.postponed(now) {
		return
	}
	s.unanswered = false
	t := s.P.Term
	if s.highTerm > t {
		t = s.highTerm
	}
	t++
	flags := Flags(0)
	if s.manual() {
		flags |= FlagManual
	}
	if force {
		flags |= FlagForce
		reason = ReasonForce
	}
	s.ack(o, s.self(), t, now, false)
	s.retryAfter = 0
	if s.hold == follower {
		s.hold = candidate
	}
	s.acquireReason, s.acquireForce = reason, force
	s.startRound(o, &s.elect, MsgVoteReq, t, reason, flags, s.self(), now)
	s.checkElection(o, now)
}

func (s *State) onVoteResp(o *out, m Message, now time.Duration) {
	r := &s.elect
	if !r.Active || m.Round != r.ID || r.acked(m.From) || r.nacked(m.From) {
		return
	}
	if m.OK {
		r.Acks |= 1 << uint(m.From)
	} else {
		r.Nacks |= 1 << uint(m.From)
		if m.Reason == RefuseNotGranted {
			r.NotGranted |= 1 << uint(m.From)
		}
		if m.Remaining > 0 && m.Remaining != forever {
			wait := m.Remaining
			if m.Reason == RefusePromised {
				// A holder's lease: its resources may stop until
				// acquire_after past it.
				wait += s.cfg.AcquireAfter
			}
			s.retryAfter = max(s.retryAfter, now+wait)
		}
		if m.Reason == RefusePromised && m.Site != None && m.Site == m.Acked && m.Site != s.self() && m.Remaining > 0 && s.hold != owner {
			// The voter acknowledged that owner's renewal in its term.
			s.setView(o, m.Site, m.Term, now+m.Remaining, now, false)
		}
		if m.Reason == RefusePromised && m.Remaining == 0 && s.hold == candidate && s.outranks(m.Acked, s.self()) {
			// Another candidate with priority (weights, then configuration
			// order) is collecting votes: give way, so the two do not split
			// the votes again and again.
			r.Active = false
			s.retryAfter = now + time.Duration(s.cfg.Retries+2)*s.cfg.Timeout
			s.electionFailed(o, now, "giving way to "+s.cl.Name(m.Acked))
			return
		}
	}
	s.checkElection(o, now)
}

func (s *State) checkElection(o *out, now time.Duration) {
	r := &s.elect
	n, q := len(s.cl.Members), s.cl.Quorum()
	switch {
	case popcount(r.Acks) >= q:
		r.Active = false
		s.won(o, now)
	case popcount(r.NotGranted) > n-q && s.acquireReason == ReasonAuto:
		// A majority does not count the ticket as granted (revoked while we
		// were away, or their state was lost): stop managing it until an
		// operator grants it again.
		r.Active = false
		s.P.Managed = false
		o.persist = true
		s.electionFailed(o, now, "a majority does not know the ticket as granted")
		s.acquireAt = 0
	case popcount(r.Nacks) > n-q:
		r.Active = false
		s.electionFailed(o, now, "refused by a majority")
	}
}

// won: a majority voted for us. The lease counts from the first
// transmission of the request, which is before any voter received it.
func (s *State) won(o *out, now time.Duration) {
	r := s.elect
	end, stop := forever, forever
	if !s.manual() {
		end = s.leaseStart(&r, now) + s.cfg.LeaseLength()
		stop = end - s.cfg.stopLead()
	}
	if s.hold == owner {
		// A reassertion in a higher term: the lease goes on.
		if end > s.leaseEnd {
			s.leaseEnd, s.stopAt = end, stop
		}
		s.reassert = false
		s.heldTerm = s.P.Term
		s.nextRenew = r.FirstSent + s.cfg.RenewalFreq
		if !s.manual() {
			// (A manual ticket, confirmed while it also asked for votes,
			// has no lease to renew.)
			o.effect(LeaseRenewed{Term: s.P.Term, LeaseEnd: s.leaseEnd})
		}
		return
	}
	if stop <= now {
		s.electionFailed(o, now, "majority came too late to use the lease")
		return
	}
	s.hold, s.leaseEnd, s.stopAt, s.running = owner, end, stop, true
	s.restartStop, s.restartLease, s.handedTo = 0, 0, None
	s.heldTerm = s.P.Term
	s.P.Owner, s.P.Managed = s.self(), true
	o.persist = true
	s.viewOwner, s.viewTerm, s.viewExpires, s.viewHeard = s.self(), s.P.Term, end, now
	s.acquireAt, s.acquireForce, s.restartOwner, s.lostOwner = 0, false, false, None
	s.failed = 0
	start := StartResources{Term: s.P.Term, LeaseEnd: end, Forced: r.Reason == ReasonForce}
	if end == forever {
		start.LeaseEnd = 0 // a manual ticket has no lease end
	}
	o.effect(start)
	s.event(o, EvAcquired, s.self(), now, "won term %d (%s)", s.P.Term, r.Reason)
	// Announce at once, so every member (and DNS) learns the new owner.
	s.nextRenew = now
	s.startRenewal(o, now, false)
}

// electionFailed gives up an election we did not win: nothing was started,
// so the voters may forget their promises to us.
func (s *State) electionFailed(o *out, now time.Duration, why string) {
	r := s.elect
	r.Active = false
	s.elect = r
	if s.hold == owner {
		// A failed reassertion: the lease we hold still rests on the
		// promises of the members that acknowledged it; keep them.
		return
	}
	s.hold = follower
	if s.promiseTo == s.self() && s.stopToken == 0 {
		// Nothing of ours runs: the voters may be freed. (A reassertion
		// that fails after the lease was lost keeps the promise to
		// ourselves while the resources stop.)
		s.promiseTo = None
	}
	if s.manual() && s.P.Acked == s.self() && s.P.Owner != s.self() {
		s.P.Acked = None
		o.persist = true
	}
	if s.stopToken == 0 && !s.running {
		// Free the voters only when nothing of ours runs or stops: after
		// a lease lost during a reassertion, the votes of that round may
		// be all that still binds them (an owner that won and at once
		// reasserted never had a renewal acknowledged), and the
		// resources it guarded are still stopping.
		for i := range s.cl.Members {
			if i != s.self() && r.acked(i) {
				m := s.msg(MsgRelease, i)
				m.Term, m.Round, m.Reason = r.Term, r.ID, ReasonAbort
				o.msgs = append(o.msgs, m)
			}
		}
	}
	s.consumeForce()
	reason := s.acquireReason
	// Candidates that split the votes must not retry in step: the site
	// ranked first retries first. Elections that keep failing (voters
	// overloaded by many tickets failing over at once) spread their
	// retries over a window that doubles each time, up to 16 timeouts.
	s.failed++
	spread := s.cfg.Timeout << min(s.failed-1, 4)
	retry := now + s.cfg.Timeout + time.Duration(s.rank())*s.cfg.Timeout
	if s.retryAfter > retry {
		retry = s.retryAfter
	}
	switch {
	case s.manual() && reason != ReasonMove:
		s.event(o, EvLost, None, now, "grant failed: %s", why)
	case reason == ReasonRestart:
		// The ticket moved on while we were down; acquire like anyone else.
	default:
		s.acquireAt, s.acquireReason = retry+s.jitter(spread)+1, reason
	}
}

// consumeForce ends a forced attempt: force was the operator's judgement
// at that moment, and a later retry waits like an ordinary grant.
func (s *State) consumeForce() {
	if s.acquireForce || s.acquireReason == ReasonForce {
		s.acquireForce, s.acquireReason = false, ReasonGrant
	}
}

func (s *State) prereqsMet(auto bool) bool {
	for _, p := range s.cfg.AttrPrereqs {
		if p.Auto != auto {
			continue
		}
		v, ok := s.attr(p.Name)
		if (ok && v == p.Value) == p.Negate {
			return false
		}
	}
	return true
}

func failedBecause(what, detail string) string {
	if detail == "" {
		return what
	}
	return what + ": " + detail
}

func (s *State) handlerDone(o *out, in HandlerDone, now time.Duration) {
	if in.Token == 0 || in.Token != s.handlerToken {
		return
	}
	s.handlerToken = 0
	switch s.handlerKind {
	case HandlerAcquire:
		if in.OK {
			s.startElection(o, s.acquireReason, s.acquireForce, now)
			return
		}
		s.event(o, EvHandlerFailed, None, now, "%s", failedBecause("before-acquire handler failed, not acquiring", in.Detail))
		s.consumeForce()
		if !s.manual() && s.acquireReason != ReasonMove {
			s.acquireAt = now + s.cfg.RenewalFreq
		}
	case HandlerRenew:
		if !in.OK && s.hold == owner {
			s.event(o, EvHandlerFailed, s.self(), now, "%s", failedBecause("before-acquire handler failed at renewal, releasing", in.Detail))
			s.stopThen(o, afterRelease, 0, None, now, "handler failed")
		}
	}
}
