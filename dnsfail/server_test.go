package dnsfail

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/kit/testenv"
)

func flags(out string) string {
	m := regexp.MustCompile(`;; flags: ([a-z ]*);`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

func status(out string) string {
	m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestAuthoritativeRulesWithDig checks every rule of an authoritative
// server with dig and kdig, the clients operators use.
// The same rules hold for a signed zone (issue 20), whose answers to
// queries without DO are the same.
func TestAuthoritativeRulesWithDig(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unsigned", true: "signed"}[signed], func(t *testing.T) {
			var keys []string
			if signed {
				keys = []string{dnssecKeyFile(t)}
			}
			authoritativeRules(t, testConfig(t, bigZone(), nil, func(z *ZoneConfig) { z.DNSSECKeys = keys }))
		})
	}
}

func authoritativeRules(t *testing.T, cfg Config) {
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s := startServer(t, cfg, o, "east", nil)
	addr := s.Addrs()[0]
	type want struct {
		status string
		aa     bool
		has    []string // regexps the output must match
		hasNot []string
	}
	soaNeg := `(?m)^example\.test\.\s+20\s+IN\s+SOA\s` // min(300, MINIMUM 20)
	cases := []struct {
		name string
		args []string
		want want
	}{
		{"answer has AA", []string{"www.example.test"}, want{"NOERROR", true, []string{`(?m)^www\.example\.test\.\s+30\s+IN\s+A\s+127\.0\.0\.11$`}, nil}},
		{"query spelling echoed", []string{"WwW.ExAmple.TEST"}, want{"NOERROR", true, []string{`(?m)^WwW\.ExAmple\.TEST\.\s+30\s+IN\s+A\s+127\.0\.0\.11$`}, nil}},
		{"outside our zones: REFUSED without AA", []string{"www.example.org"}, want{"REFUSED", false, nil, []string{`ANSWER SECTION`}}},
		{"NXDOMAIN with SOA at the negative TTL", []string{"nope.example.test"}, want{"NXDOMAIN", true, []string{soaNeg}, nil}},
		{"NODATA with SOA", []string{"www.example.test", "AAAA"}, want{"NOERROR", true, []string{soaNeg, `ANSWER: 0`}, nil}},
		{"empty non-terminal is NODATA", []string{"internal.example.test"}, want{"NOERROR", true, []string{soaNeg, `ANSWER: 0`}, nil}},
		{"below an empty non-terminal", []string{"db.internal.example.test"}, want{"NOERROR", true, []string{`127\.0\.0\.30`}, nil}},
		{"CNAME chased in zone", []string{"app.example.test"}, want{"NOERROR", true, []string{`(?m)^app\.example\.test\.\s+300\s+IN\s+CNAME\s+www\.example\.test\.$`, `(?m)^www\.example\.test\.\s+30\s+IN\s+A\s+127\.0\.0\.11$`}, nil}},
		{"CNAME asked for itself", []string{"app.example.test", "CNAME"}, want{"NOERROR", true, []string{`CNAME\s+www\.example\.test\.`}, []string{`127\.0\.0\.11`}}},
		{"CNAME out of zone is not chased", []string{"outside.example.test"}, want{"NOERROR", true, []string{`CNAME\s+www\.example\.org\.`, `ANSWER: 1`}, nil}},
		{"CNAME to a missing name: NXDOMAIN", []string{"dangling.example.test"}, want{"NXDOMAIN", true, []string{`CNAME\s+nothing\.example\.test\.`, soaNeg}, nil}},
		{"CNAME loop ends", []string{"loop1.example.test"}, want{"NOERROR", true, []string{`loop1\.example\.test\.\s+300\s+IN\s+CNAME`, `loop2\.example\.test\.\s+300\s+IN\s+CNAME`}, nil}},
		{"referral below a delegation", []string{"host.sub.example.test"}, want{"NOERROR", false, []string{`(?m)^sub\.example\.test\.\s+300\s+IN\s+NS\s+ns\.sub\.example\.test\.$`, `(?m)^ns\.sub\.example\.test\.\s+300\s+IN\s+A\s+127\.0\.0\.53$`}, nil}},
		{"EDNS echoed with 1232", []string{"www.example.test", "+edns=0"}, want{"NOERROR", true, []string{`udp: 1232`}, nil}},
		{"unknown EDNS version: BADVERS", []string{"www.example.test", "+edns=1", "+noednsneg"}, want{"BADVERS", false, []string{`EDNS: version: 0`}, []string{`127\.0\.0\.11`}}},
		{"ANY: one RRset (RFC 8482)", []string{"example.test", "ANY"}, want{"NOERROR", true, []string{`ANSWER: 1`, `SOA`}, nil}},
		{"SOA at the apex", []string{"example.test", "SOA"}, want{"NOERROR", true, []string{`IN\s+SOA\s+ns1\.example\.test\.`}, nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := dig(t, addr, append([]string{"+norecurse"}, c.args...)...)
			if got := status(out); got != c.want.status {
				t.Fatalf("status %s, want %s\n%s", got, c.want.status, out)
			}
			if aa := strings.Contains(" "+flags(out)+" ", " aa "); aa != c.want.aa {
				t.Fatalf("AA %v, want %v\n%s", aa, c.want.aa, out)
			}
			for _, re := range c.want.has {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Fatalf("output does not match %s\n%s", re, out)
				}
			}
			for _, re := range c.want.hasNot {
				if regexp.MustCompile(re).MatchString(out) {
					t.Fatalf("output matches %s\n%s", re, out)
				}
			}
		})
	}
	// AXFR over UDP (dig always uses TCP for it).
	q := new(dns.Msg)
	q.SetQuestion("example.test.", dns.TypeAXFR)
	r, _, err := (&dns.Client{Net: "udp"}).Exchange(q, addr)
	if err != nil || r.Rcode != dns.RcodeRefused || r.Authoritative {
		t.Fatalf("AXFR over UDP: %v %v", r, err)
	}
	// kdig agrees on the answer, the negative answer and the SOA TTL.
	out := kdig(t, addr, "nope.example.test")
	if !strings.Contains(out, "status: NXDOMAIN") || !regexp.MustCompile(`example\.test\.\s+20\s+IN\s+SOA`).MatchString(out) || !strings.Contains(out, " aa") {
		t.Fatalf("kdig NXDOMAIN:\n%s", out)
	}
}

