package booth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// netSim runs a site, a site and an arbitrator on a virtual clock of
// millisecond steps, with each message delayed by up to 40 ms (so
// messages sent at about the same time arrive in any order) and each
// handler taking up to 35 ms. A member that is down neither ticks nor
// receives; what was already on the way to others still arrives.
type netSim struct {
	t      *testing.T
	rng    *rand.Rand
	now    time.Duration
	cfg    *boothconf.Config
	eng    map[uint32]*Engine
	down   map[uint32]bool
	due    map[uint32]time.Duration
	events []simEvent
	seq    int
	// cib is each site's last CIB write of web.
	cib map[uint32]CIBWrite
	// trace is what east received and did, kept once tracing is on.
	trace []string
}

// simEvent is a message arriving, or a handler ending (handler names
// the ticket).
type simEvent struct {
	at      time.Duration
	seq     int
	to      uint32
	msg     *Message
	handler string
}

func newNetSim(t *testing.T, seed uint64, settings string) *netSim {
	s := &netSim{t: t, rng: rand.New(rand.NewPCG(seed, 1)), cfg: testConf(t, settings), eng: map[uint32]*Engine{},
		down: map[uint32]bool{}, due: map[uint32]time.Duration{}, cib: map[uint32]CIBWrite{}}
	for _, a := range []netip.Addr{east, west, arb} {
		s.start(a)
	}
	return s
}

func simID(a netip.Addr) uint32 { return boothconf.SiteID(a) }

// start (re)starts member a with what its CIB holds (a lease that ended
// is read as none, as the shell does).
func (s *netSim) start(a netip.Addr) {
	e, err := NewEngine(s.cfg, a, func(d time.Duration) time.Duration { return time.Duration(s.rng.Int64N(int64(d))) })
	if err != nil {
		s.t.Fatal(err)
	}
	if w, ok := s.cib[simID(a)]; ok {
		var exp time.Duration
		if w.Expires > s.now {
			exp = w.Expires
		}
		e.LoadCIB("web", w.Granted, uint32(w.Owner), exp, w.Term, nil)
	}
	s.eng[simID(a)], s.down[simID(a)], s.due[simID(a)] = e, false, s.now+time.Hour
	s.out(simID(a), e.Start(s.now))
}

// out queues what member from sent and carries out its effects.
func (s *netSim) out(from uint32, sends []Send) {
	for _, o := range sends {
		m := o.Msg
		s.push(simEvent{at: s.now + time.Duration(s.rng.IntN(40))*time.Millisecond, to: o.To, msg: &m})
	}
	e := s.eng[from]
	eff := e.TakeEffects()
	for _, w := range eff.CIB {
		s.cib[from] = w
	}
	for _, n := range eff.RunHandler {
		s.push(simEvent{at: s.now + time.Duration(5+s.rng.IntN(30))*time.Millisecond, to: from, handler: n})
	}
	for _, n := range eff.StopHandler {
		e.HandlerDone(n, false)
	}
	s.due[from] = min(s.due[from], e.NextTick(s.now))
}

func (s *netSim) push(e simEvent) {
	s.seq++
	e.seq = s.seq
	s.events = append(s.events, e)
}

func (s *netSim) note(format string, args ...any) {
	if s.trace != nil {
		s.trace = append(s.trace, fmt.Sprintf("%v ", s.now)+fmt.Sprintf(format, args...))
	}
}

