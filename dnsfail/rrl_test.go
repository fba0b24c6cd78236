package dnsfail

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Issue 17: the server answered every spoofable UDP query at full rate.
// Each client network gets rate answers per second; beyond, one in slip
// goes out truncated and the rest are dropped; other networks, and the
// next second, are not affected.
func TestResponseRateLimitPerClientNetwork(t *testing.T) {
	l := newRRL(5, 2)
	a := netip.MustParseAddr("198.51.100.7")
	sameNet := netip.MustParseAddr("198.51.100.200")
	other := netip.MustParseAddr("203.0.113.9")
	var got []rrlAction
	for i := 0; i < 10; i++ {
		addr := a
		if i%2 == 1 {
			addr = sameNet
		}
		got = append(got, l.check(addr, 1000))
	}
	want := []rrlAction{rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlDrop, rrlSlip, rrlDrop, rrlSlip, rrlDrop}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a /24 over its limit: %v, want %v", got, want)
	}
	if l.check(other, 1000) != rrlSend {
		t.Fatal("another network was limited")
	}
	if l.check(a, 1001) != rrlSend {
		t.Fatal("the next second was limited")
	}
	v6 := netip.MustParseAddr("2001:db8:1:2:3::1")
	v6same := netip.MustParseAddr("2001:db8:1:2:ff::9") // same /56
	for i := 0; i < 5; i++ {
		l.check(v6, 1000)
	}
	if l.check(v6same, 1000) == rrlSend {
		t.Fatal("a /56 was not limited as one network")
	}
	if newRRL(0, 2) != nil {
		t.Fatal("rate 0 is not off")
	}
}

// Over the wire: a burst from one client gets its first answers, then
// truncated answers a real resolver retries over TCP, which is not
// limited; the drops are counted.
func TestRateLimitedClientsAreTruncatedAndAnsweredOverTCP(t *testing.T) {
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	cfg := testConfig(t, testZone, nil, nil)
	const rate, slip = 20, 2
	cfg.RateLimit, cfg.RateLimitSlip = rate, slip
	s := startServer(t, cfg, o, "east", nil)
	c, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	wire, _ := q.Pack()
	const sent = 200
	for i := 0; i < sent; i++ {
		c.Write(wire)
	}
	answered, truncatedN := 0, 0
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("an answer does not parse: %v", err)
		}
		if m.Truncated {
			truncatedN++
			if len(m.Answer) != 0 || len(m.Question) != 1 || m.Question[0].Name != "www.example.test." {
				t.Fatalf("a slipped answer: %v", m)
			}
		} else {
			answered++
		}
	}
	// The burst may straddle a second: at most two seconds' budget.
	if answered < rate || answered > 2*rate || truncatedN == 0 || answered+truncatedN >= sent {
		t.Fatalf("%d answered, %d truncated of %d (rate %d, slip %d)", answered, truncatedN, sent, rate, slip)
	}
	dropped := testutil.ToFloat64(s.met.rrlDropped)
	if dropped == 0 {
		t.Fatal("no drop counted")
	}
	// The retry over TCP is answered.
	tcp := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := tcp.Exchange(q, s.Addrs()[1])
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("over TCP: %v %v", r, err)
	}
}
