package ticket

import (
	"container/heap"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The deterministic simulator: N members on a simulated network, driven by
// one seeded random source. Real (simulated) time advances from event to
// event; each member reads its own clock, whose rate drifts within the
// configured bound. After every event it checks safety on beliefs (no two
// members hold the ticket) and on resources (no two sites run them, a
// stopping resource counting as running). A failing seed prints the trace
// that reproduces it: go test ./ticket -run TestSimulator -sim.seed=N -v

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
	at   int64 // real ns
	seq  uint64
	kind int
	m    int    // member concerned
	inc  int    // member incarnation the event belongs to
	gen  uint64 // timer generation
	msg  Message
	in   Input
	fn   func()
}

const (
	evTimer = iota
	evDeliver
	evInput
	evFunc
)

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int)     { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)       { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() (x any)     { old := *q; x = old[len(old)-1]; *q = old[:len(old)-1]; return x }
func (q *eventQueue) push(e *simEvent) { heap.Push(q, e) }

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
	r := c.rt0 + int64(math.Ceil((float64(l)-c.lt0)/c.rate)) + 1
	for c.local(r) < l {
		r++
	}
	return r
}

type simMember struct {
	st       State
	up       bool
	inc      int
	clock    simClock
	disk     *Persistent
	timerGen uint64
	// tickAt: the local instant of the next tick, when tickSet.
	tickAt  time.Duration
	tickSet bool
	// resources (sites): running, or stopping until stopUntil.
	running   bool
	stopUntil int64
}

type simParams struct {
	lossP, dupP   float64
	crashP, wipeP float64
	partitionP    float64
	commandP      float64
	extremeRate   float64
	manual        bool
	chaos, stable time.Duration
	members       []Member
	cfg           Config
	maxDelay      time.Duration
	handlerFailP  float64
	handoverFailP float64
	checkLiveness bool
	// lateMaxP: how often a tick comes the whole cfg.TimerSlack late
	// (otherwise anywhere from on time to that).
	lateMaxP float64
}

type sim struct {
	t       *testing.T
	rnd     *rand.Rand
	p       simParams
	cfg     *Config
	cl      []*Cluster
	ms      []*simMember
	q       eventQueue
	seq     uint64
	now     int64
	trace   []string
	keepAll bool
	links   [][]bool // links[i][j]: messages from i reach j
	healed  bool
	// forced manual grant fence: while set, the old holder stays down.
	fencedHolder int
	forcer       int
	fenceTerm    uint64
	violation    string
	steps        int
	cmdID        uint64
	moves        int
	deadForGood  int
	held         map[[2]uint64]bool
}

func (s *sim) logf(format string, args ...any) {
	line := fmt.Sprintf("%9.3fs ", float64(s.now)/1e9) + fmt.Sprintf(format, args...)
	if s.keepAll {
		s.trace = append(s.trace, line)
		return
	}
	if len(s.trace) >= 400 {
		copy(s.trace, s.trace[100:])
		s.trace = s.trace[:len(s.trace)-100]
	}
	s.trace = append(s.trace, line)
}

func (s *sim) at(d int64, e *simEvent) {
	s.seq++
	e.at, e.seq = s.now+d, s.seq
	s.q.push(e)
}

func (s *sim) randDur(max time.Duration) int64 {
	if max <= 0 {
		return 0
	}
	return s.rnd.Int63n(int64(max))
}

func newSim(t *testing.T, seed int64, p simParams) *sim {
	s := &sim{t: t, rnd: rand.New(rand.NewSource(seed)), p: p, fencedHolder: None, deadForGood: None}
	cfg := p.cfg
	s.cfg = &cfg
	n := len(p.members)
	s.links = make([][]bool, n)
	for i := range s.links {
		s.links[i] = make([]bool, n)
		for j := range s.links[i] {
			s.links[i][j] = true
		}
	}
	for i := 0; i < n; i++ {
		cl := &Cluster{Members: p.members, Self: i}
		s.cl = append(s.cl, cl)
		m := &simMember{st: NewState(s.cfg, cl)}
		m.clock = simClock{rt0: 0, lt0: float64(time.Hour) + float64(s.randDur(time.Hour)), rate: s.pickRate()}
		s.ms = append(s.ms, m)
	}
	return s
}

