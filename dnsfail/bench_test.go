package dnsfail

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkUDPAnswer measures one query through the UDP path, from the
// request's bytes to the reply's: cached (the steady state) and built per
// query (the full path through miekg/dns). Run with -benchmem: the cached
// path allocates nothing.
func BenchmarkUDPAnswer(b *testing.B) {
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s, err := New(Options{Config: testConfig(b, bigZone(), nil, nil), Self: "east", StateDir: filepath.Join(b.TempDir(), "dns"), Owners: o.get})
	if err != nil {
		b.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5353")
	for _, c := range []struct {
		name string
		q    string
	}{{"static", "mail.example.test."}, {"failover", "www.example.test."}} {
		m := new(dns.Msg)
		m.SetQuestion(c.q, dns.TypeA)
		m.SetEdns0(1232, false)
		req, _ := m.Pack()
		buf, key := make([]byte, 0, 1232), make([]byte, 0, 300)
		b.Run(c.name+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if out := s.handleUDP(buf, req, from, key, time.Now()); len(out) == 0 {
					b.Fatal("no reply")
				}
			}
		})
		b.Run(c.name+"/built", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.cache.invalidate()
				if out := s.handleUDP(buf, req, from, key, time.Now()); len(out) == 0 {
					b.Fatal("no reply")
				}
			}
		})
	}
}
