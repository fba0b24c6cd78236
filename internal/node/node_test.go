package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
	"github.com/geobooth/geobooth/ticket"
)

// fakeTransport is the network of a node under test: what it sends is
// recorded; the test plays the other members by injecting messages.
type fakeTransport struct {
	mu   sync.Mutex
	sent []ticket.Message
	in   chan ticket.Message
}

func newFakeTransport() *fakeTransport { return &fakeTransport{in: make(chan ticket.Message, 64)} }

func (f *fakeTransport) Send(ms []ticket.Message) {
	f.mu.Lock()
	f.sent = append(f.sent, ms...)
	f.mu.Unlock()
}
func (f *fakeTransport) Recv() <-chan ticket.Message { return f.in }
func (f *fakeTransport) Peer(int) PeerInfo           { return PeerInfo{} }
func (f *fakeTransport) Close() error                { return nil }
func (f *fakeTransport) Dropped() uint64             { return 0 }

// take returns and forgets what was sent.
func (f *fakeTransport) take() []ticket.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sent
	f.sent = nil
	return out
}

// hungCIB is a site whose grants never return (a hung CIB): only their
// context ends them.
type hungCIB struct {
	mu      sync.Mutex
	grants  int
	stopped []time.Time
}

func (h *hungCIB) Grant(ctx context.Context, _ string, _ Grant) error {
	h.mu.Lock()
	h.grants++
	h.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}
func (h *hungCIB) Renewed(ctx context.Context, _ string, _ uint64, _ time.Time) error {
	<-ctx.Done()
	return ctx.Err()
}
func (h *hungCIB) Stop(context.Context, string) error {
	h.mu.Lock()
	h.stopped = append(h.stopped, time.Now())
	h.mu.Unlock()
	return nil
}
func (h *hungCIB) Escalate(string, string) {}

func (h *hungCIB) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.grants, len(h.stopped)
}

