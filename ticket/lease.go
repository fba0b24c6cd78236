package ticket

import "time"

// startRenewal begins the owner's next renewal: a heartbeat round in the
// current term, or, after learning of a higher term, a vote round that
// reasserts the ticket in a new one. The before-acquire handler runs
// alongside; if it fails the owner releases.
func (s *State) startRenewal(o *out, now time.Duration, runHandler bool) {
	if runHandler && s.cfg.checks() && s.handlerToken == 0 {
		s.handlerToken, s.handlerKind = s.newToken(), HandlerRenew
		o.effect(RunHandler{Token: s.handlerToken, Kind: HandlerRenew})
	}
	if s.reassert && !s.manual() {
		s.startElection(o, ReasonReassert, false, now)
		return
	}
	if why, _ := s.refusal(s.self(), false, now); why != 0 && !s.manual() {
		// Cannot even acknowledge ourselves (a restart window): let the lease
		// run out.
		s.nextRenew = s.stopAt
		return
	}
	flags := Flags(0)
	if s.manual() {
		flags |= FlagManual
	} else {
		s.promiseTo, s.promiseUntil, s.promiseHeard, s.promiseHeld = s.self(), now+s.cfg.Expire, now, true
	}
	s.startRound(o, &s.renew, MsgRenew, s.P.Term, ReasonNone, flags, s.self(), now)
	s.nextRenew = now + s.cfg.RenewalFreq
	s.checkRenewal(o, now)
}

func (s *State) onRenew(o *out, m Message, now time.Duration) {
	r := s.msg(MsgRenewAck, m.From)
	r.Round, r.Acked = m.Round, s.P.Acked
	r.Site, _ = s.provenOwner(now)
	r.AttrDigest = attrDigest(s.P.Attrs)
	if m.Flags&FlagGranted != 0 {
		if m.Term >= s.P.Term {
			s.trust(m, now)
		}
		return
	}
	if m.Term < s.P.Term {
		r.Reason = RefuseStaleTerm
		if s.manual() && s.P.Owner != None {
			r.Site = s.P.Owner
		}
		o.msgs = append(o.msgs, r)
		return
	}
	// A manual ticket in a higher term was granted by a majority (or forced
	// by the operator) after whatever our lock was for: it supersedes it,
	// and a holder of an older term yields.
	force := s.manual() && m.Term > s.P.Term
	if force && s.hold != follower {
		s.yield(o, now, "ticket granted to "+s.cl.Name(m.From)+" in a higher term")
	}
	if m.Reason != ReasonRestart {
		// Only a holder renews (a restarted manual owner asking to be
		// confirmed does not hold yet): this proves its lease.
		s.setView(o, m.From, m.Term, s.lockFor(now), now, true)
		s.trust(m, now)
	}
	if !s.P.Managed {
		// An owner renews: the ticket is granted, whether or not we may
		// acknowledge it yet (a restart window).
		s.P.Managed = true
		o.persist = true
	}
	why, rem := s.refusal(m.From, force, now)
	if why == 0 && m.Term == s.P.Term && s.P.Acked != None && s.P.Acked != m.From {
		why = RefuseVoted
	}
	if why != 0 {
		r.Reason, r.Remaining = why, rem
		o.msgs = append(o.msgs, r)
		return
	}
	s.ack(o, m.From, m.Term, now, true)
	if s.P.Owner != m.From {
		s.P.Owner = m.From
		o.persist = true
	}
	if s.manual() && s.wiped && !s.synced {
		s.synced = true
	}
	s.acquireAt, s.lostOwner = 0, None
	r.OK, r.Term, r.Acked = true, s.P.Term, s.P.Acked
	if m.AttrDigest != r.AttrDigest {
		r.Flags |= FlagAttrsDiffer
	}
	o.msgs = append(o.msgs, r)
}

