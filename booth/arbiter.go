package booth

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// State is a ticket's state at one member, with Booth's names.
type State uint8

// Booth's ticket states. An arbitrator is only ever in Init or Follower:
// only sites stand for election.
const (
	StateInit State = iota
	StateFollower
	StateCandidate
	StateLeader
)

func (s State) String() string {
	switch s {
	case StateFollower:
		return "Fllw"
	case StateCandidate:
		return "Cndi"
	case StateLeader:
		return "Lead"
	}
	return "Init"
}

// Engine is Booth's ticket logic at one member (raft.c, ticket.c and
// manual.c of ClusterLabs Booth, read and re-implemented). At an
// arbitrator it votes, follows the leader's lease from its heartbeats and
// updates, answers status queries and reports what it knows; at a site
// it also stands for election, leads, renews and resends, and says what
// the site's CIB must hold and when its handler runs (site*.go). It is a
// pure state machine: the caller passes the time (a monotonic reading),
// sends what it returns and carries out its Effects. Its semantics are
// Booth's, weaker than geobooth's own ticket core (votes in memory only,
// truncated lease times); docs/booth.md says where.
type Engine struct {
	self    boothconf.Member
	members map[uint32]boothconf.Member
	// order is the members in booth.conf's order.
	order []boothconf.Member
	// unit is this member's lease time unit on the wire.
	unit    time.Duration
	tickets []*bTicket
	byName  map[string]*bTicket
	// mismatch: members whose updates show another time unit.
	mismatch map[uint32]bool
	siteEngine
}

// bTicket is one ticket's state, the fields of Booth's ticket_config
// that a member uses (those only a site uses in siteTicket).
type bTicket struct {
	cfg   boothconf.TicketConfig
	state State
	// leader is a member's id, 0 for none known, or NoLeader after a
	// revoke.
	leader uint32
	term   uint32
	// expires is when the lease ends, as this member reckons it (zero, the
	// start of its clock, until a lease was seen).
	expires    time.Duration
	votedFor   uint32
	inElection bool
	// lastValidTerm is the term of the last ticket this member saw
	// committed (Booth's last_valid_tk); messages of an older term are
	// dropped (none is older than the zero of a member that saw none).
	lastValidTerm uint32
	// granted: for a manual ticket, the members seen leading it and not
	// known to have given it up (Booth's sites_where_granted): more than
	// one after a grant -F elsewhere.
	granted map[uint32]bool
	siteTicket
}

// setLeader is Booth's set_leader: it also keeps a manual ticket's
// granted set.
func (t *bTicket) setLeader(who uint32) {
	if who == 0 && t.leader != 0 {
		t.markGranted(t.leader, false)
	}
	t.leader = who
	if who != 0 {
		t.markGranted(who, true)
	}
}

func (t *bTicket) markGranted(who uint32, on bool) {
	if t.cfg.Manual && who != NoLeader {
		t.granted[who] = on
	}
}

// Send is a message for one member.
type Send struct {
	To  uint32
	Msg Message
}

// NewArbiter sets up the arbitrator self of cfg.
func NewArbiter(cfg *boothconf.Config, self netip.Addr) (*Engine, error) {
	e, err := NewEngine(cfg, self, nil)
	if err == nil && e.site {
		return nil, fmt.Errorf("booth: %s is a site in %s, not an arbitrator", self, cfg.Path)
	}
	return e, err
}

// NewEngine sets up member self of cfg, a site or an arbitrator as cfg
// says. rand gives a random duration in [0, d) for the delay Booth adds
// to an election (nil: a fixed half of d, for tests that want none).
func NewEngine(cfg *boothconf.Config, self netip.Addr, rand func(d time.Duration) time.Duration) (*Engine, error) {
	a := &Engine{members: map[uint32]boothconf.Member{}, byName: map[string]*bTicket{}, unit: time.Second, mismatch: map[uint32]bool{}}
	if cfg.Millis {
		a.unit = time.Millisecond
	}
	found := false
	a.order = cfg.Members
	for _, m := range cfg.Members {
		a.members[m.ID] = m
		if m.Address == self.Unmap() {
			a.self, found = m, true
		}
	}
	if !found {
		return nil, fmt.Errorf("booth: %s is not a member of %s", self, cfg.Path)
	}
	a.site, a.rand, a.cfgName = !a.self.Arbitrator, rand, cfg.Name
	if a.rand == nil {
		a.rand = func(d time.Duration) time.Duration { return d / 2 }
	}
	for _, tc := range cfg.Tickets {
		t := &bTicket{cfg: tc, granted: map[uint32]bool{}}
		t.votes, t.acks, t.attrs = map[uint32]uint32{}, map[uint32]bool{}, map[string]geoAttr{}
		a.tickets = append(a.tickets, t)
		a.byName[tc.Name] = t
	}
	return a, nil
}

