package booth

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	east = netip.MustParseAddr("192.0.2.1")
	west = netip.MustParseAddr("192.0.2.2")
	arb  = netip.MustParseAddr("192.0.2.3")
)

// testConf is the tests' booth.conf: the sites east and west, the
// arbitrator, and ticket web with the given settings lines.
func testConf(t testing.TB, settings string) *boothconf.Config {
	t.Helper()
	c, err := boothconf.ParseConfig(strings.NewReader("site = 192.0.2.1\nsite = 192.0.2.2\narbitrator = 192.0.2.3\nticket = web\n"+settings), "booth.conf")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// timed are the ticket settings of the engine tests (expire 30 s,
// timeout 2 s, retries 3).
const timed = " expire = 30\n timeout = 2\n retries = 3\n"

// quietServer is member self of c, not listening, logging nowhere.
func quietServer(t testing.TB, c *boothconf.Config, self netip.Addr) *Server {
	t.Helper()
	s, err := NewServer(c, self, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testArbiter(t *testing.T, extra string) *Engine {
	t.Helper()
	a, err := NewArbiter(testConf(t, timed+extra), arb)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func peerMsg(from netip.Addr, cmd Code, leader uint32, term, valid uint32, reason Code) Message {
	return Message{Header: Header{From: boothconf.SiteID(from), Cmd: cmd, Reason: reason}, HasTicket: true,
		Ticket: Ticket{Name: "web", Leader: leader, Term: term, ValidFor: valid}}
}

// askVote is from's request for a vote for itself in term, for reason.
func askVote(from netip.Addr, term uint32, reason Code) Message {
	return peerMsg(from, CmdRequestVote, boothconf.SiteID(from), term, 0, reason)
}

// one sends m at now and returns the single answer (failing on any other
// count).
func one(t *testing.T, a *Engine, now time.Duration, m Message) Message {
	t.Helper()
	out, err := a.Receive(now, m)
	if err != nil || len(out) != 1 {
		t.Fatalf("%v: answers %v, error %v", m.Cmd, out, err)
	}
	if out[0].To != m.From {
		t.Fatalf("answer to %#x, want the sender %#x", out[0].To, m.From)
	}
	return out[0].Msg
}

func none(t *testing.T, a *Engine, now time.Duration, m Message) {
	t.Helper()
	if out, err := a.Receive(now, m); err != nil || len(out) != 0 {
		t.Fatalf("%v: answers %v, error %v; want none", m.Cmd, out, err)
	}
}

// grant makes east the leader at term 1 with 30 s at now.
func grant(t *testing.T, a *Engine, now time.Duration) {
	t.Helper()
	v := one(t, a, now, askVote(east, 1, ReasonAdmin))
	if v.Cmd != CmdVoteFor || v.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("vote = %+v", v)
	}
	ack := one(t, a, now, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 30, 0))
	if ack.Cmd != CmdAck || ack.Request != CmdHeartbeat || ack.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("heartbeat answer = %+v", ack)
	}
}

func TestArbitratorVotesOncePerTerm(t *testing.T) {
	a := testArbiter(t, "")
	v := one(t, a, 0, askVote(east, 1, ReasonAdmin))
	if v.Cmd != CmdVoteFor || v.Request != CmdRequestVote || v.Ticket.Leader != boothconf.SiteID(east) || v.Result != 0 {
		t.Fatalf("first vote = %+v", v)
	}
	// West asks in the same term: the vote stays east's.
	v = one(t, a, time.Second, askVote(west, 1, ReasonAdmin))
	if v.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("second vote in term 1 went to %#x", v.Ticket.Leader)
	}
	// A newer term gets a new vote.
	v = one(t, a, 2*time.Second, askVote(west, 2, ReasonAdmin))
	if v.Ticket.Leader != boothconf.SiteID(west) || v.Ticket.Term != 2 {
		t.Fatalf("vote in term 2 = %+v", v)
	}
}