func (s *sim) pickRate() float64 {
	d := s.cfg.MaxClockDrift
	if s.rnd.Float64() < s.p.extremeRate {
		if s.rnd.Intn(2) == 0 {
			return 1 - d
		}
		return 1 + d
	}
	return 1 - d + 2*d*s.rnd.Float64()
}

// step feeds one input to member i and carries out the outputs.
func (s *sim) step(i int, in Input) {
	m := s.ms[i]
	if !m.up {
		return
	}
	now := m.clock.local(s.now)
	var msgs []Message
	var effs []Effect
	m.st, msgs, effs = Step(m.st, in, now)
	s.steps++
	for _, e := range effs {
		s.effect(i, e)
	}
	for _, msg := range msgs {
		s.send(msg)
	}
	s.schedTimer(i)
}

// schedTimer sets member i's tick after a step: at NextTimer, or up to
// the timer slack later, as the runtime may tick.
func (s *sim) schedTimer(i int) {
	m := s.ms[i]
	now := m.clock.local(s.now)
	t, ok := m.st.NextTimer(now)
	if ok {
		if slack := s.cfg.TimerSlack; slack > 0 {
			if s.rnd.Float64() < s.p.lateMaxP {
				t += slack
			} else {
				t += time.Duration(s.randDur(slack + 1))
			}
		}
	}
	m.tickAt, m.tickSet = t, ok
	s.armTimer(i)
}

// armTimer puts member i's tick on the event queue, at the real instant
// its clock shows tickAt (again after a rate change; at once if that has
// passed meanwhile).
func (s *sim) armTimer(i int) {
	m := s.ms[i]
	m.timerGen++
	if m.tickSet {
		r := max(m.clock.realFor(m.tickAt), s.now)
		s.at(r-s.now, &simEvent{kind: evTimer, m: i, inc: m.inc, gen: m.timerGen})
	}
}

func (s *sim) name(i int) string { return s.p.members[i].Name }

func (s *sim) effect(i int, e Effect) {
	m := s.ms[i]
	switch e := e.(type) {
	case Persist:
		c := e.State.clone()
		m.disk = &c
	case StartResources:
		s.logf("%s START resources term %d", s.name(i), e.Term)
		if !s.cl[i].IsSite(i) {
			s.fail("arbitrator %s started resources", s.name(i))
		}
		m.running, m.stopUntil = true, 0
	case StopResources:
		d := s.randDur(s.cfg.StopTimeout)
		s.logf("%s STOP resources (%s), down in %v", s.name(i), e.Reason, time.Duration(d))
		if m.running {
			m.running = false
			m.stopUntil = s.now + d
		}
		tok := e.Token
		s.at(d, &simEvent{kind: evInput, m: i, inc: m.inc, in: Stopped{Token: tok}})
	case RunHandler:
		ok := s.healed || s.rnd.Float64() >= s.p.handlerFailP
		s.at(s.randDur(s.cfg.Timeout), &simEvent{kind: evInput, m: i, inc: m.inc, in: HandlerDone{Token: e.Token, OK: ok}})
	case PrepareHandover:
		ok := s.rnd.Float64() >= s.p.handoverFailP
		s.at(s.randDur(2*s.cfg.Timeout), &simEvent{kind: evInput, m: i, inc: m.inc, in: HandoverDone{Token: e.Token, OK: ok}})
	case Reply:
		s.logf("%s reply %d: %v %s", s.name(i), e.ID, e.Err, e.Detail)
	case Event:
		s.logf("%s event %s term %d owner %d: %s", s.name(i), e.Kind, e.Term, e.Owner, e.Reason)
		if e.Kind == EvMoved {
			s.moves++
		}
	}
}

func (s *sim) send(msg Message) {
	from, to := msg.From, msg.To
	if !s.links[from][to] {
		return
	}
	if !s.healed && s.rnd.Float64() < s.p.lossP {
		return
	}
	copies := 1
	if !s.healed && s.rnd.Float64() < s.p.dupP {
		copies = 2
	}
	for c := 0; c < copies; c++ {
		s.at(s.randDur(s.p.maxDelay)+1, &simEvent{kind: evDeliver, m: to, msg: msg})
	}
}

