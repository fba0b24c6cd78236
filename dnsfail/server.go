package dnsfail

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/netcap"
)

// maxTCPConns bounds the DNS-over-TCP connections open at once.
const maxTCPConns = 256

// HealthEvent is the serf user event carrying health reports.
const HealthEvent = "dns-health"

// Options wire a server.
type Options struct {
	Config Config
	// Self is this member's name (its vantage point).
	Self string
	// StateDir keeps the zones' serials across restarts.
	StateDir string
	Owners   Owners
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Broadcast sends a health report to every member (serf); nil: this
	// member's checks are its only vantage point.
	Broadcast func(name string, payload []byte) error
	// Members are the cluster's members by name: only their health
	// reports count.
	Members []string
	// Events, when set, hears of each change of this member's own checks
	// (kind "health"), for the member's timeline and alert hooks.
	Events func(kind, detail string)
}

// Server is a member's authoritative DNS server for the failover zones.
type Server struct {
	opt    Options
	set    atomic.Pointer[zoneSet] // the zones served, swapped whole by Reload
	owners Owners
	health *health
	log    *slog.Logger
	met    *metrics
	rrl    *rrl
	kick   chan struct{}
	cache  wireCache
	sigs   sigCache

	// pubMu makes one change of serials at a time (the publish loop, a
	// reload).
	pubMu   sync.Mutex
	mu      sync.Mutex
	serials map[string]uint32
	// digests name the content each zone's serial was given to.
	digests map[string]string
	// peerSerials are the other members' adverts: member → zone → serial.
	peerSerials map[string]map[string]serialAdvert
	notify      map[string]*notifyState // "zone target"
	update      map[string]*notifyState // per zone
	changes     []change

	tcp   *dns.Server
	addrs []string
	ready chan struct{} // closed once the listeners are bound
	// runCtx is Run's context, for the NOTIFYs a reload sends.
	runCtx context.Context
}

type (
	notifyState = api.DNSNotify
	change      = api.DNSChange
)

// New loads the zones and the serials; Run serves.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{opt: o, owners: o.Owners, log: o.Log, kick: make(chan struct{}, 1), cache: wireCache{m: map[string]*wireEntry{}},
		ready: make(chan struct{}), serials: map[string]uint32{}, digests: map[string]string{}, peerSerials: map[string]map[string]serialAdvert{}, notify: map[string]*notifyState{}, update: map[string]*notifyState{}}
	s.met = newMetrics(o.Registry, s)
	s.health = newHealth(o.Self, o.Members, s.met, s.Changed)
	if o.Events != nil {
		s.health.onFlip = func(key string, from, to hstate, last string) {
			if from == stateUnknown && to == stateUp {
				return // a check coming up at start is no change
			}
			o.Events("health", fmt.Sprintf("check %s: %s → %s (%s, from this member)", key, from, to, last))
		}
	}
	if c := o.Config; c.RateLimit != nil {
		slip := DefaultRateLimitSlip
		if c.RateLimitSlip != nil {
			slip = *c.RateLimitSlip
		}
		s.rrl = newRRL(*c.RateLimit, slip)
	}
	set, err := buildSet(o.Config)
	if err != nil {
		return nil, err
	}
	for key, hc := range set.checks {
		if err := s.health.add(key, hc); err != nil {
			return nil, err
		}
	}
	s.set.Store(set)
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("DNS state folder: %w", err)
	}
	for _, z := range set.zones {
		s.restoreSerial(z)
	}
	return s, nil
}

func (s *Server) serial(z *zone) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serials[z.origin]
}

