// Package alerts runs the operator's alert hooks, as Pacemaker's alert
// agents do: on each event of the member's timeline (a ticket acquired,
// lost or moved, a split brain, a replica's state, a health check) a
// program runs with the details in its environment and as JSON on its
// standard input, or a webhook gets the JSON. Each hook follows the
// timeline with its own cursor, in order, retried with backoff; it never
// blocks the ticket loop (which only appends to the timeline), and a hook
// that falls too far behind is told how many events it missed.
package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Kinds are the event kinds a hook may ask for: the ticket's, and those
// the site, the replicas and the DNS checks add.
var Kinds = []string{
	"acquired", "lost", "released", "revoked", "moved", "move aborted", "owner changed", "forced",
	"handler failed", "yielded", "synced", "escalated", "standby", "activate",
	"split brain", "writes discarded", "disk state", "promoted", "demoted", "health",
}

// Config is one [[alerts]] entry.
type Config struct {
	// Name labels the hook in logs and metrics.
	Name string `toml:"name"`
	// Program runs once per event (absolute path; no shell).
	Program string `toml:"program"`
	// URL gets each event as a JSON POST (http or https).
	URL string `toml:"url"`
	// Kinds selects the events (default: every kind).
	Kinds []string `toml:"kinds"`
	// Timeout bounds one delivery (default 10 s).
	Timeout confkit.Duration `toml:"timeout"`
	// Retries after a failed delivery, with backoff from 1 s doubling to
	// 1 min (default 5).
	Retries int `toml:"retries"`
}

// DefaultConfig returns an [[alerts]] entry's defaults: the loader decodes
// each entry onto it.
func DefaultConfig() Config {
	return Config{Timeout: confkit.Duration(10 * time.Second), Retries: 5}
}

// Validate checks the entry; base resolves a relative program.
func (c *Config) Validate(base string) []confkit.FieldError {
	var errs []confkit.FieldError
	bad := func(key, format string, args ...any) { errs = append(errs, confkit.Errorf(key, format, args...)) }
	if c.Name == "" {
		bad("name", "missing: name the hook (logs and metrics use it)")
	}
	switch {
	case (c.Program == "") == (c.URL == ""):
		bad("program", "set exactly one of program and url")
	case c.Program != "":
		if !filepath.IsAbs(c.Program) {
			c.Program = filepath.Join(base, c.Program)
		}
		st, err := os.Stat(c.Program)
		switch {
		case err != nil:
			bad("program", "%v", err)
		case !st.Mode().IsRegular() || st.Mode()&0o111 == 0:
			bad("program", "%s: not an executable file", c.Program)
		case st.Mode()&0o022 != 0:
			bad("program", "%s: writable by group or others (mode %v): anyone who can change it runs code as geoboothd", c.Program, st.Mode().Perm())
		}
	default:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url", "%q: want an http:// or https:// URL", c.URL)
		}
	}
	for _, k := range c.Kinds {
		if !slices.Contains(Kinds, k) {
			bad("kinds", "%q: not an event kind (%v)", k, Kinds)
		}
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if c.Retries < 0 {
		bad("retries", "must not be negative")
	}
	return errs
}

// Event is one entry of the member's timeline, as the API shows it.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Ticket string    `json:"ticket"`
	Kind   string    `json:"kind"`
	Term   uint64    `json:"term"`
	Owner  string    `json:"owner"`
	Reason string    `json:"reason"`
}

// Source is the member's timeline after seq, oldest first: the events,
// whether some after seq were dropped, and a channel closed at the next.
type Source func(seq uint64) ([]Event, bool, <-chan struct{})

// Message is what a hook gets: the event and the member it happened at.
type Message struct {
	Member string `json:"member"`
	Event
}

// Hooks runs the configured hooks.
type Hooks struct {
	member string
	src    Source
	log    *slog.Logger
	sent   *prometheus.CounterVec
	missed *prometheus.CounterVec
	// backoff is the first wait after a failure (tests shorten it).
	backoff time.Duration

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	cfgs   []Config
}