func (s *sim) fail(format string, args ...any) {
	if s.violation == "" {
		s.violation = fmt.Sprintf(format, args...)
		s.logf("VIOLATION: %s", s.violation)
	}
}

// check is the safety property, on beliefs and on resources.
func (s *sim) check() {
	holders, running := []string{}, []string{}
	for i, m := range s.ms {
		if m.up && m.st.Holds(m.clock.local(s.now)) {
			holders = append(holders, s.name(i))
		}
		if m.running || m.stopUntil > s.now {
			running = append(running, s.name(i))
		}
	}
	if len(holders) > 1 {
		s.fail("two members hold the ticket: %v", holders)
	}
	if s.held == nil {
		s.held = map[[2]uint64]bool{}
	}
	for i, m := range s.ms {
		if m.up && m.st.hold == owner {
			s.held[[2]uint64{uint64(i), m.st.P.Term}] = true
		}
	}
	for i, m := range s.ms {
		if !m.up {
			continue
		}
		v := m.st.View(m.clock.local(s.now))
		if v.Owner != None && v.Owner != i && !s.held[[2]uint64{uint64(v.Owner), v.Term}] {
			s.fail("%s reports %s as owner in term %d, which it never held", s.name(i), s.name(v.Owner), v.Term)
		}
	}
	if len(running) > 1 {
		s.fail("resources run at two sites: %v", running)
	}
}

func (s *sim) boot(i int, wipe bool) {
	m := s.ms[i]
	m.up = true
	m.inc++
	m.clock = simClock{rt0: s.now, lt0: float64(time.Hour) + float64(s.randDur(time.Hour)), rate: s.pickRate()}
	var p *Persistent
	if !wipe && m.disk != nil {
		c := m.disk.clone()
		p = &c
	} else {
		m.disk = nil
	}
	s.logf("%s BOOT wiped=%v", s.name(i), p == nil)
	s.step(i, Boot{Persisted: p, Seed: s.rnd.Uint64()})
}

func (s *sim) crash(i int) {
	m := s.ms[i]
	if !m.up {
		return
	}
	s.logf("%s CRASH", s.name(i))
	m.up = false
	m.running, m.stopUntil = false, 0
	m.timerGen++
	m.st = NewState(s.cfg, s.cl[i])
}

func (s *sim) sites() []int {
	var out []int
	for i, mem := range s.p.members {
		if mem.Role == Site {
			out = append(out, i)
		}
	}
	return out
}

func (s *sim) holder() int {
	for i, m := range s.ms {
		if m.up && m.st.hold == owner {
			return i
		}
	}
	return None
}

// command issues a random operator command at a random member. A forced
// grant is issued only as an operator following the documentation would:
// the site that held the ticket is down (and, for a manual ticket, stays
// down until every live member has learned the forced grant).
func (s *sim) command() {
	at := s.rnd.Intn(len(s.ms))
	if !s.ms[at].up {
		return
	}
	sites := s.sites()
	site := sites[s.rnd.Intn(len(sites))]
	s.cmdID++
	c := Command{ID: s.cmdID}
	switch r := s.rnd.Intn(20); {
	case r < 8:
		c.Op, c.Site = OpGrant, site
	case r < 10:
		c.Op = OpRevoke
	case r < 13:
		c.Op, c.Site = OpMove, site
	case r < 14:
		c.Op, c.Value = OpRelease, "simulated"
	case r < 17:
		c.Op, c.Attr, c.Value = OpAttrSet, "a"+strconv.Itoa(s.rnd.Intn(3)), strconv.Itoa(s.rnd.Intn(3))
	default:
		c.Op, c.Site, c.Force = OpGrant, site, true
		if !s.mayForce(site) {
			return
		}
		at = site
	}
	s.logf("%s COMMAND %s site=%d force=%v", s.name(at), c.Op, c.Site, c.Force)

	s.step(at, c)
	if c.Force && s.p.manual {
		s.fenceTerm = s.ms[site].st.P.Term
	}
}

