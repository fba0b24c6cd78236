package engine

import (
	"container/heap"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// The deterministic simulator: N members, each the real engine with a
// model of its shell (a store whose writes take time and fail, a CIB whose
// stops take from nothing to past stop_timeout, handlers and handovers),
// on a simulated network, driven by one seeded random source. Real
// (simulated) time advances from event to event; each member reads its
// own clock, whose rate drifts within the configured bound. After every
// event it checks the invariants (sim_check_test.go). A failing seed
// prints the trace that reproduces it:
//
//	go test ./ticket/engine -run TestSimulator -sim.seed=N -v

var (
	simSeeds = flag.Int("sim.seeds", 0, "number of simulator seeds (default 2000, or $GEOBOOTH_SIM_SEEDS)")
	simSeed  = flag.Int64("sim.seed", -1, "run only this simulator seed, with its full trace")
)

func simSeedCount() int {
	if *simSeeds > 0 {
		return *simSeeds
	}
	if v, err := strconv.Atoi(os.Getenv("GEOBOOTH_SIM_SEEDS")); err == nil && v > 0 {
		return v
	}
	return 2000
}

type simEvent struct {
	at  int64 // real ns
	seq uint64
	fn  func()
}

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() (x any) { old := *q; x = old[len(old)-1]; *q = old[:len(old)-1]; return x }

// simClock is a member's monotonic clock: piecewise linear in real time.
type simClock struct {
	rt0  int64   // real time of the last rate change
	lt0  float64 // local time then
	rate float64
}

func (c *simClock) local(rt int64) time.Duration {
	return time.Duration(c.lt0 + float64(rt-c.rt0)*c.rate)
}

// realFor returns the first real instant at which the local clock reads at
// least l.
func (c *simClock) realFor(l time.Duration) int64 {
	if l >= time.Duration(1<<62) {
		return 1 << 62 // never
	}
	r := c.rt0 + int64(math.Ceil((float64(l)-c.lt0)/c.rate)) + 1
	for c.local(r) < l {
		r++
	}
	return r
}

// simRes is one ticket's resources at a site, as its CIB and Pacemaker
// have them.
type simRes struct {
	// running: started and not asked to stop; stopUntil: still stopping
	// (or left running by a dead daemon until its guard stops them).
	running   bool
	stopUntil int64
	// granting: a grant is being written (gen tells which).
	granting bool
	gen      uint64
	// granted and leaseEnd (real ns, 0: none) are what the CIB records.
	granted  bool
	leaseEnd int64
	// since: when the site last began to hold or run the ticket.
	since int64
}

func (r *simRes) active(now int64) bool { return r.running || r.stopUntil > now }

type simMember struct {
	i     int
	cfg   Config
	eng   *Engine
	up    bool
	inc   int
	clock simClock
	// disk: what the store made durable; writing, the write in flight.
	disk    map[string]*Record
	writing *Save
	// diskBadUntil: writes fail until then (real ns).
	diskBadUntil int64
	res          map[string]*simRes
	timerGen     uint64
	// pending: a configuration to boot with next (a rolling change).
	pending *Config
}

func (m *simMember) now(rt int64) time.Duration { return m.clock.local(rt) }

type sim struct {
	rnd       *rand.Rand
	p         simParams
	ms        []*simMember
	q         eventQueue
	seq       uint64
	now       int64
	trace     []string
	keepAll   bool
	links     [][]bool // links[i][j]: messages from i reach j
	healed    bool
	violation string
	// operator: a violation an operator's forced grant made possible.
	operator    bool
	steps       int
	cmdID       uint64
	deadForGood int
	// held records every (ticket, site, term) that held the ticket.
	held map[heldKey]bool
	// gaveUp: the last term in which a site moved, released or yielded
	// the ticket.
	gaveUp map[siteKey]uint64
	// forces: when forced grants were issued.
	forces []int64
	// refusals: boots refused for a configuration change.
	refusals int
}

// maxEvents bounds a run: a loop of events at one instant, or a storm of
// messages that never ends, fails instead of hanging.
const maxEvents = 2_000_000

type siteKey struct {
	ticket string
	site   int
}

type heldKey struct {
	ticket string
	site   int
	term   uint64
}

func (s *sim) logf(format string, args ...any) {
	line := fmt.Sprintf("%9.3fs ", float64(s.now)/1e9) + fmt.Sprintf(format, args...)
	if !s.keepAll && len(s.trace) >= 600 {
		copy(s.trace, s.trace[150:])
		s.trace = s.trace[:len(s.trace)-150]
	}
	s.trace = append(s.trace, line)
}

func (s *sim) at(d int64, fn func()) {
	s.seq++
	heap.Push(&s.q, &simEvent{at: s.now + max(d, 0), seq: s.seq, fn: fn})
}

// later runs fn after d if member m has not crashed meanwhile.
func (s *sim) later(m *simMember, d int64, fn func()) {
	inc := m.inc
	s.at(d, func() {
		if m.up && m.inc == inc {
			fn()
		}
	})
}

func (s *sim) randDur(max time.Duration) int64 {
	if max <= 0 {
		return 0
	}
	return s.rnd.Int63n(int64(max))
}

func (s *sim) chance(p float64) bool { return p > 0 && s.rnd.Float64() < p }

func newSim(seed int64, p simParams) *sim {
	s := &sim{rnd: rand.New(rand.NewSource(seed)), p: p, deadForGood: ticket.None, held: map[heldKey]bool{}, gaveUp: map[siteKey]uint64{}}
	n := len(p.cfg.Members)
	s.links = make([][]bool, n)
	for i := range s.links {
		s.links[i] = make([]bool, n)
		for j := range s.links[i] {
			s.links[i][j] = true
		}
	}
	for i := 0; i < n; i++ {
		cfg := p.cfg
		cfg.Self = i
		m := &simMember{i: i, cfg: cfg, disk: map[string]*Record{}, res: map[string]*simRes{}}
		m.clock = simClock{lt0: float64(time.Hour) + float64(s.randDur(time.Hour)), rate: s.pickRate()}
		for _, tc := range p.cfg.Tickets {
			m.res[tc.Name] = &simRes{}
		}
		s.ms = append(s.ms, m)
	}
	return s
}

func (s *sim) drift() float64 { return s.p.cfg.Tickets[0].MaxClockDrift }

func (s *sim) pickRate() float64 {
	d := s.drift()
	if s.chance(s.p.extremeRate) {
		if s.rnd.Intn(2) == 0 {
			return 1 - d
		}
		return 1 + d
	}
	return 1 - d + 2*d*s.rnd.Float64()
}

func (s *sim) name(i int) string { return s.p.cfg.Members[i].Name }

// sites lists the member indexes of sites (in the initial configuration:
// a rolling change may reorder members, but roles go with names).
func (s *sim) sites() []int {
	var out []int
	for i, m := range s.p.cfg.Members {
		if m.Role == ticket.Site {
			out = append(out, i)
		}
	}
	return out
}

// index is member i's index in m's current configuration.
func (s *sim) index(m *simMember, i int) int {
	n := s.name(i)
	for j, x := range m.cfg.Members {
		if x.Name == n {
			return j
		}
	}
	return ticket.None
}

// member returns the member whose name is at index j of m's configuration.
func (s *sim) member(m *simMember, j int) *simMember {
	if j < 0 || j >= len(m.cfg.Members) {
		return nil
	}
	n := m.cfg.Members[j].Name
	for _, x := range s.ms {
		if s.name(x.i) == n {
			return x
		}
	}
	return nil
}

func (s *sim) fail(format string, args ...any) {
	if s.violation == "" {
		s.violation = fmt.Sprintf(format, args...)
		s.logf("VIOLATION: %s", s.violation)
	}
}

// boot starts member i's daemon (again), with what its disk and its CIB
// hold.
func (s *sim) boot(m *simMember, wipe bool) {
	if m.pending != nil {
		m.cfg, m.pending = *m.pending, nil
	}
	m.up = true
	m.inc++
	m.clock = simClock{rt0: s.now, lt0: float64(time.Hour) + float64(s.randDur(time.Hour)), rate: s.pickRate()}
	if wipe {
		m.disk = map[string]*Record{}
	}
	eng, err := New(m.cfg)
	if err != nil {
		panic(err)
	}
	running := map[string]Running{}
	for name, r := range m.res {
		if r.granted {
			end := time.Duration(0)
			if r.leaseEnd > 0 {
				end = m.now(r.leaseEnd)
			}
			running[name] = Running{LeaseEnd: end}
		}
	}
	s.logf("%s BOOT wiped=%v cfg=%x running=%v", s.name(m.i), wipe, m.cfg.Digest, running)
	if err := eng.Boot(m.now(s.now), m.disk, running, s.rnd.Uint64()); err != nil {
		s.logf("%s BOOT REFUSED: %v", s.name(m.i), err)
		s.refusals++
		m.up = false
		return
	}
	m.eng = eng
	s.process(m)
}

// crash ends member i's daemon. Its resources run on until its guard
// stops them; a write in flight may or may not have reached the disk.
func (s *sim) crash(m *simMember, why string) {
	if !m.up {
		return
	}
	s.logf("%s CRASH (%s)", s.name(m.i), why)
	m.up = false
	m.timerGen++
	if m.writing != nil && s.rnd.Intn(2) == 0 {
		for _, r := range m.writing.Records {
			r := r
			m.disk[r.Ticket] = &r
		}
	}
	m.writing = nil
	// The guard (the ticket-guard agent) sees the daemon gone: the local
	// cluster stops, or fences, what it guarded within the guard's time.
	for _, r := range m.res {
		switch {
		case r.running:
			r.stopUntil = s.now + int64(s.p.guard)
		case r.stopUntil > s.now:
			r.stopUntil = min(r.stopUntil, s.now+int64(s.p.guard))
		}
		r.running, r.granting = false, false
	}
	m.eng = nil
}

// run plays the scenario; it returns a description of a violation, or "".
func (s *sim) run() string {
	for _, m := range s.ms {
		m := m
		if m.i == 0 || s.rnd.Intn(2) == 0 {
			s.boot(m, true)
			continue
		}
		s.at(s.randDur(s.p.cfg.Tickets[0].Expire), func() { s.boot(m, true) })
	}
	for _, tc := range s.p.cfg.Tickets {
		if tc.Mode == ticket.Manual || s.rnd.Intn(2) == 0 {
			sites := s.sites()
			site := s.ms[sites[s.rnd.Intn(len(sites))]]
			s.command(site, tc.Name, ticket.Command{Op: ticket.OpGrant, Site: s.index(site, site.i)})
		}
	}
	expire := s.p.cfg.Tickets[0].Expire
	chaosEnd := int64(s.p.chaos)
	meanGap := int64(s.p.cfg.Tickets[0].Timeout) * 2
	var nextChaos func()
	nextChaos = func() {
		if s.now >= chaosEnd {
			return
		}
		s.chaos()
		s.at(s.rnd.Int63n(2*meanGap)+1, nextChaos)
	}
	s.at(meanGap, nextChaos)
	if s.p.change != nil {
		s.at(s.randDur(s.p.chaos/3), s.rollingChange)
	}
	s.at(chaosEnd, s.heal)
	end := chaosEnd + int64(s.p.stable)
	if s.p.checkLiveness {
		s.at(chaosEnd+int64(3*expire), s.grantForLiveness)
	}
	s.runUntil(end)
	if s.violation != "" {
		return s.violation
	}
	if s.p.checkLiveness {
		for _, tc := range s.p.cfg.Tickets {
			if tc.Mode == ticket.Auto && s.holder(tc.Name) == ticket.None {
				return fmt.Sprintf("liveness: no owner of %s %v after the cluster healed", tc.Name, s.p.stable)
			}
		}
	}
	return ""
}

// runUntil plays events up to real time end (or a violation), checking
// the invariants after each.
func (s *sim) runUntil(end int64) {
	for events := 0; s.q.Len() > 0 && s.violation == ""; events++ {
		if s.q[0].at > end {
			break
		}
		e := heap.Pop(&s.q).(*simEvent)
		if events > maxEvents {
			s.fail("more than %d events: a storm that does not end", maxEvents)
			break
		}
		s.now = e.at
		e.fn()
		s.check()
	}
	s.now = max(s.now, end)
}

// holder returns a member that holds the ticket, or None.
func (s *sim) holder(name string) int {
	for _, m := range s.ms {
		if m.up {
			if st := m.eng.State(name); st.Holds(m.now(s.now)) {
				return m.i
			}
		}
	}
	return ticket.None
}

// grantForLiveness: once the cluster is whole again the operator wants
// every ticket held: when a live member no longer counts it as granted (an
// operator's revoke reached it, or a local forced revoke), a grant is
// issued, as ticketctl grant would be run again. Otherwise an auto ticket
// must come back by itself.
func (s *sim) grantForLiveness() {
	for _, tc := range s.p.cfg.Tickets {
		if tc.Mode != ticket.Auto || s.holder(tc.Name) != ticket.None {
			continue
		}
		managed, live := 0, []*simMember{}
		for _, m := range s.ms {
			if !m.up {
				continue
			}
			if m.eng.State(tc.Name).P.Managed {
				managed++
			}
			if s.p.cfg.Members[m.i].Role == ticket.Site {
				live = append(live, m)
			}
		}
		up := 0
		for _, m := range s.ms {
			if m.up {
				up++
			}
		}
		if managed == up || len(live) == 0 {
			continue
		}
		site := live[s.rnd.Intn(len(live))]
		s.logf("%s COMMAND grant %s (liveness check)", s.name(site.i), tc.Name)
		s.command(site, tc.Name, ticket.Command{Op: ticket.OpGrant, Site: s.index(site, site.i)})
	}
	s.at(int64(s.p.cfg.Tickets[0].Expire/2), s.grantForLiveness)
}

// heal ends the chaos: every link up, no loss, disks good, members up
// (but the holder of a ticket may die for good, so that the others must
// take over by themselves).
func (s *sim) heal() {
	s.healed = true
	if s.p.checkLiveness && s.rnd.Intn(2) == 0 {
		name := s.p.cfg.Tickets[0].Name
		if h := s.holder(name); h != ticket.None && len(s.sites()) > 1 {
			s.crash(s.ms[h], "dies for good")
			s.deadForGood = h
		}
	}
	for i := range s.links {
		for j := range s.links[i] {
			s.links[i][j] = true
		}
	}
	for _, m := range s.ms {
		m.diskBadUntil = 0
	}
	s.logf("HEAL: all links up, no loss, disks good")
	for _, m := range s.ms {
		if !m.up && m.i != s.deadForGood {
			s.boot(m, false)
		}
	}
}

func (s *sim) linkString() string {
	var b strings.Builder
	for i := range s.links {
		for j := range s.links[i] {
			if i != j && !s.links[i][j] {
				fmt.Fprintf(&b, "%d↛%d ", i, j)
			}
		}
	}
	if b.Len() == 0 {
		return "healed"
	}
	return b.String()
}
