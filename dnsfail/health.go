package dnsfail

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/geobooth/geobooth/api"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

type hstate = api.HealthState

const (
	stateUnknown hstate = "unknown"
	stateUp      hstate = "up"
	stateDown    hstate = "down"
)

// reportStale: a vantage point's report older than this no longer counts.
const reportStale = 30 * time.Second

// health runs this member's checks and combines them with the other
// members' reports: a target is down when a quorum of the vantage points
// reporting says so, so one member's broken link does not move traffic.
type health struct {
	self string
	mu   sync.Mutex
	// local rise/fall state per check key.
	local map[string]*localCheck
	// reports per vantage point: key → state, and when it arrived.
	reports map[string]vantageReport
	// members: the vantage points whose reports count (the configured
	// members); a report from any other name is refused.
	members map[string]bool
	quorum  map[string]int
	changed func()
	met     *metrics
	// onFlip, when set, hears of each change of a local check's state.
	onFlip func(key string, from, to hstate, last string)
	// ctx is run's, once it runs: checks added later start at once.
	ctx context.Context
	wg  sync.WaitGroup
}

type vantageReport struct {
	At     time.Time
	States map[string]hstate
}

type localCheck struct {
	key        string
	probe      prober
	hc         HealthCheck
	state      hstate
	ok, failed int // consecutive
	last       string
	lastAt     time.Time
	cancel     context.CancelFunc // stops its loop (nil before run)
}

func newHealth(self string, members []string, met *metrics, changed func()) *health {
	h := &health{self: self, local: map[string]*localCheck{}, reports: map[string]vantageReport{}, quorum: map[string]int{},
		members: map[string]bool{}, changed: changed, met: met}
	for _, m := range members {
		h.members[m] = true
	}
	return h
}

// add registers a check (once per key); once run has started, its loop
// starts at once.
func (h *health) add(key string, hc HealthCheck) error {
	if key == "" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.local[key]; ok {
		return nil
	}
	p, err := parseCheck(checkURLOf(key))
	if err != nil {
		return err
	}
	if hp, ok := p.(*httpProbe); ok {
		hp.lo, hp.hi, _ = parseStatus(hc.Status)
		hp.match = hc.Match
		hp.host, hp.method, hp.headers, hp.body = hc.Host, hc.Method, hc.Headers, hc.Body
		if hp.method == "" {
			hp.method = http.MethodGet
		}
		// The server name is the service's (host), not the target
		// address the check connects to.
		hp.client = &http.Client{Timeout: time.Duration(hc.Timeout), Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: !hc.TLSVerify, ServerName: hc.Host},
			DisableKeepAlives: true},
			// A redirect is an answer: its status is judged, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	c := &localCheck{key: key, probe: p, hc: hc, state: stateUnknown}
	h.local[key] = c
	h.quorum[key] = hc.Quorum
	if h.ctx != nil {
		h.start(c)
	}
	return nil
}

// remove stops and forgets a check (a reload dropped it).
func (h *health) remove(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.local[key]; c != nil && c.cancel != nil {
		c.cancel()
	}
	delete(h.local, key)
	delete(h.quorum, key)
}

// checks returns the registered checks' keys and settings.
func (h *health) checks() map[string]HealthCheck {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]HealthCheck, len(h.local))
	for k, c := range h.local {
		out[k] = c.hc
	}
	return out
}

// start runs c's loop under run's context (h.mu held).
func (h *health) start(c *localCheck) {
	ctx, cancel := context.WithCancel(h.ctx)
	c.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.loop(ctx, c)
	}()
}

// run probes every check at its interval, with jitter, until ctx ends.
func (h *health) run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	for _, c := range h.local {
		h.start(c)
	}
	h.mu.Unlock()
	<-ctx.Done()
	h.wg.Wait()
}

