package ticket

import (
	"testing"
	"time"
)

// testCluster drives members with one shared clock and a message queue the
// test controls: deliver, drop, cut links, crash, restart. It is the
// hand-driven counterpart of the simulator, for scenario tests.
type testCluster struct {
	t       *testing.T
	cfg     *Config
	members []Member
	st      []State
	up      []bool
	disk    []*Persistent
	now     time.Duration
	queue   []Message
	cut     map[[2]int]bool
	effects [][]Effect // effects seen per member since the last take
	cmdID   uint64
}

func threeMembers() []Member {
	return []Member{{Name: "east", Role: Site}, {Name: "west", Role: Site}, {Name: "arbitrator", Role: Arbitrator}}
}

// testConfig: expire 10 s, renewal 5 s, timeout 1 s, retries 3, as the
// example cluster.
func testConfig(mode Mode) *Config {
	c := Config{Name: "web", Mode: mode, Expire: 10 * time.Second, RenewalFreq: 5 * time.Second,
		AcquireAfter: 2 * time.Second, Timeout: time.Second, Retries: 3, MaxClockDrift: 0.01}
	return &c
}

func newTestCluster(t *testing.T, cfg *Config, members []Member) *testCluster {
	t.Helper()
	if errs := cfg.Validate(len(members)); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	c := &testCluster{t: t, cfg: cfg, members: members, cut: map[[2]int]bool{}, now: time.Hour}
	for i := range members {
		c.st = append(c.st, NewState(cfg, &Cluster{Members: members, Self: i}))
		c.up = append(c.up, false)
		c.disk = append(c.disk, nil)
		c.effects = append(c.effects, nil)
	}
	return c
}

// bootAll boots every member with the given persisted state (nil: wiped)
// and lets the restart windows pass, so the cluster is ready to grant.
func (c *testCluster) bootFresh() {
	for i := range c.st {
		c.boot(i, nil)
	}
	c.deliverAll()
	c.advance(c.cfg.stretched(c.cfg.binding()) + time.Millisecond)
}

func (c *testCluster) boot(i int, p *Persistent) {
	c.up[i] = true
	c.step(i, Boot{Persisted: p, Seed: uint64(i) + 1})
}

func (c *testCluster) crash(i int) {
	c.up[i] = false
	c.st[i] = NewState(c.cfg, &Cluster{Members: c.members, Self: i})
}

func (c *testCluster) step(i int, in Input) {
	if !c.up[i] {
		return
	}
	var msgs []Message
	var effs []Effect
	c.st[i], msgs, effs = Step(c.st[i], in, c.now)
	for _, e := range effs {
		if p, ok := e.(Persist); ok {
			cp := p.State.clone()
			c.disk[i] = &cp
		}
	}
	c.effects[i] = append(c.effects[i], effs...)
	c.queue = append(c.queue, msgs...)
}

// deliverAll delivers queued messages (and those they cause) until none is
// left; messages on cut links are dropped.
func (c *testCluster) deliverAll() {
	for n := 0; len(c.queue) > 0; n++ {
		if n > 10000 {
			c.t.Fatal("message storm: still delivering after 10000 messages")
		}
		m := c.queue[0]
		c.queue = c.queue[1:]
		if !c.cut[[2]int{m.From, m.To}] {
			c.step(m.To, Receive{Msg: m})
		}
	}
}

// advance moves the clock forward in steps of at most 100 ms, ticking
// every member and delivering messages at each step.
func (c *testCluster) advance(d time.Duration) {
	end := c.now + d
	for c.now < end {
		stepD := 100 * time.Millisecond
		if c.now+stepD > end {
			stepD = end - c.now
		}
		c.now += stepD
		for i := range c.st {
			c.step(i, Tick{})
		}
		c.deliverAll()
	}
}

func (c *testCluster) isolate(i int) {
	for j := range c.st {
		if j != i {
			c.cut[[2]int{i, j}], c.cut[[2]int{j, i}] = true, true
		}
	}
}

func (c *testCluster) heal() { c.cut = map[[2]int]bool{} }

func (c *testCluster) command(i int, cmd Command) Reply {
	c.cmdID++
	cmd.ID = c.cmdID
	c.step(i, cmd)
	for _, e := range c.effects[i] {
		if r, ok := e.(Reply); ok && r.ID == cmd.ID {
			return r
		}
	}
	c.t.Fatalf("no reply to %v", cmd.Op)
	return Reply{}
}

// take returns and forgets the effects member i produced.
func (c *testCluster) take(i int) []Effect {
	e := c.effects[i]
	c.effects[i] = nil
	return e
}

func (c *testCluster) holders() []int {
	var h []int
	for i := range c.st {
		if c.up[i] && c.st[i].Holds(c.now) {
			h = append(h, i)
		}
	}
	return h
}

// owner fails the test unless exactly one member holds the ticket, and
// returns it.
func (c *testCluster) owner() int {
	c.t.Helper()
	h := c.holders()
	if len(h) != 1 {
		c.t.Fatalf("holders = %v, want exactly one", h)
	}
	return h[0]
}

func (c *testCluster) grant(at, site int) {
	c.t.Helper()
	if r := c.command(at, Command{Op: OpGrant, Site: site}); r.Err != nil {
		c.t.Fatalf("grant: %v %s", r.Err, r.Detail)
	}
	c.deliverAll()
}

// waitOwner advances until some member holds the ticket, up to max.
func (c *testCluster) waitOwner(max time.Duration) (int, time.Duration) {
	start := c.now
	for c.now-start <= max {
		if h := c.holders(); len(h) == 1 {
			return h[0], c.now - start
		}
		c.advance(100 * time.Millisecond)
	}
	c.t.Fatalf("no owner within %v", max)
	return None, 0
}

func hasEffect[T Effect](effs []Effect) (T, bool) {
	for _, e := range effs {
		if x, ok := e.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}
