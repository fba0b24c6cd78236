package booth

import "time"

// siteReceive is Booth's ticket_recv and raft_answer at a site: the reply
// is counted, then the message handled.
func (a *Engine) siteReceive(t *bTicket, now time.Duration, m Message) []Send {
	a.countReply(t, now, m)
	if m.Cmd != CmdStatus && t.committed && t.lastValidTerm > m.Ticket.Term {
		return a.flush()
	}
	switch m.Cmd {
	case CmdRequestVote:
		a.siteVote(t, now, m)
	case CmdVoteFor:
		a.voteFor(t, now, m)
	case CmdAck:
		if t.leader == a.self.ID && t.state == StateLeader {
			a.ack(t, now, m)
		}
	case CmdHeartbeat:
		if (t.leader != a.self.ID || t.left(now) == 0) && t.state != StateLeader {
			a.siteHeartbeat(t, now, m)
		} else {
			a.unexpected(t, now, m)
		}
	case CmdUpdate:
		if ((t.leader != a.self.ID && t.leader == m.Ticket.Leader) || !t.owned()) && t.state != StateLeader {
			a.siteUpdate(t, now, m)
		} else {
			a.unexpected(t, now, m)
		}
	case CmdReject:
		a.rejected(t, now, m)
	case CmdRevoke:
		a.siteRevoke(t, now, m)
	case CmdMyIndex:
		a.siteMyIndex(t, now, m)
	case CmdStatus:
		if !t.inElection {
			a.sendTo(t, now, CmdMyIndex, m.From, m.Cmd)
		}
	}
	return a.flush()
}

// countReply is Booth's update_acks: a reply to the last request counts.
func (a *Engine) countReply(t *bTicket, now time.Duration, m Message) {
	if m.Request != t.lastRequest || (t.acksExpected != m.Cmd && t.acksExpected != CmdReject) {
		return
	}
	t.acks[m.From] = true
	if a.allReplied(t) || (m.Cmd == CmdRequestVote && t.lastRequest == CmdVoteFor) {
		t.noResends()
		t.startPostpone = false
		a.wakeup(t, now)
	}
}

// unexpected: a heartbeat or update to a leader; a valid lease here is
// defended.
func (a *Engine) unexpected(t *bTicket, now time.Duration, m Message) {
	if m.Cmd == CmdHeartbeat {
		t.markGranted(m.From, true)
	}
	if t.seemsOKSite(now) {
		a.send(*a.reject(t, now, ResultValid, m))
	}
}

// siteVote is answer_REQ_VOTE at a site.
func (a *Engine) siteVote(t *bTicket, now time.Duration, m Message) {
	if m.Reason == ReasonLost {
		if t.state == StateInit && t.leader == NoLeader {
			a.send(*a.reject(t, now, ResultOutdated, m))
			return
		}
		if t.seemsOKSite(now) {
			a.send(*a.reject(t, now, ResultValid, m))
			return
		}
	}
	valid := t.left(now) > 0
	if m.From != t.leader && valid && m.Reason != ReasonStepDown {
		a.send(*a.reject(t, now, ResultValid, m))
		return
	}
	if m.Ticket.Term < t.term {
		a.send(*a.reject(t, now, ResultOlder, m))
		return
	}
	t.inElection = true
	if !valid {
		t.setLeader(0)
	}
	if a.newerTerm(t, m, true) {
		clear(t.votes)
		t.votedFor = m.From
		t.votes[m.From] = m.Ticket.Leader
	} else if t.votedFor == 0 {
		t.votedFor = m.From
		a.recordVote(t, m.From, m.Ticket.Leader)
	}
	s := a.reply(t, now, CmdVoteFor, m)
	s.Msg.Ticket.Leader = t.votedFor
	a.send(*s)
}

// recordVote keeps a member's first vote of the election.
func (a *Engine) recordVote(t *bTicket, who, vote uint32) {
	if _, ok := t.votes[who]; !ok {
		t.votes[who] = vote
	}
}

// voteFor is process_VOTE_FOR: a vote for this candidate, or the leader
// stepping down.
func (a *Engine) voteFor(t *bTicket, now time.Duration, m Message) {
	if m.Ticket.Leader == NoLeader {
		if m.From == t.leader && (t.state == StateFollower || t.state == StateCandidate) {
			t.commit()
			a.resetSite(t, now)
			t.state = StateFollower
			a.write(t, now)
			a.scheduleElection(t, now, ReasonStepDown)
		}
		return
	}
	if t.state != StateCandidate {
		return
	}
	if m.Ticket.Term < t.term {
		a.send(*a.reject(t, now, ResultOlder, m))
		return
	}
	if a.newerTerm(t, m, false) {
		clear(t.votes)
	}
	a.recordVote(t, m.From, m.Ticket.Leader)
	if t.acksExpected == 0 {
		a.electionsEnd(t, now)
	}
}

// ack is process_ACK at the leader: once a majority acknowledged the
// heartbeat, the lease is renewed.
func (a *Engine) ack(t *bTicket, now time.Duration, m Message) {
	if a.newerTerm(t, m, false) || m.Ticket.Term < t.term || t.next == nextInit || t.state == StateInit {
		return
	}
	if (m.Request == CmdUpdate || m.Request == CmdHeartbeat) && m.Ticket.Term == t.term &&
		m.Ticket.Leader == t.leader && a.majority(len(t.acks)) {
		a.leaderUpdate(t, now)
	}
}

