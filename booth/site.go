package booth

import (
	"time"
)

// siteEngine holds what only a site's Engine keeps.
type siteEngine struct {
	// site: this member stands for election (Booth's local->type == SITE).
	site bool
	// cfgName is booth.conf's name (the CIB's booth-cfg-name).
	cfgName string
	// rand gives a random duration in [0, d) (an election's delay).
	rand func(d time.Duration) time.Duration
	// started is when Start ran: a site waits a timeout for the others'
	// status before it acts on a ticket.
	started time.Duration
	// out and eff collect the messages and effects of one call.
	out []Send
	eff Effects
}

// next is Booth's next_state: what a site does at its next wake-up.
type next uint8

const (
	nextNone next = iota
	nextLeader
	nextFollower
	nextInit
)

// handlerState is Booth's progstate of the before-acquire handler.
type handlerState uint8

const (
	handlerIdle handlerState = iota
	handlerRunning
	handlerExited
	handlerIgnored
)

// siteTicket is what a site keeps of a ticket beyond an arbitrator.
type siteTicket struct {
	next next
	// isGranted: the local CIB had the ticket granted at start.
	isGranted bool
	// committed: lastValidTerm was saved (Booth's last_valid_tk is set).
	committed bool
	// votes: each member's vote in this site's election.
	votes map[uint32]uint32
	// electionEnd is when this site's election ends (zero: none under
	// way).
	electionEnd    time.Duration
	electionReason Code
	lostLeader     uint32
	// delayCommit: a grant is written to the CIB only after it (or once
	// every site answered), unless granted with -F (zero: no delay).
	delayCommit time.Duration
	// acksExpected is the reply awaited to lastRequest (0: none); acks
	// who sent it (this member counts); retry the resends so far.
	acksExpected Code
	acks         map[uint32]bool
	lastRequest  Code
	retry        int
	// nextCron is when the ticket is looked at next.
	nextCron time.Duration
	// updated is Booth's ticket_updated: 1 once the renewal's update went
	// out, 2 once the CIB has it.
	updated int
	// lastRenewal is when the lease was last renewed here (zero: never).
	lastRenewal time.Duration
	// outcome is what a waiting client is told (0: done).
	outcome Code
	waiting bool
	handler handlerState
	// handlerFailed: the exited handler's verdict.
	handlerFailed bool
	// guarded: the shell checks the site's data as a handler (Guarded).
	guarded       bool
	updateCIB     bool
	startPostpone bool
	// attrs are the geostore attributes.
	attrs map[string]geoAttr
}

// Effects are what a site must do besides sending messages, in order.
type Effects struct {
	// CIB writes, in order; the last one per ticket is what must hold.
	CIB []CIBWrite
	// RunHandler names tickets whose before-acquire handler must start
	// (HandlerDone reports its end); StopHandler those whose running
	// handler is no longer wanted.
	RunHandler, StopHandler []string
	// Notify are results for the clients waiting on a ticket.
	Notify []Notice
}

// CIBWrite is one of Booth's atomic ticket writes (crm_ticket -g or -r
// with owner, expires, term and booth-cfg-name).
type CIBWrite struct {
	Ticket  string
	Granted bool
	// Owner is the leader's site id as Booth writes it: -1 after a revoke
	// (NO_ONE), 0 when none is known.
	Owner int32
	// Expires is the lease's end on the engine's clock (the shell writes
	// it as wall-clock seconds).
	Expires time.Duration
	Term    uint32
	CfgName string
}

// Notice is a result for the clients that wait on a ticket's grant or
// revoke.
type Notice struct {
	Ticket string
	Msg    Message
}

// TakeEffects returns the effects gathered since the last call.
func (a *Engine) TakeEffects() Effects {
	e := a.eff
	a.eff = Effects{}
	return e
}

// send queues a message; flush returns what was queued.
func (a *Engine) send(s Send) { a.out = append(a.out, s) }

func (a *Engine) flush() []Send {
	out := a.out
	a.out = nil
	return out
}

// broadcast is Booth's ticket_broadcast: the ticket to every other
// member; with expect set, the replies are counted (and resent for).
func (a *Engine) broadcast(t *bTicket, now time.Duration, cmd, expect, result, reason Code) {
	for _, m := range a.order {
		if m.ID != a.self.ID {
			msg := a.message(t, now, cmd, 0, result)
			msg.Reason = reason
			a.send(Send{To: m.ID, Msg: msg})
		}
	}
	t.lastRequest = cmd
	if expect != 0 {
		t.retry, t.acksExpected = 0, expect
		clear(t.acks)
		t.acks[a.self.ID] = true
	}
	a.activateTimeout(t, now)
}

