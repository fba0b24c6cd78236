package booth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// steps is an ordered record of what the sites did.
type steps struct {
	mu   sync.Mutex
	list []string
}

func (s *steps) add(step string) {
	s.mu.Lock()
	s.list = append(s.list, step)
	s.mu.Unlock()
}

// index is where step first is (-1: not yet).
func (s *steps) index(step string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Index(s.list, step)
}

func (s *steps) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.list, ", ")
}

// loggedCIB is a site's CIB that records its writes in steps; a revoke
// written while gate is set waits for it to close.
type loggedCIB struct {
	fakeCIB
	site  string
	steps *steps
	gate  chan struct{}
}

func (c *loggedCIB) Write(ctx context.Context, w CIBWrite, exp time.Time) error {
	if !w.Granted && w.Owner == -1 && c.gate != nil {
		c.steps.add(c.site + " revoke written from")
		<-c.gate
	}
	switch {
	case w.Granted:
		c.steps.add(c.site + " CIB granted")
	case w.Owner == -1:
		c.steps.add(c.site + " CIB revoked")
	}
	return c.fakeCIB.Write(ctx, w, exp)
}

// fakeGuard records what the shell asks of it; its check fails with fail.
type fakeGuard struct {
	steps *steps
	mu    sync.Mutex
	fail  error
	lease time.Time
}

func (g *fakeGuard) Check(string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fail
}

func (g *fakeGuard) failWith(err error) {
	g.mu.Lock()
	g.fail = err
	g.mu.Unlock()
}

func (g *fakeGuard) Lease(_ string, held bool, expires time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !held {
		expires = time.Time{}
	}
	g.lease = expires
}

func (g *fakeGuard) leaseEnd() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lease
}

func (g *fakeGuard) Acquire(context.Context, string, time.Time) error {
	g.steps.add("east acquired")
	return nil
}

func (g *fakeGuard) Release(context.Context, string) error {
	g.steps.add("east released")
	return nil
}

// A site's guard (geoboothd's volumes) follows its ticket: acquired
// before the CIB is granted, its writes bounded by the lease, released
// before the CIB is revoked; a revoke reaches the other site only once
// the CIB has it (as Booth writes the CIB before it tells the others); a
// failing check keeps a site from taking the ticket, and makes a leader
// step down at its next renewal.
func TestAGuardFollowsTheTicketAndARevokeIsWrittenBeforeItIsSent(t *testing.T) {
	st := &steps{}
	gate := make(chan struct{})
	east := &loggedCIB{site: "east", steps: st, gate: gate}
	west := &loggedCIB{site: "west", steps: st}
	g := &fakeGuard{steps: st}
	l := newLoopback(t, "port = %d\nsite = %s\nsite = %s\narbitrator = %s\nticket = web\n expire = 10\n timeout = 1\n retries = 3\n renewal-freq = 5\n",
		func(i int, s *Server, ctx context.Context) context.Context {
			switch i {
			case 0:
				s.UseCIB(east)
				s.UseGuard(g, []string{"web"})
			case 1:
				s.UseCIB(west)
			}
			return ctx
		})
	eastGranted := func() error {
		if !east.granted() || g.leaseEnd().Before(time.Now()) {
			return fmt.Errorf("east's CIB granted %v, its guard's lease until %v", east.granted(), g.leaseEnd())
		}
		return nil
	}

	if r := l.ask(0, CmdGrant); len(r) == 0 || r[len(r)-1].Result != 0 {
		t.Fatalf("grant at east: %+v", r)
	}
	testenv.Eventually(t, 10*time.Second, eastGranted)
	if a, w := st.index("east acquired"), st.index("east CIB granted"); a < 0 || a > w {
		t.Fatalf("east's guard acquired after its CIB was granted: %s", st)
	}

	// The revoke: east's CIB write is held until west wrote its own or a
	// second passed; west must not have heard of it before, even from
	// east's answer to a status query sent meanwhile (as a site that
	// starts asks: from west's address, with west's id).
	done := make(chan []Message)
	go func() { done <- l.ask(0, CmdClientRevoke) }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if st.index("east revoke written from") < 0 {
			return errors.New("east's revoke is not being written")
		}
		return nil
	})
	query, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(l.addrs[1])}, &net.UDPAddr{IP: net.ParseIP(l.addrs[0]), Port: l.port})
	if err != nil {
		t.Fatal(err)
	}
	defer query.Close()
	status := Message{Header: Header{Cmd: CmdStatus, From: l.servers[1].arb.self.ID}, HasTicket: true, Ticket: Ticket{Name: "web"}}
	if _, err := query.Write(Encode(status, nil)); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	for st.index("west CIB revoked") < 0 && time.Since(held) < time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
	if r := <-done; len(r) == 0 || r[len(r)-1].Result != 0 {
		t.Fatalf("revoke at east: %+v", r)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st.index("west CIB revoked") < 0 {
			return errors.New("west has not written the revoke")
		}
		return nil
	})
	if r, e, w := st.index("east released"), st.index("east CIB revoked"), st.index("west CIB revoked"); r < 0 || r > e || e > w {
		t.Fatalf("want east released, then its CIB revoked, then west's: %s", st)
	}
	if !g.leaseEnd().IsZero() {
		t.Fatalf("east's guard still has a lease until %v after the revoke", g.leaseEnd())
	}

	// A failing check: east does not take the ticket.
	g.failWith(errors.New("bad data"))
	if r := l.ask(0, CmdGrant); len(r) == 0 || r[len(r)-1].Result == 0 {
		t.Fatalf("grant at east with its check failing: %+v, want a failure", r)
	}
	if east.granted() || strings.Count(st.String(), "east acquired") != 1 {
		t.Fatalf("east took the ticket with its check failing: %s", st)
	}

	// East leads; its check begins to fail: it steps down at its next
	// renewal, released before its CIB is revoked.
	g.failWith(nil)
	if r := l.ask(0, CmdGrant); len(r) == 0 || r[len(r)-1].Result != 0 {
		t.Fatalf("grant at east: %+v", r)
	}
	testenv.Eventually(t, 10*time.Second, eastGranted)
	g.failWith(errors.New("bad data"))
	testenv.Eventually(t, 10*time.Second, func() error {
		if east.granted() || strings.Count(st.String(), "east released") != 2 {
			return fmt.Errorf("east still holds the ticket with its check failing: %s", st)
		}
		return nil
	})
}