// mayForce: no live member holds or runs the ticket, and the forcing site
// is up; for a manual ticket, the site that held it has crashed (and is
// fenced: it stays down until the live members learned the forced grant).
func (s *sim) mayForce(site int) bool {
	if !s.ms[site].up {
		return false
	}
	crashedHolder := None
	for i, m := range s.ms {
		if m.up && (m.st.hold != follower || m.running || m.stopUntil > s.now || m.st.restartOwner) {
			return false
		}
		if m.up && m.st.promiseTo != None && m.st.promiseTo != site && !s.p.manual {
			// Someone still honours a lease of a live site: the operator's
			// view would show the ticket held.
			if s.ms[m.st.promiseTo].up {
				return false
			}
		}
		if !m.up && m.disk != nil && m.disk.Owner == i {
			crashedHolder = i
		}
	}
	if s.fencedHolder != None || (s.p.manual && crashedHolder == None) {
		return false
	}
	s.fencedHolder, s.forcer = crashedHolder, site
	return true
}

// fenceLifted: the forced grant has run its course. For an auto ticket the
// forcing site is no longer trying with force; for a manual one every other
// member has learned (and stored) the forced term.
func (s *sim) fenceLifted() bool {
	if s.fencedHolder == None {
		return true
	}
	if s.p.manual {
		for i, m := range s.ms {
			if i == s.fencedHolder {
				continue
			}
			if m.up && m.st.P.Term < s.fenceTerm || !m.up && (m.disk == nil || m.disk.Term < s.fenceTerm) {
				return false
			}
		}
	} else if f := s.ms[s.forcer]; f.up && (f.st.acquireForce || f.st.elect.Active && f.st.elect.Reason == ReasonForce) {
		return false
	}
	s.fencedHolder = None
	return true
}

