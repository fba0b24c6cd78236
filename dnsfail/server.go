package dnsfail

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
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
	s.rrl = newRRL(o.Config.RateLimit, o.Config.RateLimitSlip)
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
	errc, err := s.startTCP(ln)
	if err != nil {
		closeUDP()
		return err
	}
	s.mu.Lock()
	s.addrs = []string{pcs[0].LocalAddr().String(), ln.Addr().String()}
	s.runCtx = ctx
	s.mu.Unlock()
	close(s.ready)
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
	if runErr == nil {
		s.tcp.Shutdown()
		runErr = <-errc
	}
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("serve TCP: %w", runErr)
	}
	return nil
}

// startTCP serves DNS over TCP on ln: at most maxTCPConns open at once,
// 10 s to read a query, 10 s idle. It returns once the server has
// started (Shutdown does nothing to a server that has not, and its
// listener would stay open); the channel gets what the server returns.
func (s *Server) startTCP(ln net.Listener) (chan error, error) {
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
	capped := netcap.New(ln, maxTCPConns, s.met.tcpRefused.Inc)
	s.tcp = &dns.Server{Listener: capped, Handler: dns.HandlerFunc(s.serveTCP), TsigProvider: keyring{s}, MsgAcceptFunc: accept,
		ReadTimeout: 10 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }, MaxTCPQueries: -1}
	started := make(chan struct{})
	s.tcp.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- s.tcp.ActivateAndServe() }()
	select {
	case <-started:
		return errc, nil
	case err := <-errc:
		capped.Close()
		return nil, fmt.Errorf("serve TCP: %w", err)
	}
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
