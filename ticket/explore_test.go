package ticket

import (
	"github.com/geobooth/geobooth/ticket/internal/mutation"

	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// The exhaustive explorer: for a small scope (3 members, 1 ticket, a grant
// to east, then bounded steps, message losses, one crash and one cut
// link) it visits every interleaving of message deliveries, drops, timer
// firings, crashes, restarts and cuts, deduplicating states it has seen,
// and checks safety in each. A cut isolates a live member for good, so a
// live owner's lease runs out while it still runs.
// Time advances only to the next timer of some member, and never past the
// delivery deadline (send + timeout) of a message in flight. Messages on one
// link arrive in order; across links every interleaving is tried.

type xMsg struct {
	m        Message
	deadline time.Duration // real time by which it must be delivered or lost
}

type xWorld struct {
	st      [3]State
	up      [3]bool
	disk    [3]*Persistent
	running [3]bool
	stopAt  [3]time.Duration // resources stopping until (real)
	now     time.Duration    // real time
	msgs    []xMsg
	drops   int
	crashes int
	// cut: the member isolated for good (None: none).
	cut   int
	depth int
}

type explorer struct {
	cfg      *Config
	cl       [3]*Cluster
	rate     [3]float64
	maxDepth int
	maxDrops int
	seen     map[[32]byte]int // state -> shallowest depth it was explored at
	states   int
	// liveTakeovers counts states in which a site other than the cut one
	// holds the ticket while the cut one (east, the first owner) is up.
	liveTakeovers int
	violated      string
	path          []string
}

func (x *explorer) local(i int, w *xWorld) time.Duration {
	return time.Duration(float64(w.now) * x.rate[i])
}

func (x *explorer) realOf(i int, l time.Duration) time.Duration {
	r := time.Duration(float64(l) / x.rate[i])
	for time.Duration(float64(r)*x.rate[i]) < l {
		r++
	}
	return r
}

func (x *explorer) step(w *xWorld, i int, in Input) {
	if !w.up[i] {
		return
	}
	var msgs []Message
	var effs []Effect
	w.st[i], msgs, effs = Step(w.st[i], in, x.local(i, w))
	for _, e := range effs {
		switch e := e.(type) {
		case Persist:
			p := e.State.clone()
			w.disk[i] = &p
		case StartResources:
			w.running[i] = true
		case StopResources:
			// Resources stop within stop_timeout; the explorer takes the
			// worst case and reports Stopped at once.
			w.running[i] = false
			w.stopAt[i] = w.now + x.cfg.StopTimeout
			x.step(w, i, Stopped{Token: e.Token})
		case RunHandler:
			x.step(w, i, HandlerDone{Token: e.Token, OK: true})
		case PrepareHandover:
			x.step(w, i, HandoverDone{Token: e.Token, OK: true})
		}
	}
	for _, m := range msgs {
		if m.From == w.cut || m.To == w.cut {
			continue
		}
		w.msgs = append(w.msgs, xMsg{m: m, deadline: w.now + x.cfg.Timeout})
	}
}

func (x *explorer) check(w *xWorld) string {
	holders, running := 0, 0
	for i := range w.st {
		if w.up[i] && w.st[i].Holds(x.local(i, w)) {
			holders++
		}
		if w.running[i] || w.stopAt[i] > w.now {
			running++
		}
	}
	if holders > 1 {
		return "two members hold the ticket"
	}
	if running > 1 {
		return "resources run at two sites"
	}
	// While a site holds or runs the ticket, no other could gather a
	// majority.
	for i := range w.st {
		if !(w.up[i] && w.st[i].Holds(x.local(i, w)) || w.running[i] || w.stopAt[i] > w.now) {
			continue
		}
		for y := range w.st {
			if y == i || !x.cl[y].IsSite(y) {
				continue
			}
			would := 0
			for m := range w.st {
				if w.up[m] && w.st[m].MayAcknowledge(y, x.local(m, w)) {
					would++
				}
			}
			if would >= x.cl[0].Quorum() {
				return fmt.Sprintf("member %d holds or runs the ticket while a majority would acknowledge %d", i, y)
			}
		}
	}
	return ""
}

func (x *explorer) key(w *xWorld) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d|%v|%v|%v|%d|%d|%d|", w.now, w.up, w.running, w.stopAt, w.drops, w.crashes, w.cut)
	for i := range w.st {
		fmt.Fprintf(h, "%+v|", w.st[i])
	}
	for _, m := range w.msgs {
		fmt.Fprintf(h, "%+v|", m)
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

func (x *explorer) clone(w *xWorld) *xWorld {
	c := *w
	c.msgs = append([]xMsg(nil), w.msgs...)
	return &c
}

// nextTimer is the earliest real instant a member's timer fires.
func (x *explorer) nextTimer(w *xWorld) (time.Duration, bool) {
	best, ok := time.Duration(0), false
	for i := range w.st {
		if !w.up[i] {
			continue
		}
		if t, has := w.st[i].NextTimer(x.local(i, w)); has {
			r := x.realOf(i, t)
			if !ok || r < best {
				best, ok = r, true
			}
		}
	}
	return best, ok
}

func (x *explorer) explore(w *xWorld) {
	if x.violated != "" {
		return
	}
	x.states++
	if w.cut == east && w.up[east] && w.st[west].Holds(x.local(west, w)) {
		x.liveTakeovers++
	}
	if v := x.check(w); v != "" {
		x.violated = v + " after " + fmt.Sprint(x.path)
		return
	}
	if w.depth >= x.maxDepth {
		return
	}
	k := x.key(w)
	if d, ok := x.seen[k]; ok && d <= w.depth {
		return
	}
	x.seen[k] = w.depth
	try := func(label string, f func(*xWorld)) {
		c := x.clone(w)
		c.depth++
		f(c)
		x.path = append(x.path, label)
		x.explore(c)
		x.path = x.path[:len(x.path)-1]
	}
	headOf := map[[2]int]bool{}
	for k := range w.msgs {
		k := k
		// Messages on one link are delivered in order (reordering across
		// links is still explored); this keeps the scope tractable.
		ch := [2]int{w.msgs[k].m.From, w.msgs[k].m.To}
		if headOf[ch] {
			continue
		}
		headOf[ch] = true
		try(fmt.Sprintf("deliver %s", w.msgs[k].m), func(c *xWorld) {
			m := c.msgs[k].m
			c.msgs = append(c.msgs[:k], c.msgs[k+1:]...)
			x.step(c, m.To, Receive{Msg: m})
		})
		if w.drops < x.maxDrops {
			try(fmt.Sprintf("drop %s", w.msgs[k].m), func(c *xWorld) {
				c.msgs = append(c.msgs[:k], c.msgs[k+1:]...)
				c.drops++
			})
		}
	}
	if t, ok := x.nextTimer(w); ok {
		allowed := true
		for _, m := range w.msgs {
			if m.deadline < t {
				allowed = false
			}
		}
		if allowed {
			try(fmt.Sprintf("time %v", t), func(c *xWorld) {
				c.now = t
				for i := range c.st {
					x.step(c, i, Tick{})
				}
			})
		}
	}
	if w.cut == None {
		for i := range w.st {
			i := i
			try(fmt.Sprintf("cut %d", i), func(c *xWorld) {
				c.cut = i
				kept := c.msgs[:0]
				for _, m := range c.msgs {
					if m.m.From != i && m.m.To != i {
						kept = append(kept, m)
					}
				}
				c.msgs = kept
			})
		}
	}
	for i := range w.st {
		i := i
		switch {
		case w.up[i] && w.crashes == 0:
			try(fmt.Sprintf("crash %d", i), func(c *xWorld) {
				c.up[i], c.running[i], c.stopAt[i] = false, false, 0
				c.crashes++
			})
		case !w.up[i]:
			for _, wipe := range []bool{false, true} {
				wipe := wipe
				try(fmt.Sprintf("restart %d wiped=%v", i, wipe), func(c *xWorld) {
					c.up[i] = true
					c.st[i] = NewState(x.cfg, x.cl[i])
					var p *Persistent
					if !wipe && c.disk[i] != nil {
						q := c.disk[i].clone()
						p = &q
					}
					x.step(c, i, Boot{Persisted: p, Seed: 1})
				})
			}
		}
	}
}

func exploreScope(t *testing.T, rates [3]float64, depth, drops int, f mutation.Set) *explorer {
	cfg := &Config{Name: "web", Expire: 4 * time.Second, RenewalFreq: 1500 * time.Millisecond,
		Timeout: 250 * time.Millisecond, Retries: 3, MaxClockDrift: 0.1, StopTimeout: 100 * time.Millisecond, Mutations: f}
	if errs := cfg.Validate(3); len(errs) > 0 {
		t.Fatal(errs)
	}
	x := &explorer{cfg: cfg, rate: rates, maxDepth: depth, maxDrops: drops, seen: map[[32]byte]int{}}
	w := &xWorld{cut: None}
	for i := range x.cl {
		x.cl[i] = &Cluster{Members: threeMembers(), Self: i}
		w.st[i] = NewState(cfg, x.cl[i])
		w.up[i] = true
		p := Persistent{Acked: None, Owner: None}
		x.step(w, i, Boot{Persisted: &p, Seed: uint64(i)})
	}
	// Start from a ticket just granted to east: deliver everything, let the
	// restart windows pass, grant, and settle.
	settle := func() {
		for len(w.msgs) > 0 {
			m := w.msgs[0]
			w.msgs = w.msgs[1:]
			x.step(w, m.m.To, Receive{Msg: m.m})
		}
	}
	settle()
	slowest := rates[0]
	for _, r := range rates {
		if r < slowest {
			slowest = r
		}
	}
	w.now += time.Duration(float64(cfg.stretched(cfg.binding()))/slowest) + time.Millisecond
	for i := range w.st {
		x.step(w, i, Tick{})
	}
	settle()
	x.step(w, east, Command{ID: 1, Op: OpGrant, Site: east})
	settle()
	if !w.st[east].Holds(x.local(east, w)) {
		t.Fatal("setup: east does not hold the ticket")
	}
	x.explore(w)
	return x
}

func TestExhaustiveExplorationOfThreeMembers(t *testing.T) {
	depth, drops := 10, 1
	if testing.Short() {
		depth = 8
	}
	if v, err := strconv.Atoi(os.Getenv("GEOBOOTH_EXPLORE_DEPTH")); err == nil && v > 0 {
		depth, drops = v, 2
	}
	total, takeovers := 0, 0
	for _, rates := range [][3]float64{{1, 1, 1}, {0.9, 1.1, 1.1}, {1.1, 0.9, 0.9}} {
		x := exploreScope(t, rates, depth, drops, mutation.Set{})
		total += x.states
		takeovers += x.liveTakeovers
		if x.violated != "" {
			t.Fatalf("clock rates %v: %s", rates, x.violated)
		}
		t.Logf("clock rates %v: %d states checked (depth %d, %d drop), %d with west holding while east, cut off, is up",
			rates, x.states, depth, drops, x.liveTakeovers)
	}
	t.Logf("%d states checked in all", total)
	if takeovers == 0 && !testing.Short() {
		t.Error("the exploration never reached a live, cut-off owner's lease running out: deepen it")
	}
}

// The explorer can fail: with voters that ignore their promises it finds
// two owners within a shallow depth.
func TestExplorerCatchesVotersIgnoringPromises(t *testing.T) {
	for depth := 4; depth <= 12; depth++ {
		if x := exploreScope(t, [3]float64{1, 1, 1}, depth, 1, mutation.Set{IgnorePromises: true}); x.violated != "" {
			t.Logf("caught at depth %d after %d states: %s", depth, x.states, x.violated)
			return
		}
	}
	t.Fatal("no violation found with promises ignored")
}