func TestArbitratorRefusesElectionsWhileTheLeaseRuns(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	r := one(t, a, 5*time.Second, askVote(west, 2, ReasonAdmin))
	if r.Cmd != CmdReject || r.Result != ResultValid || r.Request != CmdRequestVote || r.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("election during the lease: %+v", r)
	}
	// "Ticket lost" from west while more than a third of the lease is
	// left: still valid.
	r = one(t, a, 10*time.Second, askVote(west, 2, ReasonLost))
	if r.Result != ResultValid {
		t.Fatalf("ticket-lost election with 20 s of 30 left: %+v", r)
	}
	// A step-down election is allowed during the lease.
	v := one(t, a, 11*time.Second, askVote(west, 2, ReasonStepDown))
	if v.Cmd != CmdVoteFor || v.Ticket.Leader != boothconf.SiteID(west) {
		t.Fatalf("step-down election: %+v", v)
	}
}

func TestArbitratorVotesOnceTheLeaseRanOut(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	a.Tick(30 * time.Second)
	if v := a.Tickets()[0]; v.Leader.IsValid() || v.State != StateFollower {
		t.Fatalf("after the lease: %+v", v)
	}
	v := one(t, a, 31*time.Second, askVote(west, 2, ReasonLost))
	if v.Cmd != CmdVoteFor || v.Ticket.Leader != boothconf.SiteID(west) {
		t.Fatalf("election after the lease: %+v", v)
	}
}

func TestArbitratorRejectsAnOlderTerm(t *testing.T) {
	a := testArbiter(t, "")
	one(t, a, 0, askVote(east, 5, ReasonAdmin))
	r := one(t, a, time.Second, askVote(west, 4, ReasonAdmin))
	if r.Cmd != CmdReject || r.Result != ResultOlder || r.Ticket.Term != 5 {
		t.Fatalf("older term: %+v", r)
	}
}

func TestTicketLostElectionAfterARevokeIsOutdated(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	ack := one(t, a, time.Second, peerMsg(east, CmdRevoke, boothconf.SiteID(east), 1, 29, ReasonAdmin))
	if ack.Cmd != CmdAck || ack.Request != CmdRevoke || ack.Ticket.Leader != NoLeader {
		t.Fatalf("revoke answer: %+v", ack)
	}
	if got := a.List(time.Second, time.Now()); got != "ticket: web, leader: none\n" {
		t.Fatalf("list after revoke = %q", got)
	}
	r := one(t, a, 2*time.Second, askVote(west, 1, ReasonLost))
	if r.Result != ResultOutdated {
		t.Fatalf("ticket-lost election after a revoke: %+v", r)
	}
	// The revoke is acknowledged again when repeated.
	if ack := one(t, a, 3*time.Second, peerMsg(east, CmdRevoke, boothconf.SiteID(east), 1, 0, ReasonAdmin)); ack.Cmd != CmdAck {
		t.Fatalf("repeated revoke: %+v", ack)
	}
}

func TestOnlyTheLeaderRevokesOrStepsDown(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	none(t, a, time.Second, peerMsg(west, CmdRevoke, boothconf.SiteID(west), 1, 0, ReasonAdmin))
	none(t, a, time.Second, peerMsg(west, CmdVoteFor, NoLeader, 1, 0, ReasonLocalFail))
	if v := a.Tickets()[0]; v.Leader != east {
		t.Fatalf("west's revoke or step-down was taken: %+v", v)
	}
	none(t, a, 2*time.Second, peerMsg(east, CmdVoteFor, NoLeader, 1, 0, ReasonLocalFail))
	if v := a.Tickets()[0]; v.Leader.IsValid() || v.State != StateFollower {
		t.Fatalf("after east stepped down: %+v", v)
	}
}

func TestLeaseIsReceiptPlusTheTruncatedRemainder(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	// An update with 29 s left, received at 10 s: the lease ends at 39 s.
	ack := one(t, a, 10*time.Second, peerMsg(east, CmdUpdate, boothconf.SiteID(east), 1, 29, 0))
	if ack.Cmd != CmdAck || ack.Request != CmdUpdate {
		t.Fatalf("update answer: %+v", ack)
	}
	if v := a.Tickets()[0]; v.Expires != 39*time.Second {
		t.Fatalf("lease ends at %v, want 39s", v.Expires)
	}
	// What this member sends is truncated to whole seconds.
	st := one(t, a, 10*time.Second+1500*time.Millisecond, peerMsg(west, CmdStatus, NoLeader, 0, 0, 0))
	if st.Cmd != CmdMyIndex || st.Request != CmdStatus || st.Ticket.ValidFor != 27 || st.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("status answer: %+v", st)
	}
}