// Changed asks the server to look at its answers again (a ticket view or
// a health state changed).
func (s *Server) Changed() {
	s.cache.invalidate()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Receive takes a health report from another member (serf).
func (s *Server) Receive(from string, payload []byte) {
	if from == s.opt.Self {
		return // serf hands a member its own events too
	}
	states, err := decodeReport(payload)
	if err != nil {
		s.met.reportsRefused.WithLabelValues("malformed").Inc()
		s.log.Debug("bad health report refused", "from", from, "err", err)
		return
	}
	if err := s.health.receive(from, states, time.Now()); err != nil {
		s.met.reportsRefused.WithLabelValues("not_member").Inc()
		s.log.Debug("health report refused", "from", from, "err", err)
	}
}

// Addrs returns the addresses served (UDP first), once Run has started.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Name names the service in the daemon's errors.
func (s *Server) Name() string { return "DNS" }

// Ready is closed once Run has bound its UDP and TCP listeners.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run serves UDP and TCP, runs the checks and publishes changes until ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	// The content may have changed since the serial was stored: settle it
	// before the first answer.
	s.settleAll(time.Now(), "start")
	pcs, granted, err := listenUDP(ctx, s.opt.Config.Listen, max(1, runtime.GOMAXPROCS(0)))
	if err != nil {
		return err
	}
	closeUDP := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	ln, err := net.Listen("tcp", pcs[0].LocalAddr().String())
	if err != nil {
		closeUDP()
		return err
	}
	accept := func(dh dns.Header) dns.MsgAcceptAction {
		// Answers to our own NOTIFYs are not for this server; the rest the
		// handler answers (with NOTIMP where it must).
		if dh.Bits&(1<<15) != 0 {
			return dns.MsgIgnore
		}
		if dh.Qdcount != 1 {
			return dns.MsgReject
		}
		return dns.MsgAccept
	}
	// DNS over TCP: at most maxTCPConns open at once, 10 s to read a
	// query, 10 s idle.
	capped := netcap.New(ln, maxTCPConns, s.met.tcpRefused.Inc)
	s.tcp = &dns.Server{Listener: capped, Handler: dns.HandlerFunc(s.serveTCP), TsigProvider: keyring{s}, MsgAcceptFunc: accept,
		ReadTimeout: 10 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }, MaxTCPQueries: -1}
	s.mu.Lock()
	s.addrs = []string{pcs[0].LocalAddr().String(), ln.Addr().String()}
	s.runCtx = ctx
	s.mu.Unlock()
	close(s.ready)
	errc := make(chan error, 1)
	go func() { errc <- s.tcp.ActivateAndServe() }()
	var wg sync.WaitGroup
	for _, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.udpLoop(pc)
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); s.health.run(ctx) }()
	go func() { defer wg.Done(); s.publishLoop(ctx) }()
	s.log.Info("DNS server started", "listen", s.opt.Config.Listen, "zones", len(s.set.Load().zones), "udp_sockets", len(pcs), "udp_receive_buffer", granted)
	if granted < rcvbuf {
		s.log.Warn("DNS receive buffer smaller than asked: bursts of queries may be dropped; run as root or raise net.core.rmem_max", "granted", granted, "asked", rcvbuf)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	closeUDP()
	s.tcp.Shutdown()
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("serve TCP: %w", runErr)
	}
	return nil
}

func (s *Server) serveTCP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, true) }

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	q := query{msg: r, tcp: tcp}
	if a, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		q.remote = a.IP
	} else if a, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		q.remote = a.IP
	}
	if t := r.IsTsig(); t != nil {
		q.tsigKey = t.Hdr.Name
		if code := tsigError(w.TsigStatus()); code != 0 {
			m := tsigRefusal(r, code, time.Now())
			s.met.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
			// Unsigned: written as bytes, since the writer would sign a
			// message that holds a TSIG.
			if b, err := m.Pack(); err == nil {
				w.Write(b)
			}
			return
		}
		q.tsigOK = true
	}
	m, xfr := s.answer(q, time.Now())
	if xfr != nil {
		s.transfer(w, r, xfr)
		return
	}
	if t := r.IsTsig(); t != nil && q.tsigOK {
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, time.Now().Unix())
	}
	if !tcp {
		m.Truncate(udpSize(r))
	}
	s.met.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("DNS reply not sent", "err", err)
	}
}

// tsigError is the TSIG error for a request's verification (RFC 8945
// §5.2): BADKEY for a key or algorithm this server does not know, BADTIME
// outside the fudge, BADSIG for a MAC that does not verify; 0 when it
// verified.
func tsigError(verify error) uint16 {
	switch {
	case verify == nil:
		return 0
	case errors.Is(verify, dns.ErrSecret), errors.Is(verify, dns.ErrKeyAlg):
		return dns.RcodeBadKey
	case errors.Is(verify, dns.ErrTime):
		return dns.RcodeBadTime
	default:
		return dns.RcodeBadSig
	}
}

// tsigRefusal answers a request whose TSIG failed: NOTAUTH, with a TSIG
// record that carries the error and no MAC.
func tsigRefusal(r *dns.Msg, code uint16, now time.Time) *dns.Msg {
	t := r.IsTsig()
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeNotAuth)
	m.Extra = append(m.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: t.Algorithm, TimeSigned: uint64(now.Unix()), Fudge: t.Fudge, OrigId: r.Id, Error: code})
	return m
}