// siteHeartbeat is answer_HEARTBEAT at a site.
func (a *Engine) siteHeartbeat(t *bTicket, now time.Duration, m Message) {
	if m.Ticket.Term < t.term && m.From != t.leader && t.owned() {
		a.send(*a.reject(t, now, ResultOlder, m))
		return
	}
	a.newerTerm(t, m, false)
	a.becomeFollower(t, now, m)
	t.setLeader(m.Ticket.Leader)
	a.send(*a.reply(t, now, CmdAck, m))
}

// siteUpdate is process_UPDATE at a site.
func (a *Engine) siteUpdate(t *bTicket, now time.Duration, m Message) {
	if t.owned() && m.From != t.leader {
		t.markGranted(m.From, true)
		a.send(*a.reject(t, now, ResultOlder, m))
		return
	}
	a.becomeFollower(t, now, m)
	t.setLeader(m.Ticket.Leader)
	a.write(t, now)
	a.wakeup(t, now)
	a.send(*a.reply(t, now, CmdAck, m))
}

// siteRevoke is process_REVOKE at a site.
func (a *Engine) siteRevoke(t *bTicket, now time.Duration, m Message) {
	switch {
	case t.state == StateInit && t.leader == NoLeader:
	case t.leader != m.From && t.cfg.Manual:
		t.markGranted(m.From, false)
		if t.state == StateLeader {
			a.broadcast(t, now, CmdHeartbeat, CmdAck, 0, 0)
		}
	case t.leader != m.From || t.state != StateFollower:
		return
	default:
		t.commit()
		a.revokeHere(t, now)
		a.write(t, now)
	}
	a.send(*a.reply(t, now, CmdAck, m))
}

// revokeHere is reset_ticket_and_set_no_leader.
func (a *Engine) revokeHere(t *bTicket, now time.Duration) {
	if t.leader != 0 {
		t.markGranted(t.leader, false)
	}
	a.resetSite(t, now)
	t.leader = NoLeader
}

// rejected is process_REJECTED: a candidate learns that the ticket is
// held, or that its own view is outdated.
func (a *Engine) rejected(t *bTicket, now time.Duration, m Message) {
	if t.state != StateCandidate || m.Ticket.Leader == a.self.ID {
		return
	}
	switch m.Result {
	case ResultOlder, ResultValid:
		t.setLeader(m.Ticket.Leader)
		a.becomeFollower(t, now, m)
	case ResultOutdated:
		t.setLeader(m.Ticket.Leader)
		if t.owned() {
			a.becomeFollower(t, now, m)
			return
		}
		t.setExpiry(now, min(t.cfg.Expire, time.Duration(m.Ticket.ValidFor)*a.unit))
		a.termFromMsg(t, m)
		t.state = StateInit
	}
}

// termFromMsg is update_term_from_msg: a candidate takes the sender's
// term, others the higher one.
func (a *Engine) termFromMsg(t *bTicket, m Message) {
	if t.state == StateCandidate {
		t.term = m.Ticket.Term
	} else {
		t.term = max(t.term, m.Ticket.Term)
	}
}

// siteMyIndex is process_MY_INDEX at a site.
func (a *Engine) siteMyIndex(t *bTicket, now time.Duration, m Message) {
	expired := m.Ticket.ValidFor == 0
	last := t.term
	if t.state == StateCandidate && t.committed {
		last = t.lastValidTerm
	}
	newer := int64(last) - int64(m.Ticket.Term)
	if newer > 0 {
		a.sendTo(t, now, CmdMyIndex, m.From, m.Cmd)
		if t.state == StateLeader {
			a.sendTo(t, now, CmdUpdate, m.From, m.Cmd)
			return
		}
	}
	if newer >= 0 && expired {
		return
	}
	switch {
	case t.state == StateLeader:
		if !expired && newer < 0 {
			// Two leaders: take the newer term and re-acquire.
			a.termFromMsg(t, m)
			t.next = nextLeader
		}
		return
	case t.state == StateCandidate && m.Ticket.Leader == a.self.ID:
		return
	}
	t.setExpiry(now, min(t.cfg.Expire, time.Duration(m.Ticket.ValidFor)*a.unit))
	a.termFromMsg(t, m)
	t.setLeader(m.Ticket.Leader)
	a.updateState(t, now, m.From)
	t.commit()
	a.wakeup(t, now)
}

// updateState is update_ticket_state: what a site makes of a ticket it
// learned about (from a member, or from the CIB at start: from 0).
func (a *Engine) updateState(t *bTicket, now time.Duration, from uint32) {
	if t.leader == a.self.ID || t.isGranted {
		if from != 0 && from == t.leader && t.left(now) > 0 {
			// Granted here at start, live at the sender: revoked here. Booth
			// disowns the ticket, leaving a follower without a leader that
			// looks at it again in an hour; should the leader die before
			// its next heartbeat, no site would take the ticket over. Here
			// the sender stays the leader, with the lease it gave.
			t.isGranted = false
			a.write(t, now)
			t.state, t.next = StateFollower, nextFollower
			return
		}
		if t.state == StateCandidate {
			t.state = StateFollower
		}
		t.next = nextLeader
		return
	}
	if !t.owned() {
		t.state = StateInit
		return
	}
	t.state, t.next = StateFollower, nextFollower
}
