package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// sample is one member's answer about web in one round of the monitor.
type sample struct {
	member     string
	send, recv time.Duration
	ok, held   bool
	term       uint64
	owner      string
}

// monitor asks every member whether it holds web, all at once, every
// 100 ms, for the safety check: never two members holding web in the
// same term, nor in two rounds in a row (a round lasts as long as its
// slowest answer, so a handover between two answers is not mistaken for
// two owners).
type monitor struct {
	g      *geo
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	rounds [][]sample
}

func (g *geo) watch() *monitor {
	m := &monitor{g: g, stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	g.t.Cleanup(m.halt)
	return m
}

func (m *monitor) run() {
	defer close(m.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		round := make([]sample, len(m.g.Members))
		var wg sync.WaitGroup
		for i, mem := range m.g.Members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := sample{member: mem.Name, send: testenv.Monotonic()}
				tk, err := mem.Ticket("web")
				s.recv = testenv.Monotonic()
				if err == nil {
					s.ok, s.held, s.term, s.owner = true, tk.HeldLocally, tk.Term, tk.Owner
				}
				round[i] = s
			}()
		}
		wg.Wait()
		m.mu.Lock()
		m.rounds = append(m.rounds, round)
		m.mu.Unlock()
	}
}

func (m *monitor) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

func (m *monitor) snapshot() [][]sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]sample(nil), m.rounds...)
}

func holders(round []sample) []sample {
	var hs []sample
	for _, s := range round {
		if s.ok && s.held {
			hs = append(hs, s)
		}
	}
	return hs
}

// check fails the test on two owners, and on a round where no member
// answered (the monitor must see what it checks).
func (m *monitor) check(t *testing.T) {
	t.Helper()
	rounds := m.snapshot()
	if len(rounds) == 0 {
		t.Errorf("the owner monitor made no round")
	}
	terms := map[uint64]string{}
	for i, r := range rounds {
		hs := holders(r)
		for _, h := range hs {
			if o, seen := terms[h.term]; seen && o != h.member {
				t.Errorf("two owners of web in term %d: %s and %s", h.term, o, h.member)
			}
			terms[h.term] = h.member
		}
		if len(hs) > 1 && i > 0 && len(holders(rounds[i-1])) > 1 {
			t.Errorf("two members hold web in two rounds in a row: %+v then %+v", rounds[i-1], r)
		}
	}
}

// moves counts how often web went to another member than its previous
// holder while monitored; owners lists the holders in order.
func (m *monitor) moves() (int, []string) {
	var owners []string
	for _, r := range m.snapshot() {
		hs := holders(r)
		if len(hs) == 1 && (len(owners) == 0 || owners[len(owners)-1] != hs[0].member) {
			owners = append(owners, hs[0].member)
		}
	}
	if len(owners) == 0 {
		return 0, nil
	}
	return len(owners) - 1, owners
}

// firstHeld is the earliest instant site may have started holding web
// after from: when the monitor last asked it and it did not hold (zero
// when it never held after from).
func (m *monitor) firstHeld(site string, from time.Duration) time.Duration {
	last := from
	for _, r := range m.snapshot() {
		for _, s := range r {
			if s.member != site || s.send < from || !s.ok {
				continue
			}
			if s.held {
				return last
			}
			last = s.send
		}
	}
	return 0
}