// trust records, from an owner's renewal, until when we may act on it:
// the time it reported it would still act as the owner, as observerTrust
// discounts it.
func (s *State) trust(m Message, now time.Duration) {
	if m.Remaining <= 0 || m.Remaining == forever {
		return
	}
	until := now + s.cfg.observerTrust(m.Remaining)
	if s.trustOwner != m.From || s.trustTerm != m.Term || until > s.trustUntil {
		s.trustOwner, s.trustTerm, s.trustUntil = m.From, m.Term, until
	}
}

// setView records what we know of the owner, from a message that proves
// its lease: its own renewal (direct), or a member that holds the ticket
// or heard the owner renew in the term it is in.
func (s *State) setView(o *out, site int, term uint64, expires, now time.Duration, direct bool) {
	if site == s.self() {
		return
	}
	s.failed = 0
	if s.viewOwner != site {
		s.eventIn(o, EvOwnerChanged, term, site, now, "%s holds the ticket (term %d)", s.cl.Name(site), term)
		s.viewSince = now
	}
	s.viewOwner, s.viewTerm = site, term
	if direct {
		s.viewHeard = now
	}
	if expires > s.viewExpires || s.viewExpires == 0 || s.viewTerm != term {
		s.viewExpires = expires
	}
	if s.running && s.hold != owner {
		// Resources found running at boot under an old lease of ours:
		// another site holds the ticket, so that lease is over.
		s.stopRunning(o, s.restartLease, now, s.cl.Name(site)+" holds the ticket")
	}
}

func (s *State) onRenewAck(o *out, m Message, now time.Duration) {
	r := &s.renew
	if m.Flags&FlagAttrsDiffer != 0 {
		a := s.msg(MsgAttrs, m.From)
		a.Attrs = append([]Attr(nil), s.P.Attrs...)
		o.msgs = append(o.msgs, a)
	}
	if !r.Active || m.Round != r.ID || r.acked(m.From) || r.nacked(m.From) {
		return
	}
	if m.OK {
		r.Acks |= 1 << uint(m.From)
		s.checkRenewal(o, now)
		return
	}
	r.Nacks |= 1 << uint(m.From)
	newer := m.Term > r.Term || (m.Term == r.Term && m.Acked != None && m.Acked != s.self())
	if newer && s.manual() && m.Site != None && m.Site != s.self() {
		s.P.Term, s.P.Acked, s.P.Owner = m.Term, m.Site, m.Site
		o.persist = true
		r.Active = false
		if s.hold != follower {
			s.yield(o, now, s.cl.Name(m.Site)+" holds the ticket in a higher term")
		}
		s.restartOwner = false
		s.setView(o, m.Site, m.Term, forever, now, false)
		return
	}
	if newer && !s.manual() {
		s.reassert = true
	}
	if popcount(r.Nacks) > len(s.cl.Members)-s.cl.Quorum() {
		r.Active = false
		if s.hold == owner && !s.manual() {
			s.nextRenew = now
		}
	}
}

// checkRenewal extends the lease once a majority acknowledged the round.
func (s *State) checkRenewal(o *out, now time.Duration) {
	r := &s.renew
	need := s.cl.Quorum()
	confirming := s.restartOwner && s.hold == follower && s.manual()
	if confirming {
		// A manual owner that restarts resumes only once a majority of the
		// *other* members (all of them in a cluster of two or three)
		// confirm nobody was granted the ticket meanwhile: a forced grant
		// elsewhere may not have reached every member yet.
		others := len(s.cl.Members) - 1
		if need > others {
			need = others
		}
		need++
	}
	if !r.Active || popcount(r.Acks) < need {
		return
	}
	r.Active = false
	if confirming {
		s.restartOwner = false
		s.hold, s.leaseEnd, s.stopAt, s.running = owner, forever, forever, true
		s.heldTerm = s.P.Term
		s.promiseTo, s.promiseUntil, s.promiseHeld = s.self(), forever, true
		o.effect(StartResources{Term: s.P.Term})
		s.event(o, EvAcquired, s.self(), now, "confirmed by a majority after restart")
		s.nextRenew = now + s.cfg.RenewalFreq
		return
	}
	if s.hold != owner || s.manual() {
		return
	}
	sent := s.leaseStart(r, now)
	end := sent + s.cfg.LeaseLength()
	if end > s.leaseEnd {
		s.leaseEnd, s.stopAt = end, end-s.cfg.stopLead()
		s.viewExpires = end
		o.effect(LeaseRenewed{Term: s.P.Term, LeaseEnd: end})
		s.announceLease(o, r, now)
	}
}