// transfer streams the zone (AXFR, also the answer to IXFR): SOA, the
// records in messages of at most 100, SOA.
func (s *Server) transfer(w dns.ResponseWriter, r *dns.Msg, z *zone) {
	now := time.Now()
	serial := s.serial(z)
	rrs := []dns.RR{z.apexSOA(serial)}
	rrs = append(rrs, z.order...)
	for i := range z.cfg.Failover {
		f := &z.cfg.Failover[i]
		d := s.decide(f, now)
		rrs = append(rrs, failoverRRs(f, d.Targets, uint32(time.Duration(f.TTL)/time.Second))...)
	}
	rrs = append(rrs, z.apexSOA(serial))
	ch := make(chan *dns.Envelope)
	tr := new(dns.Transfer)
	errc := make(chan error, 1)
	go func() { errc <- tr.Out(w, r, ch) }()
	for len(rrs) > 0 {
		n := min(100, len(rrs))
		ch <- &dns.Envelope{RR: rrs[:n]}
		rrs = rrs[n:]
	}
	close(ch)
	if err := <-errc; err != nil {
		s.met.transfers.WithLabelValues("error").Inc()
		s.log.Warn("zone transfer failed", "zone", z.origin, "to", w.RemoteAddr().String(), "err", err)
		return
	}
	s.met.transfers.WithLabelValues("ok").Inc()
	s.log.Info("zone transferred", "zone", z.origin, "serial", serial, "to", w.RemoteAddr().String())
}

// fingerprint is the failover answers of a zone, without TTLs: a change of
// it bumps the serial.
func (s *Server) fingerprint(z *zone, now time.Time) string {
	var b strings.Builder
	for i := range z.cfg.Failover {
		f := &z.cfg.Failover[i]
		fmt.Fprintf(&b, "%s=%s;", f.Name, strings.Join(s.decide(f, now).Targets, ","))
	}
	return b.String()
}

// publishLoop watches the answers (on a kick, and every 250 ms for leases
// that end) and on a change of a zone's content settles its serial (see
// serial.go), NOTIFYs the secondaries and pushes the update; it
// broadcasts this member's health states and serials on change and every
// 10 s.
func (s *Server) publishLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastSent, lastOwn := time.Time{}, ""
	lastSerialsSent, lastSerials := time.Time{}, ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
		now := time.Now()
		s.settleAll(now, "")
		if s.opt.Broadcast != nil {
			own := s.health.own()
			b, _ := json.Marshal(own)
			if string(b) != lastOwn || now.Sub(lastSent) > 10*time.Second {
				for _, p := range encodeReports(own, 400) {
					if err := s.opt.Broadcast(HealthEvent, p); err != nil {
						s.log.Debug("health report not broadcast", "err", err)
					}
				}
				lastOwn, lastSent = string(b), now
			}
			adv := s.ownSerials()
			b, _ = json.Marshal(adv)
			if string(b) != lastSerials || now.Sub(lastSerialsSent) > 10*time.Second {
				for _, p := range encodeSerials(adv, 400) {
					if err := s.opt.Broadcast(SerialEvent, p); err != nil {
						s.log.Debug("serials not broadcast", "err", err)
					}
				}
				lastSerials, lastSerialsSent = string(b), now
			}
		}
	}
}

// announce NOTIFYs the zone's secondaries of a new serial and pushes the
// update, in the background (nothing before Run).
func (s *Server) announce(z *zone, serial uint32) {
	s.mu.Lock()
	ctx := s.runCtx
	s.mu.Unlock()
	if ctx == nil {
		return
	}
	for _, t := range z.cfg.Notify {
		go s.sendNotify(ctx, z, t, serial)
	}
	if z.cfg.Update != nil {
		go s.pushUpdate(ctx, z, serial)
	}
}

// retry runs f with backoff (1 s doubling to 30 s) until it succeeds, a
// newer serial supersedes it, or ctx ends.
func (s *Server) retry(ctx context.Context, z *zone, serial uint32, st *notifyState, f func() error) {
	wait := time.Second
	for attempt := 0; ; attempt++ {
		if s.serial(z) != serial {
			return
		}
		err := f()
		s.mu.Lock()
		st.Serial, st.At, st.Retries = serial, time.Now(), attempt
		st.Result = "ok"
		if err != nil {
			st.Result = err.Error()
		}
		s.mu.Unlock()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// sendNotify tells a secondary the zone changed, until it answers.
func (s *Server) sendNotify(ctx context.Context, z *zone, t NotifyTarget, serial uint32) {
	s.mu.Lock()
	st := s.notify[z.origin+" "+t.Address]
	if st == nil {
		st = &notifyState{Target: t.Address}
		s.notify[z.origin+" "+t.Address] = st
	}
	st.Key = t.Key
	s.mu.Unlock()
	s.retry(ctx, z, serial, st, func() error {
		m := new(dns.Msg)
		m.SetNotify(z.origin)
		m.Answer = []dns.RR{z.apexSOA(serial)}
		c := &dns.Client{Timeout: 2 * time.Second}
		if t.Key != "" {
			m.SetTsig(t.Key, dns.HmacSHA256, 300, time.Now().Unix())
			c.TsigSecret = s.set.Load().keys
		}
		return s.exchange(ctx, c, m, t.Address, "NOTIFY", s.met.notifies, "zone", z.origin, "serial", serial)
	})
}

// pushUpdate replaces the failover RRsets at the external primary with a
// TSIG-signed RFC 2136 UPDATE, until it is acknowledged.
func (s *Server) pushUpdate(ctx context.Context, z *zone, serial uint32) {
	u := z.cfg.Update
	s.mu.Lock()
	st := s.update[z.origin]
	if st == nil {
		st = &notifyState{Target: u.Server}
		s.update[z.origin] = st
	}
	s.mu.Unlock()
	s.retry(ctx, z, serial, st, func() error {
		m := new(dns.Msg)
		m.SetUpdate(u.Zone)
		now := time.Now()
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: f.Name, Rrtype: typeOf(f.Type), Class: dns.ClassANY}}})
			if rrs := failoverRRs(f, s.decide(f, now).Targets, uint32(time.Duration(f.TTL)/time.Second)); len(rrs) > 0 {
				m.Insert(rrs)
			}
		}
		m.SetTsig(u.Key, dns.HmacSHA256, 300, now.Unix())
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: s.set.Load().keys}
		return s.exchange(ctx, c, m, u.Server, "UPDATE", s.met.updates, "zone", u.Zone, "serial", serial)
	})
}