// New prepares the hooks of member; Run starts them.
func New(member string, cfgs []Config, src Source, log *slog.Logger, reg prometheus.Registerer) *Hooks {
	h := &Hooks{member: member, src: src, log: log, cfgs: cfgs, backoff: time.Second,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_alerts_deliveries_total",
			Help: "Alert hook deliveries, by hook and result: ok, retry (failed, will try again), failed (given up)."}, []string{"alert", "result"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_alerts_missed_events_total",
			Help: "Events a hook never got: it fell behind the member's timeline (only the most recent events are kept)."}, []string{"alert"})}
	reg.MustRegister(h.sent, h.missed)
	return h
}

// Run delivers events until ctx ends.
func (h *Hooks) Run(ctx context.Context) error {
	h.mu.Lock()
	h.ctx = ctx
	h.startLocked(0)
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.wg.Wait()
	h.mu.Unlock()
	return nil
}

// Set replaces the hooks (a reload): the old ones stop after the delivery
// under way, the new ones start with the next event.
func (h *Hooks) Set(cfgs []Config) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfgs = cfgs
	if h.ctx == nil {
		return
	}
	// The new hooks take the events after those already in the timeline
	// now; events that arrive while the old ones stop are theirs.
	evs, _, _ := h.src(0)
	var last uint64
	if len(evs) > 0 {
		last = evs[len(evs)-1].Seq
	}
	h.cancel()
	h.wg.Wait()
	h.startLocked(last)
}

// startLocked starts a worker per hook, following events after cursor.
func (h *Hooks) startLocked(cursor uint64) {
	ctx, cancel := context.WithCancel(h.ctx)
	h.cancel = cancel
	for _, c := range h.cfgs {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.follow(ctx, c, cursor)
		}()
	}
}

// follow delivers c's events in order.
func (h *Hooks) follow(ctx context.Context, c Config, cursor uint64) {
	for {
		evs, gap, changed := h.src(cursor)
		if gap {
			n := evs[0].Seq - cursor - 1
			h.missed.WithLabelValues(c.Name).Add(float64(n))
			h.log.Warn("alert hook fell behind: events missed", "alert", c.Name, "missed", n)
		}
		for _, e := range evs {
			cursor = e.Seq
			if len(c.Kinds) > 0 && !slices.Contains(c.Kinds, e.Kind) {
				continue
			}
			if !h.deliver(ctx, c, e) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// deliver sends one event, retrying with backoff; false when ctx ended.
func (h *Hooks) deliver(ctx context.Context, c Config, e Event) bool {
	wait := h.backoff
	for attempt := 0; ; attempt++ {
		err := h.once(ctx, c, e)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			h.sent.WithLabelValues(c.Name, "ok").Inc()
			return true
		}
		if attempt >= c.Retries {
			h.sent.WithLabelValues(c.Name, "failed").Inc()
			h.log.Error("alert hook failed; event given up", "alert", c.Name, "event", e.Kind, "seq", e.Seq, "attempts", attempt+1, "err", err)
			return true
		}
		h.sent.WithLabelValues(c.Name, "retry").Inc()
		h.log.Warn("alert hook failed; retrying", "alert", c.Name, "event", e.Kind, "seq", e.Seq, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// once delivers e to c one time.
func (h *Hooks) once(ctx context.Context, c Config, e Event) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.D())
	defer cancel()
	body, err := json.Marshal(Message{Member: h.member, Event: e})
	if err != nil {
		return err
	}
	if c.Program != "" {
		cmd := exec.CommandContext(ctx, c.Program)
		cmd.Env = append(os.Environ(), Env(h.member, e)...)
		cmd.Stdin = bytes.NewReader(body)
		cmd.WaitDelay = time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %.200s", c.Program, err, out)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", c.URL, resp.Status)
	}
	return nil
}

// Env is the environment a hook program gets for e.
func Env(member string, e Event) []string {
	return []string{
		"GEOBOOTH_MEMBER=" + member,
		"GEOBOOTH_EVENT=" + e.Kind,
		"GEOBOOTH_TICKET=" + e.Ticket,
		"GEOBOOTH_TERM=" + strconv.FormatUint(e.Term, 10),
		"GEOBOOTH_OWNER=" + e.Owner,
		"GEOBOOTH_REASON=" + e.Reason,
		"GEOBOOTH_SEQ=" + strconv.FormatUint(e.Seq, 10),
		"GEOBOOTH_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
	}
}
