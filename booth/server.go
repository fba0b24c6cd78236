package booth

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/booth/handover"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/netcap"
)

// Key sizes Booth accepts in an authfile.
const (
	maxKey = 64
	minKey = 8
)

// LoadAuthKey reads an authfile as Booth does: its first 64 bytes, with
// surrounding white space trimmed when they are all ASCII; at least 8
// bytes; the file must not be readable by group or others.
func LoadAuthKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("booth authfile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("booth authfile: %w", err)
	}
	if st.Mode().Perm()&0o044 != 0 {
		return nil, fmt.Errorf("booth authfile %s: readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	key := make([]byte, maxKey)
	n, err := io.ReadFull(f, key)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("booth authfile %s: %w", path, err)
	}
	key = key[:n]
	if ascii(key) {
		key = bytes.TrimSpace(key)
	}
	if len(key) < minKey {
		return nil, fmt.Errorf("booth authfile %s: key of %d bytes, at least %d needed", path, len(key), minKey)
	}
	return key, nil
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// Limits of the client (TCP) side.
const (
	clientTimeout = 5 * time.Second
	maxClients    = 16
)

// Server runs an Arbiter on Booth's UDP port and answers Booth's client
// on the TCP port of the same address.
type Server struct {
	cfg  *boothconf.Config
	key  []byte
	log  *slog.Logger
	port int

	mu    sync.Mutex
	arb   *Engine
	peers map[uint32]*peerStats
	// epoch is the monotonic origin of the Arbiter's times; wall0 the
	// wall clock then (for the timestamps authenticated messages carry).
	epoch time.Time
	udp   *net.UDPConn
	met   *metrics
	// changed, when set, hears that a ticket may have changed (after a
	// message or a tick).
	changed func()
	// seen, events and eventSeq: the ticket changes reported (events.go).
	seen map[string]seen
	// warned: members reported for a time unit mismatch.
	warned   map[uint32]bool
	events   []api.Event
	eventSeq uint64
	// changedEv is closed at the next event (EventsSince).
	changedEv chan struct{}
	// ctx is Run's (the handlers run under it).
	ctx context.Context
	// wake makes the tick loop look again at once (kick).
	wake chan struct{}
	// handoverDir, when set, gets the handover file at a clean stop.
	handoverDir string
	// token, when set, lets the status listener take commands at a site
	// (AcceptCommands).
	token string
	siteShell
}

// OnChange sets f to be called whenever a ticket may have changed (set
// before Run).
func (s *Server) OnChange(f func()) { s.changed = f }

// Owner is the ticket's owner as an observer here may take it (the site's
// address) and until when: the lease rule of TicketView.SafeUntil, on the
// wall clock. No owner: "" and the zero time.
func (s *Server) Owner(ticket string) (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, v := range s.arb.Tickets() {
		if v.Name == ticket && v.Leader.IsValid() && v.SafeUntil > now {
			return v.Leader.String(), time.Now().Add(v.SafeUntil - now)
		}
	}
	return "", time.Time{}
}

// notify records what changed and tells the hook.
func (s *Server) notify() {
	s.mu.Lock()
	s.recordChanges(s.now(), time.Now())
	s.mu.Unlock()
	if s.changed != nil {
		s.changed()
	}
}

// peerStats are the counters Booth's peers answer lists.
type peerStats struct {
	lastRecv                         time.Time
	sent, sentErr                    uint64
	recv, recvErr, authFail, invalid uint64
	lastSecs, lastUsecs              uint32
	haveStamp                        bool
}

// NewServer prepares member self of cfg (its authfile is read now); its
// metrics go to reg. A site also needs its CIB (UseCIB).
func NewServer(cfg *boothconf.Config, self netip.Addr, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	arb, err := NewEngine(cfg, self, func(d time.Duration) time.Duration { return time.Duration(mrand.Int64N(int64(d) + 1)) })
	if err != nil {
		return nil, err
	}
	// Event numbers start from the wall clock, so that they rise across
	// restarts too.
	s := &Server{cfg: cfg, arb: arb, log: log, port: cfg.Port, peers: map[uint32]*peerStats{}, wake: make(chan struct{}, 1),
		seen: map[string]seen{}, warned: map[uint32]bool{}, eventSeq: uint64(time.Now().UnixMicro())}
	for _, m := range cfg.Members {
		if m.ID != arb.self.ID {
			s.peers[m.ID] = &peerStats{}
		}
	}
	if cfg.Authfile != "" {
		if s.key, err = LoadAuthKey(cfg.Authfile); err != nil {
			return nil, err
		}
	} else {
		log.Warn("booth.conf has no authfile: Booth's messages travel unauthenticated; set one on every member")
	}
	s.met = newMetrics(reg, s)
	return s, nil
}

// LeaveHandover makes Run leave, when it stops, what this member last
// promised in dir (package handover), for its start on geobooth's own
// protocol; set before Run.
func (s *Server) LeaveHandover(dir string) { s.handoverDir = dir }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.arb.site && s.cib == nil {
		return fmt.Errorf("booth: %s is a site: it needs its CIB", s.arb.self.Address)
	}
	if err := s.leave(false); err != nil {
		return err
	}
	addr := net.JoinHostPort(s.arb.self.Address.String(), strconv.Itoa(s.port))
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("booth: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return fmt.Errorf("booth: %w", err)
	}
	s.mu.Lock()
	s.udp, s.epoch, s.ctx = udp.(*net.UDPConn), time.Now(), ctx
	s.mu.Unlock()
	var wg sync.WaitGroup
	if s.cib != nil {
		if err := s.loadCIB(ctx); err != nil {
			udp.Close()
			ln.Close()
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.writeCIB(ctx) }()
	}
	s.mu.Lock()
	start := s.arb.Start(s.now())
	after := s.apply(ctx)
	s.mu.Unlock()
	role := map[bool]string{false: "arbitrator", true: "site"}[s.arb.site]
	s.log.Info("booth "+role+" up", "address", addr, "config", s.cfg.Path, "tickets", len(s.cfg.Tickets), "authenticated", s.key != nil)
	s.send(start, after)
	wg.Add(3)
	go func() { defer wg.Done(); s.readUDP() }()
	go func() { defer wg.Done(); s.serveClients(netcap.New(ln, maxClients, nil)) }()
	go func() { defer wg.Done(); s.tick(ctx) }()
	<-ctx.Done()
	udp.Close()
	ln.Close()
	wg.Wait()
	return s.leave(true)
}

