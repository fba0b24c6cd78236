package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// Unit tests of the engine alone: a fake clock (the times passed in), a
// fake store (Saved reported by hand) and a fake transport (Ready.Send).

const (
	east = 0
	west = 1
	arb  = 2
)

func webConfig() ticket.Config {
	return ticket.Config{Name: "web", Expire: 10 * time.Second, RenewalFreq: 5 * time.Second, AcquireAfter: 2 * time.Second,
		Timeout: time.Second, Retries: 3, MaxClockDrift: 0.01, StopTimeout: time.Second, TimerSlack: 5 * time.Millisecond}
}

func engineAt(t *testing.T, self int, tickets ...ticket.Config) *Engine {
	t.Helper()
	if len(tickets) == 0 {
		tickets = []ticket.Config{webConfig()}
	}
	e, err := New(Config{Members: simMembers[3], Self: self, Tickets: tickets, Digest: 7, MaxElections: 4})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// booted starts an engine from a state written long enough ago that its
// restart window is over by now.
func booted(t *testing.T, self int, rec *Record) (*Engine, time.Duration) {
	t.Helper()
	e := engineAt(t, self)
	stored := map[string]*Record{}
	if rec != nil {
		stored["web"] = rec
	}
	now := time.Hour
	if err := e.Boot(now, stored, nil, 1); err != nil {
		t.Fatal(err)
	}
	e.Ready(now)
	return e, now + time.Minute
}

func voteReq(from, to int, term, round uint64) ticket.Message {
	return ticket.Message{Type: ticket.MsgVoteReq, Ticket: "web", Term: term, From: from, To: to, Round: round,
		Reason: ticket.ReasonGrant, Site: from, Acked: ticket.None}
}

func sentTypes(rd Ready) []string {
	var out []string
	for _, m := range rd.Send {
		out = append(out, m.Type.String())
	}
	return out
}

func TestVoteLeavesOnlyOnceItsStateIsOnDisk(t *testing.T) {
	e, now := booted(t, arb, &Record{Ticket: "web", Managed: true, Members: []string{"east", "west", "arbitrator"}, Digest: 7})
	e.Receive(now, voteReq(west, arb, 1, 9))
	rd := e.Ready(now)
	if rd.Save == nil || len(rd.Save.Records) != 1 || rd.Save.Records[0].Acked != "west" || rd.Save.Records[0].Term != 1 {
		t.Fatalf("want the vote written first, got save %+v", rd.Save)
	}
	if len(rd.Send) != 0 {
		t.Fatalf("sent %v before the vote was on disk", sentTypes(rd))
	}
	e.Saved(now+time.Millisecond, rd.Save.ID, nil)
	rd = e.Ready(now + time.Millisecond)
	if len(rd.Send) != 1 || rd.Send[0].Type != ticket.MsgVoteResp || !rd.Send[0].OK {
		t.Fatalf("after the write: sent %+v, want the vote", rd.Send)
	}
}

// Finding 1 of issue 16: a vote whose write failed was sent anyway when
// the candidate asked again (Step saw it in memory and asked for no
// write). The engine keeps the ticket silent until its state is on disk.
func TestFailedWriteKeepsTheVoteUnsentUntilAWriteSucceeds(t *testing.T) {
	e, now := booted(t, arb, &Record{Ticket: "web", Managed: true, Members: []string{"east", "west", "arbitrator"}, Digest: 7})
	e.Receive(now, voteReq(west, arb, 1, 9))
	rd := e.Ready(now)
	e.Saved(now, rd.Save.ID, map[string]error{"web": errors.New("read-only file system")})
	if rd := e.Ready(now); len(rd.Send) != 0 || rd.Save != nil {
		t.Fatalf("after a failed write: sent %v, save %+v", sentTypes(rd), rd.Save)
	}
	if e.Unsaved() != 1 {
		t.Fatalf("Unsaved = %d", e.Unsaved())
	}
	// The candidate asks again: the vote is in memory, but not on disk.
	for i := 0; i < 3; i++ {
		now += 10 * time.Millisecond
		e.Receive(now, voteReq(west, arb, 1, 9))
		if rd := e.Ready(now); len(rd.Send) != 0 {
			t.Fatalf("a retransmitted request got %v from a vote that is not on disk", sentTypes(rd))
		}
	}
	// The write is tried again after its backoff.
	wake, ok := e.NextWake()
	if !ok || wake > now+time.Second {
		t.Fatalf("no retry planned within a second (%v, %v)", wake-now, ok)
	}
	e.Tick(wake)
	rd = e.Ready(wake)
	if rd.Save == nil {
		t.Fatal("no write retried at the backoff")
	}
	e.Saved(wake, rd.Save.ID, nil)
	rd = e.Ready(wake)
	if n := len(rd.Send); n == 0 || rd.Send[0].Type != ticket.MsgVoteResp || !rd.Send[0].OK {
		t.Fatalf("after the retried write: sent %v", sentTypes(rd))
	}
	if e.Unsaved() != 0 {
		t.Fatalf("Unsaved = %d after a good write", e.Unsaved())
	}
}

// ownerAt returns east's engine holding the ticket, with every write
// done.
func ownerAt(t *testing.T) (*Engine, time.Duration, time.Duration) {
	t.Helper()
	e, now, leaseEnd := freshWin(t)
	e.Saved(now, e.saving.ID, nil)
	e.Ready(now)
	if !e.State("web").Holds(now) {
		t.Fatal("east does not hold the ticket")
	}
	return e, now, leaseEnd
}

func TestStopIsNotHeldBehindAWriteAndCancelsTheStartItWaitsFor(t *testing.T) {
	e, _, leaseEnd := freshWin(t)
	pending := e.saving
	if pending == nil {
		t.Fatal("the win's write should be in flight")
	}
	// The disk hangs until the lease ends: the stop still leaves in time.
	stop, at := untilStop(t, e, leaseEnd)
	if stop.Deadline > leaseEnd {
		t.Fatalf("stop deadline %v past the lease end", stop.Deadline-leaseEnd)
	}
	// The write completes: the start it held back never comes.
	e.Saved(at, pending.ID, nil)
	rd := e.Ready(at)
	for _, ef := range rd.Effects {
		if _, ok := ef.Effect.(ticket.StartResources); ok {
			t.Fatal("the start was released after the stop that superseded it")
		}
	}
}

// freshWin returns east's engine just after it won the ticket (west's vote
// delivered by hand), with the write of its win still in flight.
func freshWin(t *testing.T) (*Engine, time.Duration, time.Duration) {
	t.Helper()
	e, now := booted(t, east, &Record{Ticket: "web", Managed: true, Members: []string{"east", "west", "arbitrator"}, Digest: 7})
	if err := e.Command(now, "web", ticket.Command{ID: 1, Op: ticket.OpGrant, Site: east}); err != nil {
		t.Fatal(err)
	}
	rd := e.Ready(now)
	e.Saved(now, rd.Save.ID, nil)
	rd = e.Ready(now)
	var round, term uint64
	for _, m := range rd.Send {
		if m.Type == ticket.MsgVoteReq {
			round, term = m.Round, m.Term
		}
	}
	if round == 0 {
		t.Fatalf("no vote request: %v", sentTypes(rd))
	}
	// West votes: with east's own vote, a majority.
	e.Receive(now, ticket.Message{Type: ticket.MsgVoteResp, Ticket: "web", Term: term, From: west, To: east, Round: round,
		OK: true, Site: ticket.None, Acked: east})
	rd = e.Ready(now)
	if rd.Save == nil {
		t.Fatal("the win asked for no write")
	}
	for _, ef := range rd.Effects {
		if _, ok := ef.Effect.(ticket.StartResources); ok {
			t.Fatal("resources started before the win was on disk")
		}
	}
	return e, now, e.State("web").View(now).Expires
}

// untilStop ticks the engine at its wake-ups until it asks for a stop.
func untilStop(t *testing.T, e *Engine, limit time.Duration) (Stop, time.Duration) {
	t.Helper()
	for {
		wake, ok := e.NextWake()
		if !ok || wake > limit {
			t.Fatalf("no stop by %v", limit)
		}
		e.Tick(wake)
		rd := e.Ready(wake)
		if len(rd.Escalations) > 0 {
			t.Fatalf("escalated before anything: %+v", rd.Escalations)
		}
		if len(rd.Stops) > 0 {
			return rd.Stops[0], wake
		}
	}
}

func TestStopNotReportedByItsDeadlineIsEscalated(t *testing.T) {
	e, _, leaseEnd := ownerAt(t)
	stop, _ := untilStop(t, e, leaseEnd)
	// The CIB hangs: no Stopped comes.
	wake, ok := e.NextWake()
	if !ok || wake > stop.Deadline+5*time.Millisecond {
		t.Fatalf("no wake-up at the stop's deadline (%v)", wake-stop.Deadline)
	}
	e.Tick(stop.Deadline)
	rd := e.Ready(stop.Deadline)
	if len(rd.Escalations) != 1 || rd.Escalations[0].Token != stop.Token {
		t.Fatalf("escalations %+v, want the stop's", rd.Escalations)
	}
	// A stop reported in time is not escalated.
	e2, _, leaseEnd2 := ownerAt(t)
	stop2, at := untilStop(t, e2, leaseEnd2)
	e2.Done(at, "web", ticket.Stopped{Token: stop2.Token})
	e2.Tick(stop2.Deadline + time.Second)
	if rd := e2.Ready(stop2.Deadline + time.Second); len(rd.Escalations) != 0 {
		t.Fatalf("a stop done in time was escalated: %+v", rd.Escalations)
	}
}

func TestStopFailedIsEscalatedAtOnce(t *testing.T) {
	e, _, leaseEnd := ownerAt(t)
	stop, at := untilStop(t, e, leaseEnd)
	e.StopFailed(at, "web", stop.Token, "crm_ticket: timeout")
	rd := e.Ready(at)
	if len(rd.Escalations) != 1 || !strings.Contains(rd.Escalations[0].Reason, "timeout") {
		t.Fatalf("escalations %+v", rd.Escalations)
	}
}

func TestBootRefusesAChangedMemberList(t *testing.T) {
	e := engineAt(t, east)
	rec := &Record{Ticket: "web", Term: 4, Acked: "east", Owner: "east", Managed: true, Mode: "auto",
		Members: []string{"east", "west", "arbitrator", "north"}, Digest: 3}
	err := e.Boot(time.Hour, map[string]*Record{"web": rec}, nil, 1)
	if !errors.Is(err, ErrMembershipChanged) {
		t.Fatalf("err = %v, want ErrMembershipChanged", err)
	}
	for _, want := range []string{"removed north", "every member stopped", "-accept-membership-change"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// With the operator's word that every member was stopped, it starts.
	e2, _ := New(Config{Members: simMembers[3], Self: east, Tickets: []ticket.Config{webConfig()}, Digest: 7,
		MaxElections: 4, AcceptMembershipChange: true})
	if err := e2.Boot(time.Hour, map[string]*Record{"web": rec}, nil, 1); err != nil {
		t.Fatal(err)
	}
}

func TestBootMapsMembersByNameWhateverTheirOrder(t *testing.T) {
	e := engineAt(t, west)
	// Written when the list was arbitrator, west, east.
	rec := &Record{Ticket: "web", Term: 4, Acked: "east", Owner: "east", Managed: true, Mode: "auto",
		Members: []string{"arbitrator", "west", "east"}, Digest: 3}
	if err := e.Boot(time.Hour, map[string]*Record{"web": rec}, nil, 1); err != nil {
		t.Fatal(err)
	}
	if p := e.State("web").P; p.Acked != east || p.Owner != east {
		t.Fatalf("persisted Acked/Owner read as %d/%d, want east (%d)", p.Acked, p.Owner, east)
	}
	e.Ready(time.Hour)
	// What it writes names members, with the current list.
	e.Command(time.Hour, "web", ticket.Command{ID: 1, Op: ticket.OpAttrSet, Attr: "a", Value: "1"})
	rd := e.Ready(time.Hour)
	if r := rd.Save.Records[0]; r.Acked != "east" || fmt.Sprint(r.Members) != "[east west arbitrator]" || r.Digest != 7 {
		t.Fatalf("record %+v", r)
	}
}

func TestBootRefusesAModeChangeOfAGrantedTicket(t *testing.T) {
	manual := webConfig()
	manual.Mode = ticket.Manual
	e := engineAt(t, arb, manual)
	rec := &Record{Ticket: "web", Term: 4, Acked: "east", Owner: "east", Managed: true, Mode: "auto",
		Members: []string{"east", "west", "arbitrator"}, Digest: 3}
	err := e.Boot(time.Hour, map[string]*Record{"web": rec}, nil, 1)
	if !errors.Is(err, ErrModeChanged) || !strings.Contains(err.Error(), "ticketctl revoke web") {
		t.Fatalf("err = %v", err)
	}
	// Once revoked (not managed), the change is taken.
	rec.Managed, rec.Owner = false, ""
	e2 := engineAt(t, arb, manual)
	if err := e2.Boot(time.Hour, map[string]*Record{"web": rec}, nil, 1); err != nil {
		t.Fatal(err)
	}
}

func TestElectionsBeyondTheWindowWaitTheirTurn(t *testing.T) {
	var tickets []ticket.Config
	for i := 0; i < 40; i++ {
		c := webConfig()
		c.Name = fmt.Sprintf("t%02d", i)
		tickets = append(tickets, c)
	}
	e, err := New(Config{Members: simMembers[3], Self: east, Tickets: tickets, Digest: 7, MaxElections: 256})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]*Record{}
	for _, c := range tickets {
		stored[c.Name] = &Record{Ticket: c.Name, Managed: true, Members: []string{"east", "west", "arbitrator"}}
	}
	now := time.Hour
	e.Boot(now, stored, nil, 1)
	e.Ready(now)
	// Every ticket's restart window ends at once: 40 elections fall due.
	for k := 0; k < 200 && e.Stats().Electing+e.Stats().Queued < 40; k++ {
		wake, ok := e.NextWake()
		if !ok {
			break
		}
		now = wake
		e.Tick(now)
		if rd := e.Ready(now); rd.Save != nil {
			e.Saved(now, rd.Save.ID, nil)
			e.Ready(now)
		}
	}
	st := e.Stats()
	if st.Electing > initialWindow || st.Queued == 0 || st.Electing+st.Queued != 40 {
		t.Fatalf("stats %+v: want at most %d elections under way and the rest queued", st, initialWindow)
	}
}