// exchange sends a NOTIFY or an UPDATE and says whether the server
// acknowledged it, in the metric and the log.
func (s *Server) exchange(ctx context.Context, c *dns.Client, m *dns.Msg, server, what string, counter *prometheus.CounterVec, attrs ...any) error {
	r, _, err := c.ExchangeContext(ctx, m, server)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case r.Rcode != dns.RcodeSuccess:
		result = "refused"
		err = fmt.Errorf("%s answered %s", what, dns.RcodeToString[r.Rcode])
	}
	counter.WithLabelValues(result).Inc()
	attrs = append(attrs, "to", server)
	if err != nil {
		s.log.Warn(what+" not acknowledged; retrying", append(attrs, "err", err)...)
	} else {
		s.log.Info(what+" acknowledged", attrs...)
	}
	return err
}

// Status is what GET /api/v1/dns shows, and its parts: the API's types.
type (
	Status      = api.DNS
	ZoneStatus  = api.DNSZone
	NameStatus  = api.DNSName
	CheckStatus = api.DNSCheck
)

// Status returns the server's state.
func (s *Server) Status() Status {
	now := time.Now()
	st := Status{Listen: s.opt.Config.Listen}
	for _, z := range s.set.Load().zones {
		zs := ZoneStatus{Origin: z.origin, Serial: s.serial(z), Vantages: map[string]int{}, DS: z.DS()}
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			d := s.decide(f, now)
			zs.Names = append(zs.Names, NameStatus{Name: f.Name, Type: f.Type, Ticket: f.Ticket,
				Targets: d.Targets, TTL: d.TTL, Owner: d.Owner, Why: d.Why})
			for _, site := range f.siteNames() {
				t := f.Sites[site]
				for _, target := range t.Targets {
					key := checkKey(f.Health, t.Check, target)
					cs := CheckStatus{Check: key, Site: site, Target: target, State: s.health.state(key)}
					if key != "" {
						s.health.mu.Lock()
						cs.Vantages = s.health.votes(key, now)
						if c := s.health.local[key]; c != nil {
							cs.Local = c.last
							if c.ok > 0 && c.state != stateUp {
								cs.Progress = fmt.Sprintf("rise %d/%d", c.ok, c.hc.Rise)
							} else if c.failed > 0 && c.state != stateDown {
								cs.Progress = fmt.Sprintf("fall %d/%d", c.failed, c.hc.Fall)
							}
						}
						s.health.mu.Unlock()
					}
					zs.Checks = append(zs.Checks, cs)
				}
			}
		}
		s.health.mu.Lock()
		for v, r := range s.health.reports {
			zs.Vantages[v] = int(now.Sub(r.At).Seconds())
		}
		s.health.mu.Unlock()
		s.mu.Lock()
		for k, n := range s.notify {
			if strings.HasPrefix(k, z.origin+" ") {
				zs.Notify = append(zs.Notify, *n)
			}
		}
		if u := s.update[z.origin]; u != nil {
			c := *u
			zs.Update = &c
		}
		for _, c := range s.changes {
			if c.Zone == z.origin {
				zs.Changes = append(zs.Changes, c)
			}
		}
		s.mu.Unlock()
		sort.Slice(zs.Notify, func(i, j int) bool { return zs.Notify[i].Target < zs.Notify[j].Target })
		st.Zones = append(st.Zones, zs)
	}
	return st
}

func decodeSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) < 16 {
		return nil, errors.New("shorter than 16 bytes")
	}
	return b, nil
}