func TestMillisecondConfigurationsSpeakMilliseconds(t *testing.T) {
	a := testArbiter(t, " acquire-after = 1500ms\n")
	one(t, a, 0, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 30000, 0))
	if v := a.Tickets()[0]; v.Expires != 30*time.Second {
		t.Fatalf("lease of 30000 units in a ms configuration ends at %v", v.Expires)
	}
	st := one(t, a, 1234*time.Millisecond, peerMsg(west, CmdStatus, NoLeader, 0, 0, 0))
	if st.Ticket.ValidFor != 28766 {
		t.Fatalf("remaining in ms = %d", st.Ticket.ValidFor)
	}
}

func TestAnotherLeaderIsRefusedWhileTheLeaseRuns(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	r := one(t, a, time.Second, peerMsg(west, CmdUpdate, boothconf.SiteID(west), 1, 30, 0))
	if r.Cmd != CmdReject || r.Result != ResultValid {
		t.Fatalf("west's update during east's lease: %+v", r)
	}
	r = one(t, a, time.Second, peerMsg(west, CmdHeartbeat, boothconf.SiteID(west), 0, 30, 0))
	if r.Cmd != CmdReject || r.Result != ResultOlder {
		t.Fatalf("west's heartbeat of an older term: %+v", r)
	}
	if v := a.Tickets()[0]; v.Leader != east {
		t.Fatalf("leader changed: %+v", v)
	}
}

func TestStatusAnswersTeachARestartedArbitrator(t *testing.T) {
	a := testArbiter(t, "")
	start := a.Start(0)
	if len(start) != 2 || start[0].Msg.Cmd != CmdStatus || start[0].Msg.Ticket.Leader != NoLeader {
		t.Fatalf("start = %+v", start)
	}
	// East leads with 20 s left at term 3: adopted. A lease longer than
	// expire is capped at expire.
	none(t, a, time.Second, peerMsg(east, CmdMyIndex, boothconf.SiteID(east), 3, 20, 0))
	if v := a.Tickets()[0]; v.Leader != east || v.Term != 3 || v.Expires != 21*time.Second || v.State != StateFollower {
		t.Fatalf("after east's status: %+v", v)
	}
	none(t, a, 3*time.Second, peerMsg(west, CmdMyIndex, boothconf.SiteID(west), 4, 9999, 0))
	if v := a.Tickets()[0]; v.Expires != 33*time.Second || v.Leader != west {
		t.Fatalf("lease not capped at expire: %+v", v)
	}
	// Messages of a term older than the last committed one are dropped.
	none(t, a, 4*time.Second, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 3, 30, 0))
	if v := a.Tickets()[0]; v.Leader != west {
		t.Fatalf("an older term was taken: %+v", v)
	}
}

func TestAnOlderStatusGetsOursBack(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0)
	st := one(t, a, time.Second, peerMsg(west, CmdMyIndex, NoLeader, 0, 0, 0))
	if st.Cmd != CmdMyIndex || st.Request != CmdMyIndex || st.Ticket.Term != 1 || st.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("answer to an older status: %+v", st)
	}
	if v := a.Tickets()[0]; v.Leader != east {
		t.Fatalf("an older, expired status was adopted: %+v", v)
	}
}

func TestNoStatusDuringAnElection(t *testing.T) {
	a := testArbiter(t, "")
	one(t, a, 0, askVote(east, 1, ReasonAdmin))
	none(t, a, time.Second, peerMsg(west, CmdStatus, NoLeader, 0, 0, 0))
	a.Tick(2 * time.Second) // nobody won: the election is over here
	if st := one(t, a, 3*time.Second, peerMsg(west, CmdStatus, NoLeader, 0, 0, 0)); st.Ticket.Leader != boothconf.SiteID(east) {
		t.Fatalf("status after the election carries the vote: %+v", st)
	}
}