func (h *health) loop(ctx context.Context, c *localCheck) {
	iv := time.Duration(c.hc.Interval)
	// Start at once (checks begin when the config loads), then spread
	// members over the interval.
	wait := time.Duration(rand.Int63n(int64(iv)/10 + 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		pctx, cancel := context.WithTimeout(ctx, time.Duration(c.hc.Timeout))
		err := c.probe.probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.record(c, err)
		// ±10% jitter so members do not probe in step.
		wait = iv + time.Duration(rand.Int63n(int64(iv)/5+1)) - iv/10
	}
}

func (h *health) record(c *localCheck, err error) {
	h.mu.Lock()
	before := c.state
	c.lastAt = time.Now()
	if err == nil {
		c.ok, c.failed, c.last = c.ok+1, 0, "ok"
		if c.ok >= c.hc.Rise {
			c.state = stateUp
		}
	} else {
		c.ok, c.failed, c.last = 0, c.failed+1, err.Error()
		if c.failed >= c.hc.Fall {
			c.state = stateDown
		}
	}
	flip, after, last := before != c.state, c.state, c.last
	h.mu.Unlock()
	if flip && h.onFlip != nil {
		h.onFlip(c.key, before, after, last)
	}
	result := "ok"
	if err != nil {
		result = "fail"
	}
	h.met.checks.WithLabelValues(result).Inc()
	if flip && h.changed != nil {
		h.changed()
	}
}

// own returns this member's states, for broadcasting.
func (h *health) own() map[string]hstate {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]hstate, len(h.local))
	for k, c := range h.local {
		out[k] = c.state
	}
	return out
}

// errNotMember: a health report claims a sender that is not another
// configured member.
var errNotMember = errors.New("the sender is not another configured member")

// receive records another member's report: one per member, of the checks
// this member runs too (every member has the same zones), so the state is
// bounded by the configuration whatever the senders claim.
func (h *health) receive(from string, states map[string]hstate, at time.Time) error {
	if from == h.self || !h.members[from] {
		return errNotMember
	}
	h.mu.Lock()
	prev := h.reports[from]
	if prev.States == nil || prev.At.Before(at.Add(-time.Second)) {
		// A report may come in several events: merge those close in time.
		prev = vantageReport{States: map[string]hstate{}}
	}
	for k, v := range states {
		if _, ok := h.local[k]; ok {
			prev.States[k] = v
		}
	}
	prev.At = at
	h.reports[from] = prev
	h.mu.Unlock()
	if h.changed != nil {
		h.changed()
	}
	return nil
}

// votes returns every vantage point's fresh state for key.
func (h *health) votes(key string, now time.Time) map[string]hstate {
	out := map[string]hstate{}
	if c, ok := h.local[key]; ok {
		out[h.self] = c.state
	}
	for v, r := range h.reports {
		if v == h.self || now.Sub(r.At) > reportStale {
			continue
		}
		if s, ok := r.States[key]; ok {
			out[v] = s
		}
	}
	return out
}

// state combines the vantage points: down when a quorum (default: a
// majority of those that know) says down, up when any of the others say
// up, unknown while nobody knows. An unchecked target ("") is up.
func (h *health) state(key string) hstate {
	if key == "" {
		return stateUp
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return combine(h.votes(key, time.Now()), h.quorum[key])
}

func combine(votes map[string]hstate, quorum int) hstate {
	up, down := 0, 0
	for _, s := range votes {
		switch s {
		case stateUp:
			up++
		case stateDown:
			down++
		}
	}
	known := up + down
	if known == 0 {
		return stateUnknown
	}
	q := quorum
	if q <= 0 {
		q = known/2 + 1
	}
	if down >= q {
		return stateDown
	}
	return stateUp
}

// healthReport is the serf payload: the sender's states by check key.
type healthReport struct {
	S map[string]hstate `json:"s"`
}

// encodeReports splits the states into payloads serf takes (user events
// are small).
func encodeReports(states map[string]hstate, limit int) [][]byte {
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][]byte
	cur := healthReport{S: map[string]hstate{}}
	flush := func() {
		if len(cur.S) > 0 {
			b, _ := json.Marshal(cur)
			out = append(out, b)
			cur = healthReport{S: map[string]hstate{}}
		}
	}
	for _, k := range keys {
		cur.S[k] = states[k]
		if b, _ := json.Marshal(cur); len(b) > limit && len(cur.S) > 1 {
			delete(cur.S, k)
			flush()
			cur.S[k] = states[k]
		}
	}
	flush()
	return out
}

// decodeReport parses a peer's payload; anything malformed is refused.
func decodeReport(b []byte) (map[string]hstate, error) {
	var r healthReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("health report: %w", err)
	}
	for k, v := range r.S {
		switch v {
		case stateUp, stateDown, stateUnknown:
		default:
			return nil, fmt.Errorf("health report: %q: state %q", k, v)
		}
	}
	return r.S, nil
}

// Probes.

type prober interface {
	probe(ctx context.Context) error
}