// sendTo is Booth's send_msg: the ticket to one member, answering req.
func (a *Engine) sendTo(t *bTicket, now time.Duration, cmd Code, to uint32, req Code) {
	a.send(Send{To: to, Msg: a.message(t, now, cmd, req, 0)})
}

func (a *Engine) activateTimeout(t *bTicket, now time.Duration) { t.nextCron = now + t.cfg.Timeout }

func (t *bTicket) noResends() { t.retry, t.acksExpected = 0, 0 }

// majority: more than half of all members.
func (a *Engine) majority(n int) bool { return 2*n > len(a.order) }

func (a *Engine) allReplied(t *bTicket) bool { return len(t.acks) == len(a.order) }

func (a *Engine) allSitesReplied(t *bTicket) bool {
	for _, m := range a.order {
		if !m.Arbitrator && !t.acks[m.ID] {
			return false
		}
	}
	return true
}

// saveCommitted for a site also records that a term was saved.
func (t *bTicket) commit() {
	t.saveCommitted()
	t.committed = true
}

// disownSite is Booth's disown_ticket at a site: no leader, not granted
// here, the lease over now.
func (t *bTicket) disownSite(now time.Duration) {
	t.disown(now)
	t.isGranted = false
}

// resetSite is Booth's reset_ticket: it also gives up a running handler
// and any resends.
func (a *Engine) resetSite(t *bTicket, now time.Duration) {
	a.ignoreHandler(t)
	t.disownSite(now)
	t.noResends()
	t.state, t.next, t.votedFor = StateInit, nextNone, 0
}

// write is Booth's ticket_write: the CIB gets the ticket granted when this
// site leads it, revoked otherwise. It returns false while the write must
// wait (the commit is delayed, or the lead is not yet established).
func (a *Engine) write(t *bTicket, now time.Duration) bool {
	if !a.site || a.dangerous(t, now) {
		return false
	}
	if t.leader == a.self.ID && t.state != StateLeader {
		return false
	}
	owner := int32(t.leader)
	if t.leader == NoLeader {
		owner = -1
	}
	a.eff.CIB = append(a.eff.CIB, CIBWrite{Ticket: t.cfg.Name, Granted: t.leader == a.self.ID, Owner: owner,
		Expires: t.expires, Term: t.term, CfgName: a.cfgName})
	t.updateCIB = false
	return true
}

// dangerous is Booth's ticket_dangerous: a delayed commit holds until its
// time or until every site answered.
func (a *Engine) dangerous(t *bTicket, now time.Duration) bool {
	if t.delayCommit == 0 {
		return false
	}
	if now >= t.delayCommit || a.allSitesReplied(t) {
		t.delayCommit = 0
		return false
	}
	return true
}

// notify tells the waiting clients the ticket's outcome.
func (a *Engine) notify(t *bTicket, now time.Duration) {
	if t.waiting {
		a.eff.Notify = append(a.eff.Notify, Notice{Ticket: t.cfg.Name, Msg: a.message(t, now, CmdResult, 0, t.outcome)})
	}
}

// newerTerm is Booth's newer_term: a higher term from another leader
// makes this site a follower of it.
func (a *Engine) newerTerm(t *bTicket, m Message, inElection bool) bool {
	if m.Ticket.Leader == a.self.ID || m.Ticket.Term <= t.term {
		return false
	}
	t.state = StateFollower
	if !inElection {
		t.setLeader(m.Ticket.Leader)
	}
	t.term = m.Ticket.Term
	return true
}

// becomeFollower is Booth's become_follower, with the arbitrator's
// lease rules (follow); a ticket the CIB had granted here is revoked
// there at once (a restart that finds another leader).
func (a *Engine) becomeFollower(t *bTicket, now time.Duration, m Message) {
	a.follow(t, now, m)
	t.delayCommit = 0
	if t.isGranted {
		t.disownSite(now)
		a.write(t, now)
	}
}

// seemsOKSite is ticket_seems_ok at a site: a leader's valid lease is
// fine, a candidate's is in flux.
func (t *bTicket) seemsOKSite(now time.Duration) bool {
	switch {
	case t.left(now) == 0, t.state == StateCandidate:
		return false
	case t.state == StateLeader:
		return true
	}
	return t.seemsOK(now)
}