// leave writes the handover: incomplete before anything is sent, complete
// once nothing is sent any more.
func (s *Server) leave(complete bool) error {
	if s.handoverDir == "" {
		return nil
	}
	s.mu.Lock()
	f := handover.File{Self: s.arb.self.Address, Written: time.Now(), Complete: complete, Tickets: s.arb.Handover()}
	s.mu.Unlock()
	if !complete {
		for i := range f.Tickets {
			f.Tickets[i] = handover.Ticket{Name: f.Tickets[i].Name}
		}
	}
	if err := handover.Write(s.handoverDir, f); err != nil {
		return fmt.Errorf("booth: %w", err)
	}
	if complete {
		s.log.Info("left the tickets' state for geobooth's own protocol", "file", handover.Path(s.handoverDir))
	}
	return nil
}

// kick makes the tick loop look again at once: a message, a request or a
// handler's end may have brought a ticket's next wake-up forward, and the
// loop would otherwise sleep until the time it computed before (as
// Booth's main loop recomputes its poll timeout after every message).
func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// now is the Arbiter's clock: monotonic time since Run began.
func (s *Server) now() time.Duration { return time.Since(s.epoch) }

func (s *Server) tick(ctx context.Context) {
	for {
		s.mu.Lock()
		now := s.now()
		out := s.arb.Tick(now)
		after := s.apply(ctx)
		s.recordChanges(now, time.Now())
		wait := s.arb.NextTick(now) - now
		s.mu.Unlock()
		s.send(out, after)
		s.notify()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-s.wake:
		}
	}
}

func (s *Server) readUDP() {
	buf := make([]byte, MaxDatagram)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("booth: receive", "err", err)
			continue
		}
		s.send(s.datagram(buf[:n], from))
		s.kick()
		s.notify()
	}
}