// TestTruncationThenTCP: a large answer without EDNS comes back truncated
// over UDP, in full over TCP, and one TCP connection serves several
// queries.
func TestTruncationThenTCP(t *testing.T) {
	o := &owners{}
	s := startServer(t, testConfig(t, bigZone(), nil, nil), o, "east", nil)
	addr := s.Addrs()[0]
	out := dig(t, addr, "+noedns", "+ignore", "big.example.test")
	if !strings.Contains(" "+flags(out)+" ", " tc ") {
		t.Fatalf("no TC on a 100-address answer without EDNS:\n%s", out)
	}
	if n := strings.Count(out, "IN\tA\t10.0.0."); n >= 100 {
		t.Fatalf("truncated answer holds %d records", n)
	}
	out = dig(t, addr, "+noedns", "big.example.test")
	if n := strings.Count(out, "IN\tA\t10.0.0."); n != 100 || !strings.Contains(out, "(TCP)") {
		t.Fatalf("dig retried over TCP and got %d records:\n%s", n, out)
	}
	out = kdig(t, addr, "+bufsize=1232", "+notcp", "+ignore", "big.example.test")
	if !strings.Contains(out, " tc") {
		t.Fatalf("kdig with a 1232-byte buffer: no TC:\n%s", out)
	}

	// Two queries over one TCP connection, read back in order.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &dns.Conn{Conn: c}
	for i, name := range []string{"www.example.test.", "mail.example.test.", "big.example.test."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("answer %d on the same connection: %v", i, err)
		}
		if r.Id != q.Id || r.Truncated {
			t.Fatalf("answer %d: %v", i, r)
		}
	}
	// dig's own keep-open mode agrees.
	out = dig(t, addr, "+tcp", "+keepopen", "mail.example.test", "example.test", "SOA")
	if strings.Count(out, "status: NOERROR") != 2 {
		t.Fatalf("dig +keepopen:\n%s", out)
	}
}

