package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/handover"
	"github.com/geobooth/geobooth/kit/testenv"
	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// grantingCIB is a site whose resource calls succeed; it records the stops.
type grantingCIB struct {
	mu     sync.Mutex
	grants int
	stops  int
}

func (g *grantingCIB) Grant(context.Context, string, Grant) error {
	g.mu.Lock()
	g.grants++
	g.mu.Unlock()
	return nil
}
func (g *grantingCIB) Renewed(context.Context, string, uint64, time.Time) error { return nil }
func (g *grantingCIB) Stop(context.Context, string) error {
	g.mu.Lock()
	g.stops++
	g.mu.Unlock()
	return nil
}
func (g *grantingCIB) Escalate(string, string) {}

func (g *grantingCIB) counts() (int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.grants, g.stops
}

// boothMember is east of a cluster cut over from Booth (members told apart
// by address, as Booth's are), with web granted in its CIB until 3 s from
// now, its state folder holding f when given.
func boothMember(t *testing.T, f *handover.File, cib Resources) (*Node, *fakeTransport, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if f != nil {
		if err := handover.Write(dir, *f); err != nil {
			t.Fatal(err)
		}
	}
	tc := ticket.Config{Name: "web", Mode: ticket.Auto, Expire: 4 * time.Second, RenewalFreq: time.Second,
		Timeout: 50 * time.Millisecond, Retries: 3, StopTimeout: 100 * time.Millisecond,
		MaxClockDrift: ticket.DefaultMaxClockDrift}.Resolved()
	cfg := Config{ClusterName: "test", Self: 0, StateDir: dir, Tickets: []ticket.Config{tc},
		Key: []byte("0123456789abcdef0123456789abcdef"), MaxTimeSkew: 10 * time.Minute, MaxElections: 256,
		Members: []Member{{Name: "site1", Role: ticket.Site, Address: "192.0.2.1:9929"},
			{Name: "site2", Role: ticket.Site, Address: "192.0.2.2:9929"},
			{Name: "arbitrator", Role: ticket.Arbitrator, Address: "192.0.2.3:9929"}}}
	tr := newFakeTransport()
	n, err := New(Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Transport: tr,
		Site: Site{Resources: cib, ResourceTimeout: time.Hour, Running: map[string]time.Time{"web": time.Now().Add(3 * time.Second)}}})
	if err != nil {
		t.Fatal(err)
	}
	return n, tr, dir
}

func eastHandover(complete bool, acked string) *handover.File {
	east := netip.MustParseAddr("192.0.2.1")
	h := handover.Ticket{Name: "web"}
	if complete {
		h = handover.Ticket{Name: "web", Term: 7, Owner: east, Granted: true, Binding: 6 * time.Second}
		if acked != "" {
			h.Acked = netip.MustParseAddr(acked)
		}
	}
	return &handover.File{Self: east, Written: time.Now(), Complete: complete, Tickets: []handover.Ticket{h}}
}

// run starts n and plays west, granting every request east sends; it
// returns when east first asked for votes (zero: not within d).
func runAndAsk(t *testing.T, n *Node, tr *fakeTransport, d time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	start := time.Now()
	go func() { done <- n.Run(ctx) }()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range tr.take() {
			if m.To == 1 && m.Type == ticket.MsgVoteReq {
				go answerVotes(ctx, tr)
				tr.in <- ticket.Message{Type: ticket.MsgVoteResp, Ticket: m.Ticket, Term: m.Term, From: 1, To: 0, Round: m.Round,
					OK: true, Site: ticket.None, Acked: 0}
				return time.Since(start)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// The holder's handover makes it ask for the ticket at once at its first
// start on geobooth's protocol, keep the resources its CIB runs, and hold
// the ticket; the handover is its stored state, and is marked imported.
func TestTheBoothHolderKeepsItsTicketAcrossTheCutOver(t *testing.T) {
	cib := &grantingCIB{}
	n, tr, dir := boothMember(t, eastHandover(true, "192.0.2.1"), cib)
	if at := runAndAsk(t, n, tr, 3*time.Second); at == 0 {
		t.Fatal("east did not ask for the ticket within 3 s (its restart window is 6 s): it abstained as a member without state")
	}
	testenv.Eventually(t, 3*time.Second, func() error {
		if g, _ := cib.counts(); !n.View("web").HeldLocally || g == 0 {
			return fmt.Errorf("east holds %v, CIB grants %d", n.View("web").HeldLocally, g)
		}
		return nil
	})
	if _, stops := cib.counts(); stops != 0 {
		t.Fatalf("east stopped its resources %d times across the cut-over", stops)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tickets", "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Record engine.Record }
	if err := json.Unmarshal(b, &st); err != nil || st.Record.Term < 7 {
		t.Fatalf("stored state %s: %v", b, err)
	}
	if _, err := os.Stat(handover.Path(dir) + ".imported"); err != nil {
		t.Fatalf("the handover was not marked imported: %v", err)
	}
	if f, err := handover.Read(dir); f != nil || err != nil {
		t.Fatalf("a handover is still there to read: %+v %v", f, err)
	}
}

// Without a handover naming it (none, or an incomplete one over older
// state of its own), east abstains for its restart window and stops what
// its CIB runs at once: it cannot tell that it held the ticket. With one
// that names it the owner but nobody acked (its last promise unknown), it
// abstains too, and keeps the resources only until the CIB's lease ends.
func TestWithoutACleanHandoverTheCutOverAbstains(t *testing.T) {
	for _, c := range []struct {
		name string
		f    *handover.File
		old  bool
		// stopBy: the resources are stopped within this.
		stopBy time.Duration
	}{{"no handover", nil, false, time.Second}, {"incomplete over old state", eastHandover(false, ""), true, time.Second},
		{"nobody acked", eastHandover(true, ""), false, 4 * time.Second}} {
		t.Run(c.name, func(t *testing.T) {
			cib := &grantingCIB{}
			n, tr, dir := boothMember(t, c.f, cib)
			if c.old {
				// State from an earlier run on geobooth's protocol, before
				// the Booth run that did not end cleanly.
				rec := engine.Record{Ticket: "web", Term: 3, Acked: "site1", Owner: "site1", Managed: true, Mode: "auto",
					Members: []string{"site1", "site2", "arbitrator"}}
				if failed := n.store.saveAll([]engine.Record{rec}); len(failed) > 0 {
					t.Fatal(failed)
				}
			}
			if at := runAndAsk(t, n, tr, time.Second); at != 0 {
				t.Fatalf("east asked for the ticket %v after its start, within its restart window", at)
			}
			testenv.Eventually(t, c.stopBy, func() error {
				if _, stops := cib.counts(); stops == 0 {
					return fmt.Errorf("east's resources not stopped")
				}
				return nil
			})
			if c.old {
				if _, err := os.Stat(filepath.Join(dir, "tickets", "web.json")); err == nil {
					t.Fatal("the state older than the Booth run is still stored")
				}
			}
		})
	}
}

// A handover left by another member is refused, with what to do.
func TestAHandoverOfAnotherMemberIsRefused(t *testing.T) {
	f := eastHandover(true, "192.0.2.1")
	f.Self = netip.MustParseAddr("192.0.2.2")
	n, _, _ := boothMember(t, f, &grantingCIB{})
	err := n.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not this member") || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("Run = %v", err)
	}
}