func parseCheck(s string) (prober, error) {
	u, err := checkURL(s)
	if err != nil {
		return nil, fmt.Errorf("check %q: %v", s, err)
	}
	switch u.Scheme {
	case "tcp":
		if u.Port() == "" {
			return nil, fmt.Errorf("check %q: a tcp check needs a port", s)
		}
		return tcpProbe{addr: u.Host}, nil
	case "http", "https":
		return &httpProbe{url: s}, nil
	case "smtp":
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "25")
		}
		return smtpProbe{addr: host}, nil
	case "icmp":
		if net.ParseIP(u.Hostname()) == nil {
			return nil, fmt.Errorf("check %q: an icmp check needs an IP address", s)
		}
		return icmpProbe{ip: net.ParseIP(u.Hostname())}, nil
	}
	return nil, fmt.Errorf("check %q: scheme %q: want tcp, http, https, smtp or icmp", s, u.Scheme)
}

type tcpProbe struct{ addr string }

func (p tcpProbe) probe(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	return c.Close()
}

type httpProbe struct {
	url    string
	lo, hi int
	match  string
	client *http.Client
	// host, when set, is the Host header (and the TLS server name);
	// method, headers and body make the request.
	host, method, body string
	headers            map[string]string
}

func (p *httpProbe) probe(ctx context.Context) error {
	var send io.Reader
	if p.body != "" {
		send = strings.NewReader(p.body)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, send)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "geobooth-health/1")
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	if p.host != "" {
		req.Host = p.host
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 5120))
	if resp.StatusCode < p.lo || resp.StatusCode > p.hi {
		return fmt.Errorf("status %d not in %d-%d", resp.StatusCode, p.lo, p.hi)
	}
	if p.match != "" && !strings.Contains(string(body), p.match) {
		return fmt.Errorf("%q not in the first 5120 bytes of the body", p.match)
	}
	return nil
}

type smtpProbe struct{ addr string }

func (p smtpProbe) probe(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	rd := bufio.NewReader(c)
	code, err := smtpReply(rd)
	if err != nil {
		return fmt.Errorf("banner: %w", err)
	}
	if code != 220 {
		return fmt.Errorf("banner %d, want 220", code)
	}
	if _, err := io.WriteString(c, "EHLO geobooth-health\r\n"); err != nil {
		return err
	}
	if code, err = smtpReply(rd); err != nil || code != 250 {
		return fmt.Errorf("EHLO: %d %v", code, err)
	}
	io.WriteString(c, "QUIT\r\n")
	return nil
}

// smtpReply reads one (possibly multi-line) SMTP reply.
func smtpReply(rd *bufio.Reader) (int, error) {
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 {
			return 0, fmt.Errorf("short reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, fmt.Errorf("reply %q", strings.TrimSpace(line))
		}
		if line[3] == ' ' || line[3] == '\r' || line[3] == '\n' {
			return code, nil
		}
	}
}

type icmpProbe struct{ ip net.IP }

// errNoICMP: neither an unprivileged ping socket nor a raw socket.
var errNoICMP = errors.New("icmp check: no ping socket (allow it with sysctl net.ipv4.ping_group_range) and no raw socket (needs root or CAP_NET_RAW)")

func (p icmpProbe) probe(ctx context.Context) error {
	if p.ip.To4() == nil {
		return errors.New("icmp check: IPv4 only")
	}
	network, addr := "udp4", net.Addr(&net.UDPAddr{IP: p.ip})
	c, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		if c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return errNoICMP
		}
		network, addr = "ip4", &net.IPAddr{IP: p.ip}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	id, seq := os.Getpid()&0xffff, rand.Intn(0xffff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("geobooth")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, addr); err != nil {
		return fmt.Errorf("icmp echo: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("icmp echo: %w", err)
		}
		rm, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := rm.Body.(*icmp.Echo)
		// A ping socket rewrites the ID; a raw socket sees every reply.
		if !ok || echo.Seq != seq || (network == "ip4" && (echo.ID != id || !from.(*net.IPAddr).IP.Equal(p.ip))) {
			continue
		}
		return nil
	}
}

func parseStatus(s string) (int, int, error) {
	lo, hi, found := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b := a
	var err2 error
	if found {
		b, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
		return 0, 0, fmt.Errorf("status %q: want a range such as 200-399", s)
	}
	return a, b, nil
}