// announceLease tells every member, once a majority granted a renewal,
// how long we now act as the owner: the round's renewal once more, marked
// granted, which members neither answer nor promise anything for (a
// member of an older version takes it for a retransmission, as safe). Its
// first transmission carried the lease as it was before, as every member
// must assume until a majority grants more (observerTrust); without this
// a member would stop acting on the owner before the next renewal.
func (s *State) announceLease(o *out, r *round, now time.Duration) {
	for i := range s.cl.Members {
		if i == s.self() {
			continue
		}
		m := s.msg(MsgRenew, i)
		m.Term, m.Round, m.Reason, m.Flags, m.Site = r.Term, r.ID, r.Reason, r.Flags|FlagGranted, r.Site
		m.Remaining = remaining(s.stopAt, now)
		o.msgs = append(o.msgs, m)
	}
}

// leaseStart is when a lease won or renewed by round r counts from: the
// round's first transmission, before any member received it.
func (s *State) leaseStart(r *round, now time.Duration) time.Duration {
	switch {
	case s.cfg.Mutations.LastSendTiming:
		return r.NextSend - s.cfg.Timeout
	case s.cfg.Mutations.AckTiming:
		return now
	}
	return r.FirstSent
}

// loseLease: the lease is about to end and was not renewed. Stop the
// resources now; the promise to ourselves keeps us from voting for another
// site until they have had stop_timeout to stop.
func (s *State) loseLease(o *out, now time.Duration) {
	s.hold = follower
	s.renew.Active = false
	s.reassert = false
	s.lostOwner = s.self()
	s.viewOwner, s.viewExpires = None, now
	if s.running {
		s.stopRunning(o, s.leaseEnd, now, "lease not renewed")
	}
	s.event(o, EvLost, s.self(), now, "lease not renewed by a majority")
}

// yield gives the ticket up at once because another site was granted it
// (a forced grant, or a manual ticket in a higher term).
func (s *State) yield(o *out, now time.Duration, why string) {
	wasOwner := s.hold == owner
	s.hold = follower
	s.elect.Active, s.renew.Active = false, false
	s.restartOwner = false
	if s.promiseTo == s.self() {
		s.promiseTo = None
	}
	if s.running {
		end := time.Duration(0)
		if wasOwner {
			end = s.leaseEnd
		}
		s.stopRunning(o, end, now, why)
	}
	s.event(o, EvYielded, None, now, "%s", why)
}

// stopRunning asks for the resources to stop, with nothing to do once they
// are down.
func (s *State) stopRunning(o *out, leaseEnd, now time.Duration, why string) {
	s.stopResources(o, afterNothing, leaseEnd, now, why)
}

// stopResources asks for the resources to stop and says what to do once
// they are down. Their deadline is the end of the lease they ran under
// (leaseEnd; 0 or forever: none); without one, stop_timeout from now, or
// no deadline when stop_timeout is not set.
func (s *State) stopResources(o *out, next afterStop, leaseEnd, now time.Duration, why string) {
	s.running = false
	s.restartStop, s.restartLease = 0, 0
	s.stopToken, s.afterStop = s.newToken(), next
	o.effect(StopResources{Token: s.stopToken, Reason: why, Deadline: s.stopDeadline(leaseEnd, now)})
}

func (s *State) stopDeadline(leaseEnd, now time.Duration) time.Duration {
	if leaseEnd > now && leaseEnd != forever {
		return leaseEnd
	}
	// No lease; or one that ended before the stop could even be asked
	// for, because the runtime was held up far past its timer slack (a
	// frozen process, a paused machine): the site's guard is what stopped
	// the resources meanwhile. Stop now, within stop_timeout if set.
	if s.cfg.StopTimeout > 0 {
		return now + s.cfg.stopBudget()
	}
	return 0
}