// UnitMismatches are the members whose lease updates show a time unit
// other than this member's (a booth.conf that differs in whether some
// time is not whole seconds).
func (a *Engine) UnitMismatches() []boothconf.Member {
	var out []boothconf.Member
	for _, m := range a.order {
		if a.mismatch[m.ID] {
			out = append(out, m)
		}
	}
	return out
}

// Start is what a starting member sends at now: a status query for every
// ticket to every other member, whose answers tell it the current leases.
func (a *Engine) Start(now time.Duration) []Send {
	if a.site {
		return a.startSite(now)
	}
	var out []Send
	for _, t := range a.tickets {
		for _, m := range a.order {
			if m.ID != a.self.ID {
				out = append(out, Send{To: m.ID, Msg: a.message(t, 0, CmdStatus, 0, 0)})
			}
		}
	}
	return out
}

// message is Booth's init_ticket_msg: the ticket as this member sees it.
func (a *Engine) message(t *bTicket, now time.Duration, cmd, request, result Code) Message {
	m := Message{Header: Header{From: a.self.ID, Cmd: cmd, Request: request, Result: result}, HasTicket: true}
	if t == nil {
		return m
	}
	leader := t.leader
	if !t.owned() {
		leader = t.votedFor
		if leader == 0 {
			leader = NoLeader
		}
	}
	m.Ticket = Ticket{Name: t.cfg.Name, Leader: leader, Term: t.term, ValidFor: uint32(t.left(now) / a.unit)}
	return m
}

func (t *bTicket) owned() bool { return t.leader != 0 && t.leader != NoLeader }

// left is the lease's remaining time, zero when none.
func (t *bTicket) left(now time.Duration) time.Duration {
	if t.expires <= now {
		return 0
	}
	return t.expires - now
}

func (t *bTicket) setExpiry(now, d time.Duration) { t.expires = now + d }

// disown forgets the leader and ends the lease now.
func (t *bTicket) disown(now time.Duration) {
	t.setLeader(0)
	t.expires = now
}

// reset is Booth's reset_ticket, as far as an arbitrator keeps state.
func (t *bTicket) reset(now time.Duration) {
	t.disown(now)
	t.state = StateInit
	t.votedFor = 0
}

func (t *bTicket) saveCommitted() { t.lastValidTerm = t.term }

// Errors of Receive: the message is dropped (and counted as invalid, as
// Booth does).
var (
	ErrUnknownSender = errors.New("booth: message from a site id not in the configuration")
	ErrUnknownTicket = errors.New("booth: message about a ticket not in the configuration")
	ErrUnknownLeader = errors.New("booth: message naming a leader not in the configuration")
	ErrNoTicket      = errors.New("booth: peer message without a ticket")
)

// Receive handles a peer's message (already authenticated) at time now
// and returns the answers.
func (a *Engine) Receive(now time.Duration, m Message) ([]Send, error) {
	if _, ok := a.members[m.From]; !ok || m.From == a.self.ID {
		return nil, fmt.Errorf("%w: %#x", ErrUnknownSender, m.From)
	}
	if !m.HasTicket {
		return nil, ErrNoTicket
	}
	t := a.byName[m.Ticket.Name]
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTicket, m.Ticket.Name)
	}
	if _, ok := a.members[m.Ticket.Leader]; !ok && m.Ticket.Leader != NoLeader {
		return nil, fmt.Errorf("%w: %#x", ErrUnknownLeader, m.Ticket.Leader)
	}
	if a.site {
		return a.siteReceive(t, now, m), nil
	}
	// Booth drops every message but a status query whose term is older
	// than the last committed one it knows.
	if m.Cmd != CmdStatus && t.lastValidTerm > m.Ticket.Term {
		return nil, nil
	}
	var out *Send
	switch m.Cmd {
	case CmdRequestVote:
		out = a.answerVote(t, now, m)
	case CmdHeartbeat:
		out = a.answerHeartbeat(t, now, m)
	case CmdUpdate:
		out = a.answerUpdate(t, now, m)
	case CmdRevoke:
		out = a.answerRevoke(t, now, m)
	case CmdVoteFor:
		a.stepDown(t, now, m)
	case CmdMyIndex:
		out = a.answerMyIndex(t, now, m)
	case CmdStatus:
		if !t.inElection {
			out = a.reply(t, now, CmdMyIndex, m)
		}
	}
	// Ack., RJC! and unknown opcodes concern candidates and leaders only.
	if out == nil {
		return nil, nil
	}
	return []Send{*out}, nil
}

