package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/kit/testenv"
)

// timeline is a settable event source.
type timeline struct {
	mu      sync.Mutex
	evs     []Event
	keep    int
	changed chan struct{}
}

func newTimeline(keep int) *timeline { return &timeline{keep: keep, changed: make(chan struct{})} }

func (tl *timeline) add(kind, ticket string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	seq := uint64(len(tl.evs)) + 100
	if len(tl.evs) > 0 {
		seq = tl.evs[len(tl.evs)-1].Seq + 1
	}
	tl.evs = append(tl.evs, Event{Seq: seq, Kind: kind, Ticket: ticket, Term: 7, Owner: "east", Reason: "because", Time: time.Unix(1, 0)})
	if len(tl.evs) > tl.keep {
		tl.evs = tl.evs[1:]
	}
	close(tl.changed)
	tl.changed = make(chan struct{})
}

func (tl *timeline) since(seq uint64) ([]Event, bool, <-chan struct{}) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []Event
	for _, e := range tl.evs {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	gap := seq != 0 && len(out) > 0 && out[0].Seq > seq+1
	return out, gap, tl.changed
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, h *Hooks) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func lines(p string) []string {
	b, _ := os.ReadFile(p)
	return strings.Fields(string(b))
}

// A program hook gets each selected event, in order, with the details in
// its environment and as JSON on stdin.
func TestProgramGetsSelectedEventsInOrder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	// The JSON is written before the line, so once the last line is there
	// the last JSON is too.
	prog := script(t, `read -r json; echo "$json" >`+out+`.json; echo "$GEOBOOTH_MEMBER/$GEOBOOTH_EVENT/$GEOBOOTH_TICKET/$GEOBOOTH_TERM/$GEOBOOTH_OWNER/$GEOBOOTH_SEQ" | tr ' ' _ >>`+out+"\n")
	cfg := DefaultConfig()
	cfg.Name, cfg.Program, cfg.Kinds, cfg.Retries = "rec", prog, []string{"acquired", "lost", "split brain"}, 0
	if errs := cfg.Validate("/"); len(errs) > 0 {
		t.Fatal(errs)
	}
	tl := newTimeline(100)
	tl.add("acquired", "web") // before Run: delivered too
	h := New("west", []Config{cfg}, tl.since, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	start(t, h)
	tl.add("owner changed", "web")
	tl.add("split brain", "web")
	tl.add("lost", "web")
	want := []string{"west/acquired/web/7/east/100", "west/split_brain/web/7/east/102", "west/lost/web/7/east/103"}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := lines(out); strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
	var m Message
	b, _ := os.ReadFile(out + ".json")
	if err := json.Unmarshal(b, &m); err != nil || m.Member != "west" || m.Kind != "lost" || m.Seq != 103 {
		t.Fatalf("stdin JSON %s: %v %+v", b, err, m)
	}
}

// A failing hook is retried with backoff, in order: the next event waits
// for the one before; after the retries it is given up and counted.
func TestFailingHookIsRetriedThenGivenUp(t *testing.T) {
	dir := t.TempDir()
	// Fails twice, then succeeds, for every event.
	prog := script(t, `n=$(cat `+dir+`/n 2>/dev/null || echo 0); n=$((n+1)); echo $n >`+dir+`/n
if [ $((n % 3)) -ne 0 ]; then exit 1; fi
echo $GEOBOOTH_SEQ >>`+dir+`/ok`+"\n")
	ok := DefaultConfig()
	ok.Name, ok.Program, ok.Retries = "flaky", prog, 2
	if errs := ok.Validate("/"); len(errs) > 0 {
		t.Fatal(errs)
	}
	never := DefaultConfig()
	never.Name, never.Program, never.Retries = "never", script(t, "exit 3\n"), 0
	if errs := never.Validate("/"); len(errs) > 0 {
		t.Fatal(errs)
	}
	tl := newTimeline(100)
	reg := prometheus.NewRegistry()
	h := New("east", []Config{ok, never}, tl.since, slog.New(slog.DiscardHandler), reg)
	h.backoff = 10 * time.Millisecond
	start(t, h)
	tl.add("acquired", "web")
	tl.add("lost", "web")
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := lines(dir + "/ok"); strings.Join(got, " ") != "100 101" {
			return fmt.Errorf("delivered %v", got)
		}
		if f := testutil.ToFloat64(h.sent.WithLabelValues("never", "failed")); f != 2 {
			return fmt.Errorf("never: %v given up", f)
		}
		return nil
	})
	if r := testutil.ToFloat64(h.sent.WithLabelValues("flaky", "retry")); r != 4 {
		t.Fatalf("flaky: %v retries, want 4", r)
	}
}

// A webhook gets the JSON; a hook that falls behind the kept events is
// told how many it missed.
func TestWebhookAndMissedEvents(t *testing.T) {
	var mu sync.Mutex
	var got []Message
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		var m Message
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Name, cfg.URL = "web", srv.URL
	if errs := cfg.Validate("/"); len(errs) > 0 {
		t.Fatal(errs)
	}
	tl := newTimeline(3)
	h := New("east", []Config{cfg}, tl.since, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	start(t, h)
	tl.add("acquired", "web") // 100, taken at once, held by the server
	<-arrived
	for i := 0; i < 5; i++ {
		tl.add("owner changed", "web") // 101..105: only 103..105 kept
	}
	close(release)
	testenv.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 4 || got[0].Seq != 100 || got[1].Seq != 103 || got[3].Seq != 105 || got[0].Member != "east" {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	if m := testutil.ToFloat64(h.missed.WithLabelValues("web")); m != 2 {
		t.Fatalf("missed %v, want 2 (101, 102)", m)
	}
}

func TestValidateRefusals(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("#!/bin/sh\n"), 0o700)
	os.Chmod(open, 0o777)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Program: "/bin/true"}, "name: missing"},
		{Config{Name: "a"}, "exactly one of program and url"},
		{Config{Name: "a", Program: "/bin/true", URL: "http://x"}, "exactly one"},
		{Config{Name: "a", Program: filepath.Join(dir, "nosuch")}, "no such file"},
		{Config{Name: "a", Program: plain}, "not an executable"},
		{Config{Name: "a", Program: open}, "writable by group or others"},
		{Config{Name: "a", URL: "ftp://x"}, "want an http"},
		{Config{Name: "a", URL: "http://x", Kinds: []string{"renewed"}}, `"renewed": not an event kind`},
		{Config{Name: "a", URL: "http://x", Retries: -1}, "retries: must not be negative"},
		{Config{Name: "a", URL: "http://x"}, "timeout: must be positive"},
	} {
		errs := c.cfg.Validate(dir)
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, errs, c.want)
		}
	}
}