// datagram handles one received datagram and returns the answers (and
// what they wait for: apply).
func (s *Server) datagram(b []byte, src netip.AddrPort) ([]Send, <-chan struct{}) {
	if len(b) < HeaderSize {
		s.log.Debug("booth: short datagram", "from", src, "bytes", len(b))
		return nil, nil
	}
	id := binary.BigEndian.Uint32(b[20:])
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	if p == nil {
		s.met.refused.WithLabelValues("unknown_sender").Inc()
		s.log.Debug("booth: datagram from an unknown site id", "from", src, "site_id", fmt.Sprintf("%#x", id))
		return nil, nil
	}
	p.lastRecv = time.Now()
	p.recv++
	m, err := Decode(b, s.key)
	switch {
	case errors.Is(err, ErrAuth):
		p.authFail++
		s.met.refused.WithLabelValues("auth").Inc()
		s.log.Warn("booth: datagram fails authentication", "from", src, "err", err)
		return nil, nil
	case err != nil:
		p.recvErr++
		s.met.refused.WithLabelValues("malformed").Inc()
		s.log.Warn("booth: bad datagram", "from", src, "err", err)
		return nil, nil
	}
	if s.key != nil && !s.fresh(p, m.Header, time.Now()) {
		p.authFail++
		s.met.refused.WithLabelValues("replay").Inc()
		s.log.Warn("booth: datagram older than maxtimeskew", "from", src, "max_time_skew_s", s.cfg.MaxTimeSkew)
		return nil, nil
	}
	out, err := s.arb.Receive(s.now(), m)
	after := s.apply(s.ctx)
	// Under the same lock: no one sees the new state (booth list, the
	// status listener) before its event is recorded.
	s.recordChanges(s.now(), time.Now())
	if err != nil {
		p.invalid++
		s.met.refused.WithLabelValues("invalid").Inc()
		s.log.Warn("booth: message refused", "from", src, "cmd", m.Cmd.String(), "err", err)
		return nil, nil
	}
	s.met.received.WithLabelValues(label(m.Cmd)).Inc()
	for _, mm := range s.arb.UnitMismatches() {
		if !s.warned[mm.ID] {
			s.warned[mm.ID] = true
			s.log.Error("booth: this member's lease updates show another time unit than ours (seconds or milliseconds): its booth.conf differs; its leases are taken as a full expire until the files agree",
				"member", mm.Address, "our_unit", map[bool]string{false: "s", true: "ms"}[s.cfg.Millis])
		}
	}
	return out, after
}

// fresh is Booth's replay check: newer than the last message from that
// peer, or at most maxtimeskew old. The first message from a peer must
// pass the age bound (Booth, starting from a zero time, lets any first one
// through).
func (s *Server) fresh(p *peerStats, h Header, wall time.Time) bool {
	if p != nil && p.haveStamp && (h.Secs > p.lastSecs || h.Secs == p.lastSecs && h.Usecs > p.lastUsecs) {
		p.lastSecs, p.lastUsecs = h.Secs, h.Usecs
		return true
	}
	sent := time.Unix(int64(h.Secs), int64(h.Usecs)*1000)
	if !sent.After(wall.Add(-time.Duration(s.cfg.MaxTimeSkew) * time.Second)) {
		return false
	}
	if p != nil {
		p.lastSecs, p.lastUsecs, p.haveStamp = h.Secs, h.Usecs, true
	}
	return true
}

// stamp sets what Booth puts in an authenticated header: a time that
// only moves forward (the monotonic clock from the wall time at Run).
func (s *Server) stamp(h *Header) {
	if s.key == nil {
		return
	}
	t := s.epoch.Add(s.now())
	h.Secs, h.Usecs = uint32(t.Unix()), uint32(t.Nanosecond()/1000)
}

func (s *Server) send(out []Send, after <-chan struct{}) {
	if after != nil && len(out) > 0 {
		timer := time.NewTimer(guardTimeout + cibTimeout)
		select {
		case <-after:
		case <-s.ctx.Done():
		case <-timer.C:
			s.log.Error("booth: the CIB's revoke takes too long: telling the other members all the same", "timeout", cibTimeout)
		}
		timer.Stop()
	}
	for _, o := range out {
		s.mu.Lock()
		to, ok := s.arb.members[o.To]
		s.stamp(&o.Msg.Header)
		b := Encode(o.Msg, s.key)
		s.mu.Unlock()
		if !ok {
			continue
		}
		_, err := s.udp.WriteToUDPAddrPort(b, netip.AddrPortFrom(to.Address, uint16(s.port)))
		s.mu.Lock()
		s.met.sent.WithLabelValues(label(o.Msg.Cmd)).Inc()
		if p := s.peers[o.To]; p != nil {
			p.sent++
			if err != nil {
				p.sentErr++
			}
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("booth: send", "to", to.Address, "cmd", o.Msg.Cmd.String(), "err", err)
		}
	}
}

// Role is this member's role: site or arbitrator.
func (s *Server) Role() string {
	if s.arb.site {
		return "site"
	}
	return "arbitrator"
}

// Self is this member's address.
func (s *Server) Self() netip.Addr { return s.arb.self.Address }