func TestStrangersAreRefused(t *testing.T) {
	a := testArbiter(t, "")
	for _, c := range []struct {
		m    Message
		want error
	}{
		{peerMsg(netip.MustParseAddr("192.0.2.9"), CmdHeartbeat, NoLeader, 1, 1, 0), ErrUnknownSender},
		{peerMsg(arb, CmdHeartbeat, NoLeader, 1, 1, 0), ErrUnknownSender},
		{Message{Header: Header{From: boothconf.SiteID(east), Cmd: CmdHeartbeat}}, ErrNoTicket},
		{peerMsg(east, CmdHeartbeat, boothconf.SiteID(netip.MustParseAddr("192.0.2.9")), 1, 1, 0), ErrUnknownLeader},
		{peerMsg(east, CmdHeartbeat, 0, 1, 1, 0), ErrUnknownLeader},
	} {
		if _, err := a.Receive(0, c.m); !errors.Is(err, c.want) {
			t.Errorf("%+v: error %v, want %v", c.m, err, c.want)
		}
	}
	m := peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 1, 0)
	m.Ticket.Name = "db"
	if _, err := a.Receive(0, m); !errors.Is(err, ErrUnknownTicket) {
		t.Errorf("unknown ticket: %v", err)
	}
}

func TestClientAnswersAtTheArbitrator(t *testing.T) {
	a := testArbiter(t, "")
	req := func(cmd Code, name string) Code {
		return a.Answer(0, Message{Header: Header{Cmd: cmd}, HasTicket: true, Ticket: Ticket{Name: name}}).Result
	}
	if r := req(CmdClientRevoke, "web"); r != ResultIdle {
		t.Fatalf("revoke of a free ticket: %v", r)
	}
	if r := req(CmdGrant, "web"); r != ResultInvalid {
		t.Fatalf("grant at an arbitrator: %v", r)
	}
	if r := req(CmdGrant, "db"); r != ResultInvalid {
		t.Fatalf("unknown ticket: %v", r)
	}
	grant(t, a, 0)
	if r := req(CmdGrant, "web"); r != ResultOver {
		t.Fatalf("grant of an owned ticket: %v", r)
	}
	ans := a.Answer(0, Message{Header: Header{Cmd: CmdClientRevoke}, HasTicket: true, Ticket: Ticket{Name: "web"}})
	if ans.Result != ResultRedirect || ans.Ticket.Leader != boothconf.SiteID(east) || ans.Cmd != CmdResult {
		t.Fatalf("revoke at the arbitrator: %+v", ans)
	}
	wall := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	if got, want := a.List(0, wall), "ticket: web, leader: 192.0.2.1, expires: 2026-12-03 10:00:30\n"; got != want {
		t.Fatalf("list = %q, want %q", got, want)
	}
}

func TestOnlyAnArbitratorRunsHere(t *testing.T) {
	c := testConf(t, "")
	if _, err := NewArbiter(c, east); err == nil || !strings.Contains(err.Error(), "is a site") {
		t.Fatalf("a site: %v", err)
	}
	if _, err := NewArbiter(c, netip.MustParseAddr("192.0.2.9")); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("a stranger: %v", err)
	}
}

func TestALearnedLeaseIsNeverShortenedOrOverlong(t *testing.T) {
	a := testArbiter(t, "")
	grant(t, a, 0) // east, term 1, until 30 s
	// A heartbeat of the same leader and term with less time left (the
	// remaining time before its renewal, truncated) keeps the lease.
	one(t, a, 5*time.Second, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 24, 0))
	if v := a.Tickets()[0]; v.Expires != 30*time.Second {
		t.Fatalf("lease shortened to %v", v.Expires)
	}
	// The renewal's update lengthens it.
	one(t, a, 6*time.Second, peerMsg(east, CmdUpdate, boothconf.SiteID(east), 1, 30, 0))
	if v := a.Tickets()[0]; v.Expires != 36*time.Second {
		t.Fatalf("renewed lease ends at %v, want 36s", v.Expires)
	}
	// A remaining time beyond expire (a sender counting in another unit)
	// is read as expire.
	one(t, a, 7*time.Second, peerMsg(east, CmdUpdate, boothconf.SiteID(east), 1, 30000, 0))
	if v := a.Tickets()[0]; v.Expires != 37*time.Second {
		t.Fatalf("overlong lease ends at %v, want 37s", v.Expires)
	}
}