func (a *Engine) reply(t *bTicket, now time.Duration, cmd Code, in Message) *Send {
	return &Send{To: in.From, Msg: a.message(t, now, cmd, in.Cmd, 0)}
}

func (a *Engine) reject(t *bTicket, now time.Duration, code Code, in Message) *Send {
	return &Send{To: in.From, Msg: a.message(t, now, CmdReject, in.Cmd, code)}
}

// seemsOK is Booth's ticket_seems_ok for a follower: a lease with at
// least a third of its length to run.
func (t *bTicket) seemsOK(now time.Duration) bool {
	left := t.left(now)
	return left > 0 && t.state == StateFollower && left >= t.cfg.Expire/3
}

// answerVote is Booth's vote (answer_REQ_VOTE): refuse a "ticket lost"
// election while the lease looks fine here, refuse anyone but the
// leader while the lease runs (unless it steps down), refuse an older
// term, else vote once per term.
func (a *Engine) answerVote(t *bTicket, now time.Duration, m Message) *Send {
	if m.Reason == ReasonLost {
		if t.state == StateInit && t.leader == NoLeader {
			return a.reject(t, now, ResultOutdated, m)
		}
		if t.seemsOK(now) {
			return a.reject(t, now, ResultValid, m)
		}
	}
	valid := t.left(now) > 0
	if m.From != t.leader && valid && m.Reason != ReasonStepDown {
		return a.reject(t, now, ResultValid, m)
	}
	if m.Ticket.Term < t.term {
		return a.reject(t, now, ResultOlder, m)
	}
	t.inElection = true
	if !valid {
		t.setLeader(0)
	}
	if m.Ticket.Term > t.term {
		t.state, t.term = StateFollower, m.Ticket.Term
		t.votedFor = m.From
	} else if t.votedFor == 0 {
		t.votedFor = m.From
	}
	s := a.reply(t, now, CmdVoteFor, m)
	s.Msg.Ticket.Leader = t.votedFor
	return s
}

// follow is Booth's become_follower: the lease is the sender's remaining
// time from now. geoboothd adds two rules, which only ever make it keep a
// lease longer (and so refuse elections longer) than boothd would: a
// lease longer than expire is capped at expire (no leader holds longer;
// a sender whose time unit differs is read as holding for expire), and a
// lease it learned is not shortened by a later message of the same
// leader and term (a heartbeat carries the remaining time before the
// renewal, truncated).
//
// A third rule catches members whose time unit differs from this one's:
// an update carries the lease just renewed, about expire. One that only
// makes sense in the other unit (otherUnit) is taken as a full lease and
// the sender is reported (UnitMismatches).
func (a *Engine) follow(t *bTicket, now time.Duration, m Message) {
	d := time.Duration(m.Ticket.ValidFor) * a.unit
	if m.Cmd == CmdUpdate && a.otherUnit(t, m.Ticket.ValidFor) {
		a.mismatch[m.From] = true
		d = t.cfg.Expire
	}
	d = min(t.cfg.Expire, d)
	same := t.leader == m.Ticket.Leader && t.term == m.Ticket.Term
	if !same || t.left(now) < d {
		t.setExpiry(now, d)
	}
	t.term = m.Ticket.Term
	t.state = StateFollower
	t.inElection = false
	t.setLeader(m.Ticket.Leader)
}

// otherUnit reports whether an update's lease v only makes sense in the
// other time unit: counting seconds, milliseconds read as seconds are
// over twice expire; counting milliseconds, seconds read as milliseconds
// are under a tenth of expire while they would fit as seconds.
func (a *Engine) otherUnit(t *bTicket, v uint32) bool {
	if a.unit == time.Second {
		return time.Duration(v)*time.Second > 2*t.cfg.Expire
	}
	return time.Duration(v)*time.Millisecond < t.cfg.Expire/10 && time.Duration(v)*time.Second <= 2*t.cfg.Expire
}