// testNode makes a three-member configuration with short timings and
// returns east's node on a fake transport.
func testNode(t *testing.T, res Resources) (*Node, *fakeTransport) {
	t.Helper()
	dir := t.TempDir()
	tc := ticket.Config{Name: "web", Mode: ticket.Auto, Expire: time.Second, RenewalFreq: 400 * time.Millisecond,
		Timeout: 50 * time.Millisecond, Retries: 3, StopTimeout: 100 * time.Millisecond,
		MaxClockDrift: ticket.DefaultMaxClockDrift}.Resolved()
	cfg := Config{ClusterName: "test", Self: 0, StateDir: filepath.Join(dir, "state"), Tickets: []ticket.Config{tc},
		Key: []byte("0123456789abcdef0123456789abcdef"), MaxTimeSkew: 10 * time.Minute, MaxElections: 256,
		Members: []Member{{Name: "east", Role: ticket.Site, Address: "127.0.0.1:1"},
			{Name: "west", Role: ticket.Site, Address: "127.0.0.1:2"},
			{Name: "arbitrator", Role: ticket.Arbitrator, Address: "127.0.0.1:3"}}}
	if errs := tc.Validate(len(cfg.Members)); len(errs) > 0 {
		t.Fatal(errs)
	}
	tr := newFakeTransport()
	n, err := New(Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Transport: tr, Site: Site{Resources: res,
		ResourceTimeout: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	return n, tr
}

// answerVotes plays west: every vote request east sends is granted.
func answerVotes(ctx context.Context, tr *fakeTransport) {
	for ctx.Err() == nil {
		for _, m := range tr.take() {
			if m.To == 1 && (m.Type == ticket.MsgVoteReq || m.Type == ticket.MsgRenew) {
				r := ticket.Message{Type: ticket.MsgVoteResp, Ticket: m.Ticket, Term: m.Term, From: 1, To: 0, Round: m.Round,
					OK: true, Site: ticket.None, Acked: 0}
				if m.Type == ticket.MsgRenew {
					r.Type = ticket.MsgRenewAck
				}
				tr.in <- r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The loop never waits for a resource call: with the CIB hanging on the
// grant, commands are still answered, and a stop cancels the hung grant
// and runs at once.
func TestLoopKeepsGoingWhileTheCIBHangs(t *testing.T) {
	cib := &hungCIB{}
	n, tr := testNode(t, cib)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	go answerVotes(ctx, tr)
	do := func(c ticket.Command) ticket.Reply {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		r, err := n.Do(cctx, "web", c)
		if err != nil {
			t.Fatalf("%v: %v (the loop is blocked?)", c.Op, err)
		}
		return r
	}
	do(ticket.Command{Op: ticket.OpGrant, Site: 0})
	testenv.Eventually(t, 10*time.Second, func() error {
		if g, _ := cib.counts(); g == 0 || !n.View("web").HeldLocally {
			return fmt.Errorf("grants %d, held %v", g, n.View("web").HeldLocally)
		}
		return nil
	})
	// The grant hangs. The loop still answers.
	for i := 0; i < 5; i++ {
		if r := do(ticket.Command{Op: ticket.OpAttrSet, Attr: "k", Value: fmt.Sprint(i)}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	revoked := time.Now()
	if r := do(ticket.Command{Op: ticket.OpRevoke}); r.Err != nil {
		t.Fatal(r.Err)
	}
	testenv.Eventually(t, 2*time.Second, func() error {
		if _, s := cib.counts(); s == 0 {
			return fmt.Errorf("no stop yet")
		}
		return nil
	})
	cib.mu.Lock()
	took := cib.stopped[0].Sub(revoked)
	cib.mu.Unlock()
	if took > 500*time.Millisecond {
		t.Fatalf("the stop ran %v after the revoke, behind the hung grant", took)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Alive answers only when the loop itself runs: not before Run has booted,
// not while the loop is stuck, and an error once it has ended. The
// systemd watchdog is fed from it.
func TestAliveFollowsTheLoop(t *testing.T) {
	n, _ := testNode(t, nil)
	alive := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return n.Alive(ctx)
	}
	if err := alive(50 * time.Millisecond); err == nil {
		t.Fatal("alive before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	if err := alive(5 * time.Second); err != nil {
		t.Fatalf("not alive once running: %v", err)
	}
	unstick := make(chan struct{})
	n.input(func(time.Duration) { <-unstick })
	if err := alive(100 * time.Millisecond); err == nil {
		t.Fatal("alive while the loop is stuck")
	}
	close(unstick)
	if err := alive(5 * time.Second); err != nil {
		t.Fatalf("not alive once unstuck: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := alive(5 * time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after Run ended: %v, want the loop's end", err)
	}
}

// The event ring numbers events, returns those after a cursor oldest
// first, says when some were dropped, and wakes a follower at the next.
func TestEventRingCursor(t *testing.T) {
	r := newEventRing(3, time.Unix(1000, 0))
	start := r.seq
	if evs, gap, _ := r.since(0); len(evs) != 0 || gap {
		t.Fatalf("empty ring: %v %v", evs, gap)
	}
	_, _, changed := r.since(start)
	r.add(Event{Kind: "a"})
	select {
	case <-changed:
	default:
		t.Fatal("a follower was not woken")
	}
	r.add(Event{Kind: "b"})
	evs, gap, _ := r.since(start)
	if len(evs) != 2 || evs[0].Kind != "a" || evs[1].Kind != "b" || gap || evs[0].Seq != start+1 {
		t.Fatalf("since start: %+v gap %v", evs, gap)
	}
	if evs, _, _ := r.since(evs[0].Seq); len(evs) != 1 || evs[0].Kind != "b" {
		t.Fatalf("since a: %+v", evs)
	}
	r.add(Event{Kind: "c"})
	r.add(Event{Kind: "d"}) // a is dropped
	evs, gap, _ = r.since(start)
	if !gap || len(evs) != 3 || evs[0].Kind != "b" {
		t.Fatalf("after the ring wrapped: %+v gap %v", evs, gap)
	}
	if _, gap, _ := r.since(start + 1); gap {
		t.Fatal("a gap reported although nothing after the cursor was dropped")
	}
	// A later run numbers above this one.
	if r2 := newEventRing(3, time.Unix(1001, 0)); r2.seq <= r.seq {
		t.Fatalf("a restart numbers from %d, below %d", r2.seq, r.seq)
	}
}