// run advances the clock by d.
func (s *netSim) run(d time.Duration) {
	for end := s.now + d; s.now < end; {
		s.now += time.Millisecond
		for _, a := range []netip.Addr{east, west, arb} {
			e := s.eng[simID(a)]
			if s.down[simID(a)] || s.now < s.due[simID(a)] {
				continue
			}
			s.due[simID(a)] = s.now + time.Hour
			before := e.Tickets()[0]
			out := e.Tick(s.now)
			if a == east {
				s.note("east ticks: %v/%v → %v", before.State, before.Leader, s.view(east))
			}
			s.out(simID(a), out)
		}
		slices.SortFunc(s.events, func(x, y simEvent) int {
			if x.at != y.at {
				return int(x.at - y.at)
			}
			return x.seq - y.seq
		})
		for len(s.events) > 0 && s.events[0].at <= s.now {
			ev := s.events[0]
			s.events = s.events[1:]
			if s.down[ev.to] {
				continue
			}
			e := s.eng[ev.to]
			if ev.msg == nil {
				e.HandlerDone(ev.handler, true)
				s.due[ev.to] = s.now
				continue
			}
			out, err := e.Receive(s.now, *ev.msg)
			if err != nil {
				s.t.Fatal(err)
			}
			if ev.to == simID(east) {
				s.note("east gets %v (leader %#x, term %d): → %v", ev.msg.Cmd, ev.msg.Ticket.Leader, ev.msg.Ticket.Term, s.view(east))
			}
			s.out(ev.to, out)
		}
	}
}

// until runs until cond holds, at most limit.
func (s *netSim) until(limit time.Duration, cond func() bool) bool {
	for end := s.now + limit; s.now < end; {
		if cond() {
			return true
		}
		s.run(time.Millisecond)
	}
	return cond()
}

func (s *netSim) ticket(a netip.Addr) TicketView { return s.eng[simID(a)].Tickets()[0] }

func (s *netSim) view(a netip.Addr) string {
	v := s.ticket(a)
	return fmt.Sprintf("%v/%v term %d, lease %v", v.State, v.Leader, v.Term, v.Expires-s.now)
}

// A site restarted just after the other took the ticket over finds its
// CIB granted from before: it must follow the new leader, never stand for
// election against it, and take the ticket over once that leader dies too.
// Booth disowns the ticket when the live leader's status answer comes
// (update_ticket_state): a follower without a leader that looks at the
// ticket again in an hour. Killed before its next heartbeat, the new
// leader then leaves the ticket without any holder (the mixed-cluster
// test in CI, with geoboothd the restarted site).
func TestARestartedSiteFollowsTheNewLeaderAndTakesOverAfterIt(t *testing.T) {
	for seed := range uint64(300) {
		s := newNetSim(t, seed, " expire = 10\n timeout = 1\n retries = 3\n renewal-freq = 5\n acquire-after = 2\n before-acquire-handler = /bin/true\n")
		s.run(2 * time.Second)
		e := s.eng[simID(east)]
		e.SiteAnswer(s.now, Message{Header: Header{Cmd: CmdGrant}, HasTicket: true, Ticket: Ticket{Name: "web"}})
		s.out(simID(east), e.flush())
		s.run(time.Duration(3000+s.rng.IntN(5000)) * time.Millisecond)
		if s.ticket(arb).Leader != east {
			t.Fatalf("seed %d: after the grant the arbitrator follows %v", seed, s.ticket(arb).Leader)
		}
		s.down[simID(east)] = true
		if !s.until(40*time.Second, func() bool { return s.ticket(west).State == StateLeader }) {
			t.Fatalf("seed %d: west did not take over", seed)
		}
		// East comes back as west wins (its heartbeat on the way), or later.
		if seed%2 == 1 {
			s.run(time.Duration(s.rng.IntN(3000)) * time.Millisecond)
		}
		s.trace = []string{}
		s.start(east)
		if s.until(time.Duration(s.rng.IntN(6000))*time.Millisecond, func() bool { return s.ticket(east).State == StateCandidate }) {
			t.Errorf("seed %d: restarted east stands for election while west leads: %v", seed, s.view(east))
			for _, l := range s.trace {
				t.Log(l)
			}
			return
		}
		s.down[simID(west)] = true
		// West's lease, acquire-after, an election: well within 20 s.
		if !s.until(20*time.Second, func() bool { return s.ticket(arb).Leader == east && s.cib[simID(east)].Granted }) {
			t.Errorf("seed %d: 20 s after west died the arbitrator follows %v, east is %v", seed, s.ticket(arb).Leader, s.view(east))
			for _, l := range s.trace {
				t.Log(l)
			}
			return
		}
	}
}