// answerHeartbeat follows a leader's heartbeat and acknowledges it, unless
// another leader of an older term claims a ticket owned here.
func (a *Engine) answerHeartbeat(t *bTicket, now time.Duration, m Message) *Send {
	if m.Ticket.Term < t.term && m.From != t.leader && t.owned() {
		return a.reject(t, now, ResultOlder, m)
	}
	a.follow(t, now, m)
	return a.reply(t, now, CmdAck, m)
}

// answerUpdate follows a lease update from the leader (or anyone while no
// one owns the ticket here) and acknowledges it.
func (a *Engine) answerUpdate(t *bTicket, now time.Duration, m Message) *Send {
	if t.owned() && t.leader != m.Ticket.Leader {
		if t.seemsOK(now) {
			return a.reject(t, now, ResultValid, m)
		}
		return nil
	}
	if t.owned() && m.From != t.leader {
		return a.reject(t, now, ResultOlder, m)
	}
	a.follow(t, now, m)
	return a.reply(t, now, CmdAck, m)
}

// answerRevoke accepts a revoke from the leader (or repeats the ack of
// one already done). A manual ticket can have two leaders (grant -F): the
// revoke of one this member does not follow is acknowledged and changes
// nothing here, as in Booth.
func (a *Engine) answerRevoke(t *bTicket, now time.Duration, m Message) *Send {
	switch {
	case t.state == StateInit && t.leader == NoLeader:
	case t.leader != m.From && t.cfg.Manual:
		t.markGranted(m.From, false)
	case t.leader != m.From || t.state != StateFollower:
		return nil
	default:
		t.saveCommitted()
		t.reset(now)
		t.setLeader(NoLeader)
	}
	return a.reply(t, now, CmdAck, m)
}

// stepDown handles a vote for nobody from the leader: it gives the ticket
// away (after a failed before-acquire handler). Other votes are for
// candidates.
func (a *Engine) stepDown(t *bTicket, now time.Duration, m Message) {
	if m.Ticket.Leader != NoLeader || m.From != t.leader || t.state != StateFollower {
		return
	}
	t.saveCommitted()
	t.reset(now)
	t.state = StateFollower
}

// answerMyIndex takes a member's status answer: a newer or still valid
// ticket is adopted (its lease capped at expire); an older one gets this
// member's status back.
func (a *Engine) answerMyIndex(t *bTicket, now time.Duration, m Message) *Send {
	expired := m.Ticket.ValidFor == 0
	newer := int64(t.term) - int64(m.Ticket.Term)
	var out *Send
	if newer > 0 {
		out = a.reply(t, now, CmdMyIndex, m)
	}
	if newer >= 0 && expired {
		return out
	}
	t.setExpiry(now, min(t.cfg.Expire, time.Duration(m.Ticket.ValidFor)*a.unit))
	t.term = max(t.term, m.Ticket.Term)
	t.setLeader(m.Ticket.Leader)
	if t.owned() {
		t.state = StateFollower
	} else {
		t.state = StateInit
	}
	t.saveCommitted()
	return out
}

// Tick runs the time-driven part at now and returns what to send. At an
// arbitrator, a lease that ran out loses its leader (Booth's
// ticket_lost) and an election that came to nothing is over; a site also
// elects, renews and resends (siteTick).
func (a *Engine) Tick(now time.Duration) []Send {
	if a.site {
		return a.siteTick(now)
	}
	for _, t := range a.tickets {
		switch {
		case !t.cfg.Manual && t.owned() && t.expires <= now:
			t.saveCommitted()
			t.reset(now)
			t.state = StateFollower
		case t.state == StateFollower && t.leader == 0 && !t.cfg.Manual:
			if t.votedFor == 0 || !t.inElection {
				t.disown(now)
			} else {
				t.inElection = false
			}
		}
	}
	return nil
}

// NextTick is when Tick has something to do next: the earliest lease end,
// or one timeout from now.
func (a *Engine) NextTick(now time.Duration) time.Duration {
	if a.site {
		return a.siteNextTick(now)
	}
	next := now + time.Hour
	for _, t := range a.tickets {
		next = min(next, now+t.cfg.Timeout)
		if t.owned() && t.expires > now {
			next = min(next, t.expires)
		}
	}
	return next
}