func (s *sim) chaos() {
	n := len(s.ms)
	switch r := s.rnd.Float64(); {
	case r < s.p.partitionP:
		// A new random partition: each directed link up or down.
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				s.links[i][j] = true
			}
		}
		switch s.rnd.Intn(4) {
		case 0: // heal
		case 1: // isolate one member
			x := s.rnd.Intn(n)
			for j := 0; j < n; j++ {
				s.links[x][j], s.links[j][x] = false, false
			}
		case 2: // split in two groups
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					if (i+j)%2 == 1 && s.rnd.Intn(2) == 0 {
						s.links[i][j], s.links[j][i] = false, false
					}
				}
			}
		case 3: // asymmetric cuts
			for k := 0; k < n; k++ {
				s.links[s.rnd.Intn(n)][s.rnd.Intn(n)] = false
			}
		}
		s.logf("PARTITION %v", s.linkString())
	case r < s.p.partitionP+s.p.crashP:
		i := s.rnd.Intn(n)
		if s.ms[i].up {
			s.crash(i)
			down := s.randDur(2 * s.cfg.Expire)
			wipe := s.rnd.Float64() < s.p.wipeP
			inc := s.ms[i].inc
			var restart func()
			restart = func() {
				if s.ms[i].up || s.ms[i].inc != inc {
					return
				}
				if s.fencedHolder == i && !s.fenceLifted() {
					s.at(int64(s.cfg.Timeout), &simEvent{kind: evFunc, fn: restart})
					return
				}
				s.boot(i, wipe)
			}
			s.at(down, &simEvent{kind: evFunc, fn: restart})
		}
	case r < s.p.partitionP+s.p.crashP+s.p.commandP:
		s.command()
	default:
		i := s.rnd.Intn(n)
		m := s.ms[i]
		m.clock = simClock{rt0: s.now, lt0: float64(m.clock.local(s.now)), rate: s.pickRate()}
		if m.up {
			s.armTimer(i)
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

func (s *sim) heal() {
	s.healed = true
	if s.p.checkLiveness && s.rnd.Intn(2) == 0 {
		// The site holding the ticket dies for good: the others must take
		// over by themselves (if they are a majority with a site).
		if h := s.holder(); h != None && len(s.sites()) > 1 {
			s.crash(h)
			s.deadForGood = h
			s.logf("%s DIES for good", s.name(h))
		}
	}
	for i := range s.links {
		for j := range s.links[i] {
			s.links[i][j] = true
		}
	}
	s.logf("HEAL: all links up, no loss")
	var bootFenced func()
	bootFenced = func() {
		if !s.fenceLifted() {
			s.at(int64(s.cfg.Timeout), &simEvent{kind: evFunc, fn: bootFenced})
			return
		}
		for i, m := range s.ms {
			if !m.up && i != s.deadForGood {
				s.boot(i, false)
			}
		}
	}
	for i, m := range s.ms {
		if !m.up && s.fencedHolder != i && i != s.deadForGood {
			s.boot(i, false)
		}
	}
	bootFenced()
}

// run plays the scenario; it returns an error text for a violation.
func (s *sim) run() string {
	// Members come up at different times (a first boot counts as a lost
	// state: each abstains for its own window).
	for i := range s.ms {
		if i == 0 || s.rnd.Intn(2) == 0 {
			s.boot(i, true)
			continue
		}
		i := i
		s.at(s.randDur(s.cfg.Expire), &simEvent{kind: evFunc, fn: func() { s.boot(i, true) }})
	}
	if s.p.manual || s.rnd.Intn(2) == 0 {
		// Most runs start with a grant; the others wait for a random one.
		sites := s.sites()
		site := sites[s.rnd.Intn(len(sites))]
		s.cmdID++
		s.step(site, Command{ID: s.cmdID, Op: OpGrant, Site: site})
	}
	chaosEnd := int64(s.p.chaos)
	meanGap := int64(s.cfg.Timeout) * 2
	var nextChaos func()
	nextChaos = func() {
		if s.now >= chaosEnd {
			return
		}
		s.chaos()
		s.at(s.rnd.Int63n(2*meanGap)+1, &simEvent{kind: evFunc, fn: nextChaos})
	}
	s.at(meanGap, &simEvent{kind: evFunc, fn: nextChaos})
	s.at(chaosEnd, &simEvent{kind: evFunc, fn: s.heal})
	end := chaosEnd + int64(s.p.stable)
	if s.p.checkLiveness {
		// Once the cluster is whole again, the operator wants the ticket
		// held: a grant, repeated (as ticketctl grant waits and retries)
		// while nobody holds it.
		// When a majority counts the ticket as granted, an auto ticket must
		// come back without help; otherwise (the operator's grant or revoke
		// reached too few members) the operator grants, as ticketctl grant
		// would be run again.
		var grant func()
		grant = func() {
			managed := 0
			for _, m := range s.ms {
				if m.up && m.st.P.Managed {
					managed++
				}
			}
			if s.holder() != None || managed >= len(s.ms)/2+1 {
				return
			}
			var sites []int
			for _, i := range s.sites() {
				if s.ms[i].up {
					sites = append(sites, i)
				}
			}
			if len(sites) > 0 {
				site := sites[s.rnd.Intn(len(sites))]
				s.cmdID++
				s.logf("%s COMMAND grant (liveness check)", s.name(site))
				s.step(site, Command{ID: s.cmdID, Op: OpGrant, Site: site})
			}
			s.at(int64(s.cfg.Expire/2), &simEvent{kind: evFunc, fn: grant})
		}
		s.at(chaosEnd+int64(s.cfg.stretched(s.cfg.binding())), &simEvent{kind: evFunc, fn: grant})
	}
	for s.q.Len() > 0 && s.violation == "" {
		e := heap.Pop(&s.q).(*simEvent)
		if e.at > end {
			break
		}
		s.now = e.at
		switch e.kind {
		case evTimer:
			m := s.ms[e.m]
			if m.up && m.inc == e.inc && m.timerGen == e.gen {
				s.step(e.m, Tick{})
			}
		case evDeliver:
			if s.keepAll && s.ms[e.m].up {
				s.logf("deliver %s", e.msg)
			}
			s.step(e.m, Receive{Msg: e.msg})
		case evInput:
			m := s.ms[e.m]
			if m.inc == e.inc {
				s.step(e.m, e.in)
			}
		case evFunc:
			e.fn()
		}
		s.check()
	}
	if s.violation != "" {
		return s.violation
	}
	if s.p.checkLiveness && s.holder() == None {
		return fmt.Sprintf("liveness: no owner %v after the cluster healed", s.p.stable)
	}
	return ""
}

// randomParams picks a valid configuration and fault mix from the seed.
func randomParams(rnd *rand.Rand, n int, manual bool) simParams {
	timeout := time.Duration(50+rnd.Intn(200)) * time.Millisecond
	retries := 3 + rnd.Intn(3)
	renewal := timeout*time.Duration(retries+1) + time.Duration(rnd.Intn(3)+1)*timeout
	expire := 2*renewal + time.Duration(rnd.Intn(4))*timeout
	d := []float64{0.01, 0.05, 0.1}[rnd.Intn(3)]
	cfg := Config{Name: "web", Expire: expire, RenewalFreq: renewal, Timeout: timeout, Retries: retries, MaxClockDrift: d}
	if rnd.Intn(2) == 0 {
		cfg.AcquireAfter = time.Duration(rnd.Intn(3)) * timeout
	}
	if rnd.Intn(2) == 0 {
		cfg.StopTimeout = time.Duration(rnd.Int63n(int64(timeout)))
	}
	if rnd.Intn(4) == 0 {
		cfg.BeforeAcquireHandler = []string{"check"}
	}
	if manual {
		cfg.Mode = Manual
	}
	for len(cfg.Validate(n)) > 0 {
		cfg.Expire += timeout
	}
	members := []Member{{Name: "east", Role: Site}, {Name: "west", Role: Site}, {Name: "arbitrator", Role: Arbitrator}}
	if n == 5 {
		members = []Member{{Name: "east", Role: Site}, {Name: "west", Role: Site}, {Name: "north", Role: Site, Weight: 1},
			{Name: "arb1", Role: Arbitrator}, {Name: "arb2", Role: Arbitrator}}
	}
	if n == 2 {
		members = members[:2]
	}
	p := simParams{
		lossP: []float64{0, 0.05, 0.2}[rnd.Intn(3)], dupP: 0.05 * float64(rnd.Intn(3)),
		crashP: 0.06, wipeP: []float64{0, 0.3, 0.6}[rnd.Intn(3)], partitionP: 0.25, commandP: 0.2,
		extremeRate: 0.7, manual: manual, members: members, cfg: cfg,
		chaos: 12 * expire, stable: 6*expire + cfg.AcquireAfter + 10*timeout,
		maxDelay: timeout, handlerFailP: 0.1, handoverFailP: 0.2, checkLiveness: !manual,
		lateMaxP: 0.5,
	}
	// Drawn last, so that the draws above stay those of earlier versions.
	// Half the runs tick late, by up to a quarter of the timeout: far more
	// than a runtime's slack, so that a margin that forgot it shows.
	if rnd.Intn(2) == 0 {
		p.cfg.TimerSlack = time.Duration(rnd.Int63n(int64(timeout / 4)))
		for len(p.cfg.Validate(n)) > 0 {
			p.cfg.Expire += timeout
		}
	}
	return p
}

func runSeed(t *testing.T, seed int64, mutate func(*simParams), keep bool) (string, *sim) {
	rnd := rand.New(rand.NewSource(seed))
	n := []int{3, 3, 5}[rnd.Intn(3)]
	manual := rnd.Intn(8) == 0
	if manual && rnd.Intn(2) == 0 {
		n = 2
	}
	p := randomParams(rnd, n, manual)
	if mutate != nil {
		mutate(&p)
	}
	s := newSim(t, seed, p)
	s.keepAll = keep
	return s.run(), s
}

func TestSimulatorSafetyAndLiveness(t *testing.T) {
	if *simSeed >= 0 {
		v, s := runSeed(t, *simSeed, nil, true)
		for _, l := range s.trace {
			t.Log(l)
		}
		if v != "" {
			t.Fatalf("seed %d: %s", *simSeed, v)
		}
		return
	}
	n := simSeedCount()
	if testing.Short() {
		n /= 10
	}
	steps := 0
	for seed := int64(1); seed <= int64(n); seed++ {
		v, s := runSeed(t, seed, nil, false)
		steps += s.steps
		if v != "" {
			t.Logf("trace (last lines) of seed %d:\n%s", seed, strings.Join(s.trace, "\n"))
			t.Fatalf("seed %d: %s\nreplay: go test ./ticket -run TestSimulatorSafetyAndLiveness -sim.seed=%d -v", seed, v, seed)
		}
	}
	t.Logf("%d seeds, %d steps, safety checked after every event", n, steps)
}
