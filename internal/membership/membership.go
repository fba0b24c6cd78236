// Package membership wraps hashicorp/serf for geoboothd: who the members
// are and whether they seem alive (shown by `ticketctl peers` and the
// dashboard), tags for role, API address, version and config digest, and
// small soft data broadcast between members (DNS health reports).
//
// Serf is eventually consistent and its failure detection, on the WAN
// profile, takes tens of seconds: it informs, it never decides ownership
// (the ticket quorum does). The pool is encrypted with the keys of the
// keyring file; an unencrypted pool must be asked for explicitly.
package membership

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Config is the [serf] section of a daemon configuration.
type Config struct {
	// Bind is host:port for serf; default: the member's serf address in
	// the cluster section.
	Bind string `toml:"bind"`
	// Advertise, when set, is the address others should use.
	Advertise string `toml:"advertise"`
	// KeyringFile holds serf's keyring: a JSON list of base64 AES keys (16,
	// 24 or 32 bytes), the first one primary (ticketctl keygen -serf).
	KeyringFile string `toml:"keyring_file"`
	// Insecure allows an unencrypted pool (not recommended).
	Insecure bool `toml:"insecure"`
	// Profile: wan (default, as between data centres), lan, or local (short
	// timings for loopback tests).
	Profile string `toml:"profile"`
	// RejoinInterval is how often to try to join the others until one
	// answers.
	RejoinInterval confkit.Duration `toml:"rejoin_interval"`
}

// Default returns the section's defaults.
func Default() Config {
	return Config{Profile: "wan", RejoinInterval: confkit.Duration(5 * time.Second)}
}

// Validate checks the section.
func (c *Config) Validate() []confkit.FieldError {
	var errs []confkit.FieldError
	switch c.Profile {
	case "", "wan", "lan", "local":
	default:
		errs = append(errs, confkit.Errorf("profile", "%q: want wan, lan or local", c.Profile))
	}
	if c.KeyringFile == "" && !c.Insecure {
		errs = append(errs, confkit.Errorf("keyring_file", "missing: the pool is encrypted with it (ticketctl keygen -serf FILE makes one; insecure = true runs unencrypted)"))
	}
	for k, a := range map[string]string{"bind": c.Bind, "advertise": c.Advertise} {
		if a != "" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, confkit.Errorf(k, "%v", err))
			}
		}
	}
	return errs
}

// LoadKeyring reads a keyring file: a JSON list of base64 keys.
func LoadKeyring(path string) ([][]byte, error) {
	b, err := confkit.ReadSecret(path)
	if err != nil {
		return nil, fmt.Errorf("serf keyring: %w", err)
	}
	var enc []string
	if err := json.Unmarshal(b, &enc); err != nil {
		return nil, fmt.Errorf("serf keyring %s: want a JSON list of base64 keys: %w", path, err)
	}
	if len(enc) == 0 {
		return nil, fmt.Errorf("serf keyring %s: no keys", path)
	}
	keys := make([][]byte, len(enc))
	for i, e := range enc {
		k, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			return nil, fmt.Errorf("serf keyring %s: key %d: %w", path, i, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("serf keyring %s: key %d has %d bytes, want 16, 24 or 32", path, i, n)
		}
		keys[i] = k
	}
	return keys, nil
}

// Member is one member as serf sees it.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	Status string            `json:"status"`
	Tags   map[string]string `json:"tags"`
}

// Membership is a running serf pool member.
type Membership struct {
	cfg    Config
	serf   *serf.Serf
	events chan serf.Event
	join   []string
	log    *slog.Logger
	met    *metrics

	mu   sync.Mutex
	subs map[string][]func(from string, payload []byte)
}

