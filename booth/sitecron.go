package booth

import "time"

// nearFuture is how soon a site looks again at a ticket with something
// to do (Booth's 10 ms).
const nearFuture = 10 * time.Millisecond

// startSite is Booth's setup_ticket at a site: each ticket as the CIB had
// it (LoadCIB), then a status query to every member.
func (a *Engine) startSite(now time.Duration) []Send {
	a.started = now
	for _, t := range a.tickets {
		t.nextCron = now
		if t.isGranted || t.leader != 0 {
			a.updateState(t, now, 0)
		}
		t.updateCIB, t.startPostpone = true, true
		a.broadcast(t, now, CmdStatus, CmdMyIndex, 0, 0)
	}
	return a.flush()
}

// siteTick is Booth's process_tickets: each ticket whose time came (or
// whose handler ended) is looked at.
func (a *Engine) siteTick(now time.Duration) []Send {
	for _, t := range a.tickets {
		if t.handler != handlerExited && now < t.nextCron {
			continue
		}
		before := t.nextCron
		a.cron(t, now)
		if t.nextCron == before {
			a.wakeup(t, now)
		}
	}
	return a.flush()
}

// siteNextTick is the earliest time a ticket is due: now for one whose
// handler ended.
func (a *Engine) siteNextTick(now time.Duration) time.Duration {
	next := now + time.Hour
	for _, t := range a.tickets {
		if t.handler == handlerExited {
			return now
		}
		next = min(next, max(t.nextCron, now))
	}
	return next
}

// cron is Booth's ticket_cron.
func (a *Engine) cron(t *bTicket, now time.Duration) {
	if t.startPostpone && now-a.started < t.cfg.Timeout {
		a.activateTimeout(t, now)
		return
	}
	if t.acksExpected == CmdMyIndex {
		t.noResends()
	}
	switch {
	case t.next != nextNone:
		a.processNext(t, now)
	case !t.cfg.Manual && t.owned() && t.expires != 0 && now >= t.expires:
		a.ticketLost(t, now)
	default:
		a.nextAction(t, now)
	}
	t.next = nextNone
	if !t.inElection && t.updateCIB {
		a.write(t, now)
	}
}

// processNext is process_next_state: what start-up or a delayed revoke
// left to do.
func (a *Engine) processNext(t *bTicket, now time.Duration) {
	switch t.next {
	case nextLeader:
		if t.handler == handlerExited {
			if t.state == StateLeader {
				break
			}
			if rv := a.acquire(t, now, ReasonAdmin); rv != 0 {
				t.outcome = rv
				a.notify(t, now)
			}
		} else {
			a.acquire(t, now, ReasonReacquire)
		}
	case nextInit:
		t.noResends()
		a.startRevoke(t, now)
		t.outcome = 0
		a.notify(t, now)
	case nextFollower:
		return
	}
	t.startPostpone = false
}

// ticketLost is Booth's ticket_lost: the lease ran out; a site revokes
// it in its CIB and elects.
func (a *Engine) ticketLost(t *bTicket, now time.Duration) {
	reason := ReasonLost
	if t.leader == a.self.ID {
		switch {
		case t.handler == handlerRunning:
			reason = ReasonLocalFail
		case t.electionReason != 0:
			reason = t.electionReason
		default:
			reason = ReasonReacquire
		}
	}
	t.lostLeader = t.leader
	t.commit()
	if t.leader != 0 {
		t.markGranted(t.leader, false)
	}
	a.resetSite(t, now)
	t.state = StateFollower
	a.write(t, now)
	a.scheduleElection(t, now, reason)
}

// scheduleElection: an election after a short random delay.
func (a *Engine) scheduleElection(t *bTicket, now time.Duration, reason Code) {
	t.electionReason = reason
	t.nextCron = now
	a.randomDelay(t)
}

func (a *Engine) randomDelay(t *bTicket) {
	t.nextCron += a.rand(min(time.Second, t.cfg.Timeout))
}

// nextAction is Booth's next_action: resends, elections, renewals.
func (a *Engine) nextAction(t *bTicket, now time.Duration) {
	switch t.state {
	case StateInit:
		a.acquireOrResend(t, now)
	case StateFollower:
		switch {
		case t.cfg.Manual:
			a.acquireOrResend(t, now)
		case t.leader != 0:
		case t.votedFor == 0 || !t.inElection:
			t.disownSite(now)
			if !a.newElection(t, now, 0, 1, ReasonAgain) {
				a.activateTimeout(t, now)
			}
		default:
			t.inElection = false
			a.activateTimeout(t, now)
		}
	case StateCandidate:
		a.electionsEnd(t, now)
	case StateLeader:
		if t.acksExpected != 0 {
			a.handleResends(t, now)
			if a.majority(len(t.acks)) {
				a.leaderUpdate(t, now)
			}
		} else if a.runHandler(t, now, true) == 0 {
			a.broadcast(t, now, CmdHeartbeat, CmdAck, 0, 0)
			t.updated = 0
		}
	}
}

// acquireOrResend: a grant whose handler ended goes on; else resends.
func (a *Engine) acquireOrResend(t *bTicket, now time.Duration) {
	if t.handler == handlerExited {
		if rv := a.acquire(t, now, ReasonAdmin); rv != 0 {
			t.outcome = rv
			a.notify(t, now)
		}
	} else if t.acksExpected != 0 {
		a.handleResends(t, now)
	}
}