func TestManualTicketsDoNotExpireAndAcceptAnyRevoke(t *testing.T) {
	a := testArbiter(t, "ticket = batch\n mode = manual\n")
	m := func(from netip.Addr, cmd Code, leader uint32) Message {
		msg := peerMsg(from, cmd, leader, 0, 0, 0)
		msg.Ticket.Name = "batch"
		return msg
	}
	// A manual grant: the leader's heartbeat carries no lease.
	one(t, a, 0, m(east, CmdHeartbeat, boothconf.SiteID(east)))
	a.Tick(time.Hour)
	v := a.Tickets()[1]
	if v.Leader != east || v.SafeUntil != 0 {
		t.Fatalf("manual ticket after an hour: %+v", v)
	}
	if got := a.List(time.Hour, time.Now()); !strings.Contains(got, "ticket: batch, leader: 192.0.2.1, expires: INF [manual mode]") {
		t.Fatalf("list = %q", got)
	}
	// West, a second leader this member does not follow, revokes: acked,
	// and east stays the leader here.
	if ack := one(t, a, time.Hour, m(west, CmdRevoke, boothconf.SiteID(west))); ack.Cmd != CmdAck {
		t.Fatalf("revoke from the other leader: %+v", ack)
	}
	if v := a.Tickets()[1]; v.Leader != east {
		t.Fatalf("after west's revoke: %+v", v)
	}
}

func TestAManualTicketLedByTwoSitesIsWarnedOf(t *testing.T) {
	a := testArbiter(t, "ticket = batch\n mode = manual\n")
	m := func(from netip.Addr, cmd Code, leader uint32) Message {
		msg := peerMsg(from, cmd, leader, 0, 0, 0)
		msg.Ticket.Name = "batch"
		return msg
	}
	one(t, a, 0, m(east, CmdHeartbeat, boothconf.SiteID(east)))
	// West is granted the ticket too, with grant -F.
	one(t, a, time.Second, m(west, CmdHeartbeat, boothconf.SiteID(west)))
	want := "WARNING: The ticket batch is granted to multiple sites: 192.0.2.1, 192.0.2.2. Revoke the ticket from the faulty sites."
	if got := a.List(time.Second, time.Now()); !strings.Contains(got, want) {
		t.Fatalf("list = %q, want the warning", got)
	}
	// East, which this member no longer follows, revokes: one leader left.
	one(t, a, 2*time.Second, m(east, CmdRevoke, boothconf.SiteID(east)))
	if got := a.List(2*time.Second, time.Now()); strings.Contains(got, "WARNING") || !strings.Contains(got, "leader: 192.0.2.2") {
		t.Fatalf("list after east's revoke = %q", got)
	}
}

func TestAnUpdateInAnotherTimeUnitIsAFullLease(t *testing.T) {
	// This member counts milliseconds; east counts seconds: its update of
	// 30 would be a lease of 30 ms.
	a := testArbiter(t, " acquire-after = 1500ms\n")
	one(t, a, 0, peerMsg(east, CmdUpdate, boothconf.SiteID(east), 1, 30, 0))
	if v := a.Tickets()[0]; v.Expires != 30*time.Second {
		t.Fatalf("lease of an update in seconds read in ms: ends at %v, want expire (30s)", v.Expires)
	}
	if mm := a.UnitMismatches(); len(mm) != 1 || mm[0].Address != east {
		t.Fatalf("mismatches %v", mm)
	}
	// A heartbeat carries the remaining time before a renewal, which may
	// be short; and counting seconds, a short update can only be seconds:
	// no mismatch from either.
	b := testArbiter(t, "")
	one(t, b, 0, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 1, 0))
	one(t, b, 0, peerMsg(east, CmdUpdate, boothconf.SiteID(east), 1, 1, 0))
	if mm := b.UnitMismatches(); len(mm) != 0 {
		t.Fatalf("a short heartbeat or update reported as a mismatch: %v", mm)
	}
	if v := b.Tickets()[0]; v.Expires != time.Second {
		t.Fatalf("a short update in seconds: lease ends at %v, want 1s", v.Expires)
	}
}
