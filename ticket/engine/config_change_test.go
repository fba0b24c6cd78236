package engine

import (
	"testing"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// Configuration changes rolled out one member at a time, as
// docs/operations.md says, in the simulator with its invariants checked
// after every event (finding 2 of issue 16). Members whose configurations
// differ refuse each other's datagrams, as the transport does.

// quiet is a world without trouble: no loss, short delays, fast disks.
func quiet(cfg Config) *sim {
	p := simParams{cfg: cfg, maxDelay: 20 * time.Millisecond, writeMax: 5 * time.Millisecond, cibMax: 10 * time.Millisecond}
	return newSim(1, p)
}

func (s *sim) bootAll() {
	for _, m := range s.ms {
		s.boot(m, false)
	}
}

// advance plays the world for d and fails the test on a violation.
func (s *sim) advance(t *testing.T, d time.Duration) {
	t.Helper()
	s.runUntil(s.now + int64(d))
	if s.violation != "" {
		t.Fatalf("%s\n%s", s.violation, s.tail(60))
	}
}

func (s *sim) tail(n int) string {
	lines := s.trace[max(0, len(s.trace)-n):]
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

// restartWith restarts member i with another configuration.
func (s *sim) restartWith(t *testing.T, i int, cfg Config) {
	t.Helper()
	m := s.ms[i]
	cfg.Self = s.index(&simMember{cfg: cfg}, i)
	m.pending = &cfg
	s.crash(m, "restart with a new configuration")
	s.boot(m, false)
}

func (s *sim) holderName(name string) string {
	if h := s.holder(name); h != ticket.None {
		return s.name(h)
	}
	return ""
}

func longTicket() ticket.Config {
	return ticket.Config{Name: "web", Expire: 60 * time.Second, RenewalFreq: 20 * time.Second, AcquireAfter: 2 * time.Second,
		Timeout: time.Second, Retries: 3, MaxClockDrift: 0.01, StopTimeout: time.Second, TimerSlack: 5 * time.Millisecond}
}

func shortTicket() ticket.Config {
	return ticket.Config{Name: "web", Expire: 10 * time.Second, RenewalFreq: 5 * time.Second, AcquireAfter: 2 * time.Second,
		Timeout: time.Second, Retries: 3, MaxClockDrift: 0.01, StopTimeout: time.Second, TimerSlack: 5 * time.Millisecond}
}

// grantedEast boots every member with cfg, lets the first-start windows
// pass and grants the ticket to east.
func grantedEast(t *testing.T, cfg Config) *sim {
	t.Helper()
	s := quiet(cfg)
	s.bootAll()
	s.advance(t, time.Duration(float64(cfg.Tickets[0].Expire+cfg.Tickets[0].AcquireAfter)*1.02)+time.Second)
	s.command(s.ms[east], "web", ticket.Command{Op: ticket.OpGrant, Site: east})
	s.advance(t, 3*time.Second)
	if h := s.holderName("web"); h != "east" {
		t.Fatalf("holder %q after the grant\n%s", h, s.tail(40))
	}
	return s
}

// A rolling decrease of expire (60 s → 10 s) while east holds: the
// restarted members abstain for the old binding, so west takes the ticket
// only after east's 60 s lease is over.
func TestRollingExpireDecreaseNeverGivesTwoHolders(t *testing.T) {
	old := Config{Members: simMembers[3], Tickets: []ticket.Config{longTicket()}, Digest: 1, MaxElections: 8}
	next := old
	next.Tickets, next.Digest = []ticket.Config{shortTicket()}, 2
	s := grantedEast(t, old)
	s.restartWith(t, arb, next)
	s.advance(t, 5*time.Second)
	changed := s.now
	s.restartWith(t, west, next)
	// East (old file) now hears nobody with its configuration: it keeps its
	// lease to its end, and west must wait for it.
	var westAt int64
	for k := 0; k < 120 && westAt == 0; k++ {
		s.advance(t, time.Second)
		if s.holderName("web") == "west" {
			westAt = s.now
		}
	}
	if westAt == 0 {
		t.Fatalf("west never took the ticket\n%s", s.tail(40))
	}
	if d := time.Duration(westAt - changed); d < 50*time.Second {
		t.Fatalf("west took the ticket %v after the change, within east's 60 s lease", d)
	}
	t.Logf("west took the ticket %v after west restarted with the shorter expire", time.Duration(westAt-changed))
	s.restartWith(t, east, next)
	s.advance(t, 30*time.Second)
	if h := s.holderName("web"); h == "" {
		t.Fatalf("nobody holds the ticket after the change\n%s", s.tail(40))
	}
}

// The member list in another order: persisted acknowledgements and owners
// are names, so nothing is reinterpreted, whichever member restarts first.
func TestRollingMemberReorderNeverGivesTwoHolders(t *testing.T) {
	old := Config{Members: simMembers[3], Tickets: []ticket.Config{shortTicket()}, Digest: 1, MaxElections: 8}
	next := old
	next.Members = []ticket.Member{simMembers[3][2], simMembers[3][1], simMembers[3][0]}
	next.Digest = 2
	for _, order := range [][]int{{arb, west, east}, {east, arb, west}, {west, east, arb}} {
		s := grantedEast(t, old)
		for _, i := range order {
			s.restartWith(t, i, next)
			s.advance(t, 7*time.Second)
		}
		s.advance(t, 30*time.Second)
		if h := s.holderName("web"); h == "" {
			t.Fatalf("order %v: nobody holds the ticket after the change\n%s", order, s.tail(40))
		}
	}
}

// Switching a granted ticket between auto and manual is refused at start
// with what to do; after the documented procedure (revoke, change every
// member, grant) it works.
func TestModeSwitchIsRefusedWhileGrantedAndWorksAfterARevoke(t *testing.T) {
	for _, from := range []ticket.Mode{ticket.Auto, ticket.Manual} {
		tc := shortTicket()
		tc.Mode = from
		old := Config{Members: simMembers[3], Tickets: []ticket.Config{tc}, Digest: 1, MaxElections: 8}
		next := old
		switched := tc
		switched.Mode = ticket.Manual + ticket.Auto - from
		next.Tickets, next.Digest = []ticket.Config{switched}, 2
		s := grantedEast(t, old)
		s.restartWith(t, arb, next)
		if s.ms[arb].up || s.refusals != 1 {
			t.Fatalf("%v→%v: the arbitrator started with the mode of a granted ticket changed", from, switched.Mode)
		}
		// The operator restarts it with the old file, then follows the
		// procedure.
		s.restartWith(t, arb, old)
		s.advance(t, 3*time.Second)
		s.command(s.ms[east], "web", ticket.Command{Op: ticket.OpRevoke})
		s.advance(t, 5*time.Second)
		for _, i := range []int{arb, west, east} {
			s.restartWith(t, i, next)
			if !s.ms[i].up {
				t.Fatalf("%v→%v: member %s refused the change after the revoke", from, switched.Mode, s.name(i))
			}
			s.advance(t, 2*time.Second)
		}
		s.advance(t, time.Duration(float64(switched.Expire+switched.AcquireAfter)*1.02))
		s.command(s.ms[west], "web", ticket.Command{Op: ticket.OpGrant, Site: west})
		s.advance(t, 5*time.Second)
		if h := s.holderName("web"); h != "west" {
			t.Fatalf("%v→%v: holder %q after the grant\n%s", from, switched.Mode, h, s.tail(40))
		}
	}
}