// newElection is Booth's new_election. It returns true when an election
// was already under way (and nothing was done).
func (a *Engine) newElection(t *bTicket, now time.Duration, preference uint32, updateTerm int, reason Code) bool {
	if !a.site {
		return false
	}
	r := reason
	if r == ReasonAgain {
		r = t.electionReason
	}
	if (r == ReasonLost || r == ReasonStepDown) && a.prereqFails(t, grantAuto) {
		return false
	}
	if now < t.electionEnd {
		return true
	}
	if updateTerm > 1 || (updateTerm > 0 && t.committed && t.lastValidTerm >= t.term) {
		if t.state != StateCandidate {
			t.commit()
		}
		t.term++
	}
	t.electionEnd, t.inElection = now+t.cfg.Timeout, true
	clear(t.votes)
	if preference == 0 {
		preference = a.self.ID
	}
	a.recordVote(t, a.self.ID, preference)
	t.votedFor, t.state = preference, StateCandidate
	if reason != ReasonAgain {
		t.electionReason = reason
	}
	a.broadcast(t, now, CmdRequestVote, CmdVoteFor, 0, t.electionReason)
	a.randomDelay(t)
	return false
}

// electionsEnd counts the votes: a majority for this site wins; none for
// anyone starts another election (a tie in a higher term).
func (a *Engine) electionsEnd(t *bTicket, now time.Duration) {
	t.inElection = false
	switch w := a.winner(t); {
	case w == a.self.ID:
		a.wonElections(t, now)
	case w != 0:
	default:
		t.outcome = ResultMore
		a.notify(t, now)
		term := 0
		if a.tie(t) {
			term = 2
		}
		if !a.newElection(t, now, 0, term, ReasonAgain) {
			a.activateTimeout(t, now)
		}
	}
}

// winner is majority_votes: the member more than half of all members
// voted for (0: none).
func (a *Engine) winner(t *bTicket) uint32 {
	count := map[uint32]int{}
	for _, m := range a.order {
		v, ok := t.votes[m.ID]
		if !ok || v == NoLeader {
			continue
		}
		count[v]++
		if a.majority(count[v]) {
			return v
		}
	}
	return 0
}

// tie: more than one member got the most votes.
func (a *Engine) tie(t *bTicket) bool {
	count := map[uint32]int{}
	best := 0
	for _, v := range t.votes {
		count[v]++
		best = max(best, count[v])
	}
	n := 0
	for _, c := range count {
		if c == best {
			n++
		}
	}
	return n > 1
}

// wonElections: this site leads, for a full lease from now.
func (a *Engine) wonElections(t *bTicket, now time.Duration) {
	t.setLeader(a.self.ID)
	t.state = StateLeader
	t.setExpiry(now, t.cfg.Expire)
	t.electionEnd, t.votedFor = 0, 0
	if a.allSitesReplied(t) {
		t.delayCommit = 0
	}
	t.commit()
	a.broadcast(t, now, CmdHeartbeat, CmdAck, 0, 0)
	t.updated = 0
}

// leaderUpdate is leader_update_ticket: the renewed lease goes out in an
// update, then into the CIB.
func (a *Engine) leaderUpdate(t *bTicket, now time.Duration) {
	if t.updated >= 2 {
		return
	}
	if !t.cfg.Manual && t.updated < 1 {
		t.updated, t.lastRenewal = 1, now
		t.setExpiry(now, t.cfg.Expire)
		a.broadcast(t, now, CmdUpdate, CmdAck, 0, 0)
	}
	if a.write(t, now) {
		t.updated, t.outcome = 2, 0
		a.notify(t, now)
	} else if t.outcome != ResultPending {
		t.outcome = ResultPending
		a.notify(t, now)
	}
}

// handleResends resends the last request to those that did not answer,
// up to retries times.
func (a *Engine) handleResends(t *bTicket, now time.Duration) {
	t.retry++
	if t.retry > t.cfg.Retries {
		t.noResends()
		a.wakeup(t, now)
		return
	}
	if len(t.acks) == 1 {
		// Nobody answered: the request again, to all.
		for _, m := range a.order {
			if m.ID != a.self.ID {
				a.sendTo(t, now, t.lastRequest, m.ID, 0)
			}
		}
	} else {
		for _, m := range a.order {
			if !t.acks[m.ID] {
				a.sendTo(t, now, t.lastRequest, m.ID, 0)
			}
		}
	}
	a.activateTimeout(t, now)
}

// wakeup is Booth's set_ticket_wakeup: when the ticket is looked at next.
func (a *Engine) wakeup(t *bTicket, now time.Duration) {
	if t.cfg.Manual {
		t.nextCron = now + time.Minute
		return
	}
	t.nextCron = now + time.Hour
	switch t.state {
	case StateLeader:
		next := t.lastRenewal + t.cfg.RenewalFreq
		if t.delayCommit != 0 && next > t.delayCommit {
			next = t.delayCommit
		}
		if t.lastRenewal == 0 || next <= now {
			next = now + nearFuture
		}
		t.nextCron = next
	case StateCandidate:
		t.nextCron = t.electionEnd
	default:
		if t.owned() {
			t.nextCron = t.expires + t.cfg.AcquireAfter
		}
	}
	if t.next != nextNone {
		if t.acksExpected == 0 {
			t.nextCron = now + nearFuture
		} else {
			a.activateTimeout(t, now)
		}
	}
}
