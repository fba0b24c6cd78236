package dnsfail

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The answer logic through its front door, without sockets: decide as a
// table, and the whole answer through serve with a recording writer (as
// coredns's dnstest.Recorder), numbers compared as numbers.

// recorder is a dns.ResponseWriter that keeps what was written.
type recorder struct {
	msg    *dns.Msg
	remote net.Addr
}

func (r *recorder) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (r *recorder) RemoteAddr() net.Addr        { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) { r.msg = new(dns.Msg); return len(b), r.msg.Unpack(b) }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}
func (r *recorder) Network() string             { return "udp" }

// decideServer is a server (not running) whose www name follows ticket
// web: east has two checked targets, west one; fallback 127.0.0.99.
func decideServer(t *testing.T, o *owners, tweak func(*FailoverConfig)) (*Server, *FailoverConfig) {
	t.Helper()
	cfg := testConfig(t, testZone, map[string]string{"east": "tcp://{target}:80"}, func(z *ZoneConfig) {
		f := &z.Failover[0]
		f.Sites["east"] = SiteTargets{Targets: []string{"127.0.0.11", "127.0.0.21"}, Check: "tcp://{target}:80"}
		f.Fallback = []string{"127.0.0.99"}
		if tweak != nil {
			tweak(f)
		}
	})
	s, err := New(Options{Config: cfg, Self: "east", Members: []string{"east", "west", "arbitrator"},
		StateDir: filepath.Join(t.TempDir(), "dns"), Owners: o.get})
	if err != nil {
		t.Fatal(err)
	}
	return s, &s.set.Load().zones[0].cfg.Failover[0]
}

// setHealth sets this member's view of east's targets (the only vantage
// point reporting, so it decides).
func setHealth(s *Server, f *FailoverConfig, states ...hstate) {
	site := f.Sites["east"]
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	for i, target := range site.Targets {
		s.health.local[checkKey(f.Health, site.Check, target)].state = states[i]
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		owner   string
		end     time.Time // zero: a manual ticket
		health  []hstate  // east's two targets
		tweak   func(*FailoverConfig)
		targets []string
		ttl     uint32
		why     string
	}{
		{"owner with a long lease: every target, the name's TTL", "east", now.Add(time.Hour), []hstate{stateUp, stateUp}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 30, "east holds web"},
		{"the TTL never outlives the lease", "east", now.Add(3500 * time.Millisecond), []hstate{stateUp, stateUp}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 3, "east holds web"},
		{"a lease longer than the TTL keeps the TTL", "east", now.Add(100 * time.Second), []hstate{stateUp, stateUp}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 30, "east holds web"},
		{"a manual ticket has no end", "east", time.Time{}, []hstate{stateUp, stateUp}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 30, "east holds web"},
		{"an ended lease answers nothing", "east", now.Add(-time.Millisecond), []hstate{stateUp, stateUp}, nil,
			nil, 0, "no site holds a valid lease on web: no data"},
		{"an ended lease, fallback policy", "east", now.Add(-time.Millisecond), []hstate{stateUp, stateUp},
			func(f *FailoverConfig) { f.WhenNoOwner = "fallback" }, []string{"127.0.0.99"}, 30, "no site holds a valid lease on web: fallback"},
		{"no owner", "", time.Time{}, []hstate{stateUp, stateUp}, nil, nil, 0, "no site holds a valid lease on web: no data"},
		{"an owner without targets for the name", "north", now.Add(time.Hour), []hstate{stateUp, stateUp}, nil,
			nil, 0, "north holds web but has no targets for this name: no data"},
		{"a target down is withdrawn", "east", now.Add(time.Hour), []hstate{stateDown, stateUp}, nil,
			[]string{"127.0.0.21"}, 30, "east holds web; 1 of 2 targets down"},
		{"health not known yet still serves", "east", now.Add(time.Hour), []hstate{stateUnknown, stateUp}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 30, "east holds web; health not known yet for 127.0.0.11"},
		{"every target down: the owner's anyway by default", "east", now.Add(10 * time.Second), []hstate{stateDown, stateDown}, nil,
			[]string{"127.0.0.11", "127.0.0.21"}, 10, "east holds web but every target is down: serving them anyway (when_unhealthy = owner)"},
		{"every target down, nodata policy", "east", now.Add(time.Hour), []hstate{stateDown, stateDown},
			func(f *FailoverConfig) { f.WhenUnhealthy = "nodata" }, nil, 0, "east holds web but every target is down: no data"},
		{"every target down, fallback policy", "east", now.Add(time.Hour), []hstate{stateDown, stateDown},
			func(f *FailoverConfig) { f.WhenUnhealthy = "fallback" }, []string{"127.0.0.99"}, 30, "east holds web but every target is down: fallback"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &owners{}
			o.set(c.owner, c.end)
			s, f := decideServer(t, o, c.tweak)
			setHealth(s, f, c.health...)
			d := s.decide(f, now)
			if !slices.Equal(d.Targets, c.targets) || d.TTL != c.ttl || d.Why != c.why {
				t.Fatalf("decide = targets %v TTL %d why %q\nwant targets %v TTL %d why %q", d.Targets, d.TTL, d.Why, c.targets, c.ttl, c.why)
			}
		})
	}
}

// TestServeAnswersWhatDecideSays: the whole answer, as a client gets it.
func TestServeAnswersWhatDecideSays(t *testing.T) {
	o := &owners{}
	o.set("east", time.Now().Add(3500*time.Millisecond))
	s, f := decideServer(t, o, nil)
	setHealth(s, f, stateDown, stateUp)
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		rec := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
		s.serve(rec, q, false)
		if rec.msg == nil {
			t.Fatalf("%s: no answer written", name)
		}
		return rec.msg
	}
	m := ask("www.example.test.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1 {
		t.Fatalf("www: %v", m)
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok || a.A.String() != "127.0.0.21" || a.Hdr.Ttl > 3 || a.Hdr.Ttl < 1 {
		t.Fatalf("www: want 127.0.0.21 with a TTL of at most 3 (3.5 s of lease left), got %v", m.Answer[0])
	}
	m = ask("nope.example.test.", dns.TypeA)
	if m.Rcode != dns.RcodeNameError || !m.Authoritative || len(m.Ns) != 1 {
		t.Fatalf("nope: %v", m)
	}
	if soa, ok := m.Ns[0].(*dns.SOA); !ok || soa.Hdr.Ttl != 20 {
		t.Fatalf("NXDOMAIN: want the SOA with TTL min(300, MINIMUM 20) = 20, got %v", m.Ns[0])
	}
	m = ask("www.example.org.", dns.TypeA)
	if m.Rcode != dns.RcodeRefused || m.Authoritative {
		t.Fatalf("outside our zones: want REFUSED without AA, got %v", m)
	}
	o.set("east", time.Now().Add(-time.Millisecond))
	m = ask("www.example.test.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || !strings.Contains(m.Ns[0].String(), "SOA") {
		t.Fatalf("lease ended: want NODATA with the SOA, got %v", m)
	}
}