// TestFailoverAnswerFollowsTheLease: the owner's target, with a TTL that
// never outlives the lease; a new owner changes the answer and the serial;
// an ended lease answers nothing (or the named fallback).
func TestFailoverAnswerFollowsTheLease(t *testing.T) {
	o := &owners{}
	now := time.Now()
	o.set("east", now.Add(3500*time.Millisecond))
	cfg := testConfig(t, testZone, nil, func(z *ZoneConfig) {
		api := DefaultFailover()
		api.Name, api.Type, api.TTL, api.Ticket = "api", "A", z.Failover[0].TTL, "web"
		api.Sites = map[string]SiteTargets{"east": {Targets: []string{"127.0.0.21", "127.0.0.22"}}, "west": {Targets: []string{"127.0.0.23"}}}
		api.WhenNoOwner, api.Fallback = "fallback", []string{"127.0.0.99"}
		z.Failover = append(z.Failover, api)
	})
	s := startServer(t, cfg, o, "east", nil)
	addr := s.Addrs()[0]
	out := dig(t, addr, "www.example.test")
	m := regexp.MustCompile(`(?m)^www\.example\.test\.\s+(\d+)\s+IN\s+A\s+127\.0\.0\.11$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("owner east: want 127.0.0.11\n%s", out)
	}
	if ttl, err := strconv.Atoi(m[1]); err != nil || ttl > 3 {
		t.Fatalf("owner east, lease 3.5 s left: want 127.0.0.11 with TTL at most 3\n%s", out)
	}
	if out := dig(t, addr, "api.example.test", "+short"); out != "127.0.0.21\n127.0.0.22\n" {
		t.Fatalf("every target of the owner: %q", out)
	}
	serial := s.Status().Zones[0].Serial

	o.set("west", time.Now().Add(time.Minute))
	s.Changed()
	testenv.Eventually(t, 2*time.Second, func() error {
		if out := dig(t, addr, "www.example.test", "+short"); out != "127.0.0.12\n" {
			return fmt.Errorf("after the move: %q", out)
		}
		if st := s.Status().Zones[0]; st.Serial == serial {
			return fmt.Errorf("serial still %d", serial)
		}
		return nil
	})
	o.set("west", time.Now().Add(-time.Millisecond))
	s.Changed() // the daemon calls it on every change of a ticket view
	out = dig(t, addr, "www.example.test")
	if status(out) != "NOERROR" || !strings.Contains(out, "ANSWER: 0") {
		t.Fatalf("lease ended: want NODATA\n%s", out)
	}
	if out := dig(t, addr, "api.example.test", "+short"); out != "127.0.0.99\n" {
		t.Fatalf("lease ended, fallback policy: %q", out)
	}
	st := s.Status().Zones[0]
	if !strings.Contains(st.Names[0].Why, "no site holds a valid lease") {
		t.Fatalf("status does not say why: %+v", st.Names[0])
	}
}

// TestSerialSurvivesARestart: the serial never goes back; a restart with
// the same content keeps it (issue 20: members that answer the same must
// serve the same serial, and a restart used to bump it), one whose
// content changed while the member was down moves past it.
func TestSerialSurvivesARestart(t *testing.T) {
	cfg := testConfig(t, testZone, nil, nil)
	dir := t.TempDir()
	o := &owners{}
	o.set("east", time.Time{})
	run := func() uint32 {
		s, stop := runServer(t, Options{Config: cfg, Self: "east", StateDir: dir, Owners: o.get})
		defer stop()
		return s.serial(s.set.Load().zones[0])
	}
	first := run()
	if first != 8 {
		t.Fatalf("first serial %d, want the zone file's + 1 (8)", first)
	}
	if again := run(); again != first {
		t.Fatalf("serial %d after a restart with the same answers, was %d", again, first)
	}
	o.set("west", time.Time{})
	if moved := run(); !newer(moved, first) {
		t.Fatalf("serial %d after a restart with other answers, was %d", moved, first)
	}
}

// TestHealthRiseFallAndVantageQuorum: a target whose port closes goes
// down after fall failures and up after rise successes; a target failing
// from one vantage point of three stays up.
func TestHealthRiseFallAndVantageQuorum(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	go acceptAll(ln)
	check := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s := startServer(t, testConfig(t, testZone, map[string]string{"east": check}, func(z *ZoneConfig) {
		z.Failover[0].WhenUnhealthy = "nodata"
	}), o, "east", nil)
	addr := s.Addrs()[0]
	// Unknown at first: served.
	if out := dig(t, addr, "www.example.test", "+short"); out != "127.0.0.11\n" {
		t.Fatalf("unknown health: %q", out)
	}
	testenv.Eventually(t, 3*time.Second, func() error {
		if st := s.health.state(check); st != stateUp {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	ln.Close()
	start := time.Now()
	testenv.Eventually(t, 3*time.Second, func() error {
		if st := s.health.state(check); st != stateDown {
			return fmt.Errorf("state %s after the port closed", st)
		}
		return nil
	})
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("down after %v: sooner than fall (3) probes at 100 ms", el)
	}
	if out := dig(t, addr, "www.example.test", "+short"); out != "" {
		t.Fatalf("owner down, when_unhealthy = nodata: %q", out)
	}
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go acceptAll(ln2)
	testenv.Eventually(t, 3*time.Second, func() error {
		if out := dig(t, addr, "www.example.test", "+short"); out != "127.0.0.11\n" {
			return fmt.Errorf("after the port reopened: %q", out)
		}
		return nil
	})

	// Vantage quorum: two other members say up while this one says down.
	if combine(map[string]hstate{"east": stateDown, "west": stateUp, "arbitrator": stateUp}, 0) != stateUp {
		t.Fatal("one vantage point of three marked the target down")
	}
	if combine(map[string]hstate{"east": stateDown, "west": stateDown, "arbitrator": stateUp}, 0) != stateDown {
		t.Fatal("two of three did not mark the target down")
	}
	if combine(map[string]hstate{"east": stateUnknown}, 0) != stateUnknown {
		t.Fatal("no vantage point knows, yet the target is judged")
	}
	if combine(map[string]hstate{"east": stateDown, "west": stateUp, "arbitrator": stateUp}, 1) != stateDown {
		t.Fatal("quorum 1 ignored")
	}
	ln2.Close()
	testenv.Eventually(t, 3*time.Second, func() error {
		if st := s.health.state(check); st != stateDown {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	// Reports from two other members that see the target up outvote this
	// member's failing probe.
	payloads := encodeReports(map[string]hstate{check: stateUp}, 400)
	s.Receive("west", payloads[0])
	s.Receive("arbitrator", payloads[0])
	if st := s.health.state(check); st != stateUp {
		t.Fatalf("one failing vantage point of three: %s", st)
	}
	s.Receive("west", []byte(`{"s":{"x":"sideways"}}`))
	s.Receive("west", []byte(`garbage`))
	if st := s.health.state(check); st != stateUp {
		t.Fatalf("a malformed report changed the state: %s", st)
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// TestProbes: HTTP status and body match, SMTP banner and EHLO, ICMP echo
// to loopback.
func TestProbes(t *testing.T) {
	web := httpServer(t)
	ctx := context.Background()
	hc := DefaultHealthCheck()
	hc.Timeout, hc.Status, hc.Match = 1e9, "200-299", "ready"
	h := newHealth("east", nil, newMetrics(nilRegistry(), &Server{}), nil)
	for _, c := range []struct {
		check string
		ok    bool
	}{
		{web + "/ok", true},
		{web + "/notready", false},
		{web + "/fail", false},
		{"tcp://127.0.0.1:1", false},
	} {
		if err := h.add(c.check, hc); err != nil {
			t.Fatal(err)
		}
		err := h.local[c.check].probe.probe(ctx)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.check, err, c.ok)
		}
	}
	smtp := smtpServer(t, "220 mail ESMTP\r\n", "250-mail\r\n250 OK\r\n")
	if err := (smtpProbe{addr: smtp}).probe(ctx); err != nil {
		t.Errorf("smtp: %v", err)
	}
	bad := smtpServer(t, "554 go away\r\n", "")
	if err := (smtpProbe{addr: bad}).probe(ctx); err == nil {
		t.Error("smtp 554 banner accepted")
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := (icmpProbe{ip: net.ParseIP("127.0.0.1")}).probe(ictx); err != nil {
		t.Errorf("icmp echo to loopback: %v", err)
	}
}

// TestCachedAnswersNeverOutliveTheLease: answers come from the wire cache
// (case patched in), yet when the lease ends with no one telling the
// server, the very next answer is empty, and no answer's TTL reaches past
// the lease end.
func TestCachedAnswersNeverOutliveTheLease(t *testing.T) {
	o := &owners{}
	end := time.Now().Add(1500 * time.Millisecond)
	o.set("east", end)
	s := startServer(t, testConfig(t, testZone, nil, nil), o, "east", nil)
	c := &dns.Client{Timeout: time.Second}
	sawEast, sawEmpty := 0, false
	for time.Now().Before(end.Add(500 * time.Millisecond)) {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn("wWw.Example.TEST"), dns.TypeA)
		sent := time.Now()
		r, _, err := c.Exchange(q, s.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != q.Id || !r.Authoritative {
			t.Fatalf("reply %v", r)
		}
		if len(r.Answer) > 0 {
			a := r.Answer[0]
			if a.Header().Name != "wWw.Example.TEST." {
				t.Fatalf("spelling not echoed: %s", a.Header().Name)
			}
			if !sent.Before(end) {
				t.Fatalf("answered the owner %v after its lease ended", sent.Sub(end))
			}
			if sent.Add(time.Duration(a.Header().Ttl) * time.Second).After(end) {
				t.Fatalf("TTL %d at %v before the end reaches past the lease", a.Header().Ttl, end.Sub(sent))
			}
			sawEast++
		} else {
			sawEmpty = true
			if sent.Before(end.Add(-300 * time.Millisecond)) {
				t.Fatalf("no answer %v before the lease ended", end.Sub(sent))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sawEast < 10 || !sawEmpty {
		t.Fatalf("saw the owner %d times, empty %v", sawEast, sawEmpty)
	}
	body := testutil.ToFloat64(s.met.fastHits)
	if body < 5 {
		t.Fatalf("only %v answers from the cache", body)
	}
}

// Issue 17, F9: anyone holding the serf keyring joined under five invented
// names and outvoted the real members on a target's health. Reports now
// count only from the other configured members, one each, for the checks
// this member runs.
func TestHealthReportsCountOnlyFromMembers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAll(ln)
	check := "tcp://" + ln.Addr().String()
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s := startServer(t, testConfig(t, testZone, map[string]string{"east": check}, nil), o, "east", nil)
	testenv.Eventually(t, 3*time.Second, func() error {
		if st := s.health.state(check); st != stateUp {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	down := encodeReports(map[string]hstate{check: stateDown}, 400)[0]
	for _, name := range []string{"mallory1", "mallory2", "mallory3", "mallory4", "mallory5", "east"} {
		s.Receive(name, down)
	}
	if st := s.health.state(check); st != stateUp {
		t.Fatalf("reports from invented names (and one claiming to be this member) marked the target %s", st)
	}
	// A report under this member's own name is ignored, not counted: serf
	// hands every member its own events, which are no attack.
	if n := testutil.ToFloat64(s.met.reportsRefused.WithLabelValues("not_member")); n != 5 {
		t.Fatalf("%v refused reports counted, want the 5 invented names", n)
	}
	// Keys this member does not check are not kept.
	s.Receive("west", encodeReports(map[string]hstate{"tcp://192.0.2.1:1": stateDown, check: stateUp}, 400)[0])
	s.health.mu.Lock()
	kept := len(s.health.reports["west"].States)
	members := len(s.health.reports)
	s.health.mu.Unlock()
	if kept != 1 || members != 1 {
		t.Fatalf("kept %d states from west and reports of %d senders, want 1 and 1", kept, members)
	}
	// The real members still outvote this one.
	s.Receive("west", down)
	s.Receive("arbitrator", down)
	if st := s.health.state(check); st != stateDown {
		t.Fatalf("two real members of three say down: %s", st)
	}
}

// Issue 20: no alert could say which target is down (the check counter
// has only a result label). One of a site's two targets fails: only it is
// withdrawn, and geobooth_dns_target_up reads 0 for it and 1 for the
// other (the alert rule on it is tested in examples/monitoring).
func TestOneTargetDownIsWithdrawnAndItsGaugeReadsZero(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.11:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go acceptAll(up)
	port := up.Addr().(*net.TCPAddr).Port
	check := fmt.Sprintf("tcp://{target}:%d", port) // nothing listens on 127.0.0.13
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, testZone, map[string]string{"east": check}, func(z *ZoneConfig) {
		site := z.Failover[0].Sites["east"]
		site.Targets = []string{"127.0.0.11", "127.0.0.13"}
		z.Failover[0].Sites["east"] = site
	})
	s, _ := runServer(t, Options{Config: cfg, Self: "east", StateDir: t.TempDir(), Owners: o.get, Registry: reg})
	gauges := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "geobooth_dns_target_up" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				out[l["zone"]+" "+l["name"]+" "+l["site"]+" "+l["target"]] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if out := dig(t, s.Addrs()[0], "www.example.test", "+short"); out != "127.0.0.11\n" {
			return fmt.Errorf("answers %q, want only the target that is up", out)
		}
		g := gauges()
		if g["example.test. www.example.test. east 127.0.0.11"] != 1 || g["example.test. www.example.test. east 127.0.0.13"] != 0 || len(g) != 2 {
			return fmt.Errorf("geobooth_dns_target_up: %v", g)
		}
		return nil
	})
}