// New joins nothing yet: it creates the local serf member (binding its
// sockets). Run joins the others and serves until its context ends.
func New(cfg Config, nodeName, bind string, join []string, tags map[string]string, logger *slog.Logger, reg prometheus.Registerer) (*Membership, error) {
	if cfg.Bind != "" {
		bind = cfg.Bind
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("serf bind %q: %w", bind, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("serf bind %q: %w", bind, err)
	}
	var ml *memberlist.Config
	switch cfg.Profile {
	case "lan":
		ml = memberlist.DefaultLANConfig()
	case "local":
		ml = memberlist.DefaultLocalConfig()
		ml.ProbeInterval, ml.ProbeTimeout = 200*time.Millisecond, 100*time.Millisecond
		ml.GossipInterval, ml.SuspicionMult = 50*time.Millisecond, 2
		ml.PushPullInterval = 2 * time.Second
	default:
		ml = memberlist.DefaultWANConfig()
	}
	ml.BindAddr, ml.BindPort = host, p
	ml.AdvertiseAddr, ml.AdvertisePort = host, p
	if cfg.Advertise != "" {
		ah, ap, _ := net.SplitHostPort(cfg.Advertise)
		ml.AdvertiseAddr = ah
		ml.AdvertisePort, _ = strconv.Atoi(ap)
	}
	ml.Logger = log.New(newLevelWriter(logger.With("component", "memberlist")), "", 0)
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = nodeName
	sc.Tags = tags
	sc.MemberlistConfig = ml
	sc.Logger = log.New(newLevelWriter(logger.With("component", "serf")), "", 0)
	sc.UserEventSizeLimit = 4096
	sc.LeavePropagateDelay = 100 * time.Millisecond
	events := make(chan serf.Event, 512)
	sc.EventCh = events
	if !cfg.Insecure {
		keys, err := LoadKeyring(cfg.KeyringFile)
		if err != nil {
			return nil, err
		}
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("serf keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
		sc.KeyringFile = cfg.KeyringFile
	}
	held, err := newHeldTransport(host, p, ml.Logger)
	if err != nil {
		return nil, err
	}
	ml.Transport = held
	s, err := serf.Create(sc)
	if err != nil {
		_ = held.Shutdown()
		return nil, fmt.Errorf("start serf on %s: %w", bind, err)
	}
	held.open()
	m := &Membership{cfg: cfg, serf: s, events: events, join: join, log: logger, subs: map[string][]func(string, []byte){}}
	m.met = newMetrics(reg, m)
	return m, nil
}

// leaveWait bounds the graceful leave at shutdown. A leave only changes
// how the others show this member (left rather than failed); a restart of
// a ticket's owner must be quick, since its lease runs on meanwhile.
const leaveWait = time.Second

// Run joins the other members (retrying until one answers), dispatches
// serf's events, and on the end of ctx leaves the pool and shuts down.
func (m *Membership) Run(ctx context.Context) error {
	go m.joinLoop(ctx)
	for {
		select {
		case <-ctx.Done():
			done := make(chan struct{})
			go func() {
				if err := m.serf.Leave(); err != nil {
					m.log.Warn("leaving the serf pool", "err", err)
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(leaveWait):
			}
			return m.serf.Shutdown()
		case e := <-m.events:
			m.handle(e)
		}
	}
}

func (m *Membership) joinLoop(ctx context.Context) {
	wait := m.cfg.RejoinInterval.D()
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for {
		if len(m.join) == 0 {
			return
		}
		n, err := m.serf.Join(m.join, true)
		if n > 0 {
			m.log.Info("joined the serf pool", "contacted", n)
			return
		}
		m.log.Debug("no member answered yet; will retry", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *Membership) handle(e serf.Event) {
	switch e := e.(type) {
	case serf.MemberEvent:
		m.met.events.WithLabelValues(e.EventType().String()).Inc()
		for _, mb := range e.Members {
			m.log.Info("member "+strings.TrimPrefix(e.EventType().String(), "member-"), "peer", mb.Name, "addr", mb.Addr.String())
		}
	case serf.UserEvent:
		m.met.events.WithLabelValues("user").Inc()
		name, ok := strings.CutPrefix(e.Name, eventPrefix)
		if !ok {
			return
		}
		from, payload, err := openEnvelope(e.Payload)
		if err != nil {
			m.met.dropped.Inc()
			m.log.Debug("dropped a malformed user event", "event", e.Name, "err", err)
			return
		}
		if !m.alive(from) {
			m.met.dropped.Inc()
			m.log.Debug("dropped a user event from a name not alive in the pool", "event", e.Name, "from", from)
			return
		}
		m.mu.Lock()
		subs := m.subs[name]
		m.mu.Unlock()
		for _, fn := range subs {
			fn(from, payload)
		}
	}
}

// alive reports whether name is a live member of the serf pool: an event
// naming a sender that is not cannot be from it.
func (m *Membership) alive(name string) bool {
	for _, mb := range m.serf.Members() {
		if mb.Name == name {
			return mb.Status == serf.StatusAlive
		}
	}
	return false
}

const eventPrefix = "geobooth:"

// Subscribe calls fn for every user event name broadcast by any member
// (this one included). fn runs on the event goroutine and must not block.
func (m *Membership) Subscribe(name string, fn func(from string, payload []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[name] = append(m.subs[name], fn)
}

// Broadcast sends payload to every member as user event name. Delivery is
// eventual and may repeat; events do not say who sent them, so the
// envelope does.
func (m *Membership) Broadcast(name string, payload []byte) error {
	env, err := sealEnvelope(m.serf.LocalMember().Name, payload)
	if err != nil {
		return err
	}
	if err := m.serf.UserEvent(eventPrefix+name, env, false); err != nil {
		return fmt.Errorf("broadcast %s: %w", name, err)
	}
	return nil
}

// sealEnvelope prefixes the sender's name (one length byte).
func sealEnvelope(from string, payload []byte) ([]byte, error) {
	if len(from) == 0 || len(from) > 255 {
		return nil, fmt.Errorf("sender name of %d bytes", len(from))
	}
	out := make([]byte, 0, 1+len(from)+len(payload))
	out = append(out, byte(len(from)))
	out = append(out, from...)
	return append(out, payload...), nil
}

var errEnvelope = errors.New("malformed envelope")

func openEnvelope(b []byte) (string, []byte, error) {
	if len(b) < 1 || b[0] == 0 || len(b) < 1+int(b[0]) {
		return "", nil, errEnvelope
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}

// Members lists the pool's members.
func (m *Membership) Members() []Member {
	var out []Member
	for _, mb := range m.serf.Members() {
		out = append(out, Member{Name: mb.Name, Addr: net.JoinHostPort(mb.Addr.String(), strconv.Itoa(int(mb.Port))),
			Status: mb.Status.String(), Tags: mb.Tags})
	}
	return out
}

// Name names the service in the daemon's errors.
func (m *Membership) Name() string { return "membership" }

// SetTags replaces the local member's tags and gossips them.
func (m *Membership) SetTags(tags map[string]string) error { return m.serf.SetTags(tags) }

// KeyManager gives access to key rotation (install, use, remove, list).
func (m *Membership) KeyManager() *serf.KeyManager { return m.serf.KeyManager() }

// levelWriter turns serf's and memberlist's "[LEVEL] text" lines into slog
// records at that level.
// levelWriter turns serf's and memberlist's log lines into slog records.
// Warnings and errors of one kind (a stranger's garbage makes one per
// datagram) are limited to logBurst per logWindow; how many were left out
// is logged when the next one comes after the window.
type levelWriter struct {
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	start         time.Time
	n, suppressed int
}

const (
	logWindow   = 10 * time.Second
	logBurst    = 5
	maxLogKinds = 64
)

func newLevelWriter(log *slog.Logger) *levelWriter {
	return &levelWriter{log: log, now: time.Now, kinds: map[string]*logKind{}}
}

func (w *levelWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	for prefix, l := range map[string]slog.Level{"[ERR]": slog.LevelError, "[ERROR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[INFO]": slog.LevelDebug} {
		if strings.HasPrefix(line, prefix) {
			level = l
			line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	if level >= slog.LevelWarn {
		ok, left := w.allow(line)
		if !ok {
			return len(p), nil
		}
		if left > 0 {
			w.log.Log(context.Background(), level, line, "similar_lines_left_out", left)
			return len(p), nil
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

// allow reports whether a line of this kind may be logged now, and how
// many of its kind were left out before it.
func (w *levelWriter) allow(line string) (bool, int) {
	key := strings.TrimPrefix(strings.TrimPrefix(line, "memberlist: "), "serf: ")
	if i := strings.IndexByte(key, ':'); i >= 0 {
		key = key[:i]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	k := w.kinds[key]
	if k == nil {
		if len(w.kinds) >= maxLogKinds {
			key = "other"
			k = w.kinds[key]
		}
		if k == nil {
			k = &logKind{start: now}
			w.kinds[key] = k
		}
	}
	if now.Sub(k.start) >= logWindow {
		left := k.suppressed
		*k = logKind{start: now, n: 1}
		return true, left
	}
	if k.n < logBurst {
		k.n++
		return true, 0
	}
	k.suppressed++
	return false, 0
}
