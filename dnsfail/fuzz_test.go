package dnsfail

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds the query handler random messages: it must never
// panic, and every reply must pack, echo the ID, and fit the client's UDP
// size once truncated; the zone is signed.
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name string
		t    uint16
	}{{"www.example.test.", dns.TypeA}, {"example.test.", dns.TypeANY}, {"app.example.test.", dns.TypeA},
		{"big.example.test.", dns.TypeA}, {"x.sub.example.test.", dns.TypeA}, {"example.test.", dns.TypeAXFR}, {"example.org.", dns.TypeA}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		b, _ := m.Pack()
		f.Add(b, false)
		m.SetEdns0(4096, true)
		b, _ = m.Pack()
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, false)
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	// Signed, so that the queries with DO go through the signing too.
	keys := []string{dnssecKeyFile(f)}
	cfg := testConfig(f, bigZone(), nil, func(z *ZoneConfig) { z.DNSSECKeys = keys })
	s, err := New(Options{Config: cfg, Self: "east", StateDir: filepath.Join(f.TempDir(), "dns"), Owners: o.get})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return // the server answers FORMERR before the handler
		}
		if req.Response {
			return // ignored by the accept function
		}
		m, xfr := s.answer(query{msg: req, tcp: tcp, remote: net.IPv4(127, 0, 0, 1)}, time.Now())
		if xfr != nil {
			if !tcp || len(req.Question) != 1 {
				t.Fatalf("transfer over UDP or without a question")
			}
			return
		}
		if m.Id != req.Id || !m.Response {
			t.Fatalf("reply does not match the query: %v", m)
		}
		if !tcp {
			m.Truncate(udpSize(req))
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, m)
		}
		if !tcp && len(b) > udpSize(req) {
			t.Fatalf("UDP reply of %d bytes for a client taking %d", len(b), udpSize(req))
		}
	})
}

// FuzzHealthReport: a peer's report either decodes to known states or is
// refused.
func FuzzHealthReport(f *testing.F) {
	for _, p := range encodeReports(map[string]hstate{"tcp://127.0.0.1:80": stateUp, "http://x/": stateDown}, 400) {
		f.Add(p)
	}
	f.Add([]byte(`{"s":{"a":"sideways"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		states, err := decodeReport(b)
		if err != nil {
			return
		}
		for k, v := range states {
			if v != stateUp && v != stateDown && v != stateUnknown {
				t.Fatalf("%q: state %q accepted", k, v)
			}
		}
	})
}

// FuzzSerialReport: a member's serial report either decodes to zones with
// well-formed digests or is refused; a server taking it keeps only the
// zones it serves, and its own serial never goes back.
func FuzzSerialReport(f *testing.F) {
	for _, p := range encodeSerials(map[string]serialAdvert{"example.test.": {Serial: 9, Digest: "00112233445566ff"}, "other.test.": {Serial: 1, Digest: "ffeeddccbbaa9988"}}, 400) {
		f.Add(p)
	}
	f.Add([]byte(`{"z":{"example.test.":{"s":4294967295,"d":"0011223344556677"}}}`))
	f.Add([]byte(`{"z":{"example.test":{"s":1,"d":"zz"}}}`))
	s, _ := runServer(f, Options{Config: testConfig(f, testZone, nil, nil), Self: "east", StateDir: f.TempDir(), Owners: (&owners{}).get})
	z := s.set.Load().zones[0]
	f.Fuzz(func(t *testing.T, b []byte) {
		adv, err := decodeSerials(b)
		if err == nil {
			for origin, a := range adv {
				if len(a.Digest) != 16 || origin == "" || origin[len(origin)-1] != '.' {
					t.Fatalf("%q: %+v accepted", origin, a)
				}
			}
		}
		before := s.serial(z)
		s.ReceiveSerials("west", b)
		s.settleAll(time.Now(), "")
		if after := s.serial(z); newer(before, after) {
			t.Fatalf("serial went back from %d to %d", before, after)
		}
		s.mu.Lock()
		for origin := range s.peerSerials["west"] {
			if origin != z.origin {
				t.Errorf("kept a report for %q, a zone not served", origin)
			}
		}
		s.mu.Unlock()
	})
}

// FuzzUDP feeds raw datagrams to the UDP path (the fast-path parser, the
// wire cache and the full path): no panic, and every reply unpacks with
// the request's ID and fits the client's size.
func FuzzUDP(f *testing.F) {
	for _, name := range []string{"www.example.test.", "WWW.example.TEST.", "big.example.test.", "nope.example.test.", "example.org."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		b, _ := m.Pack()
		f.Add(b)
		m.SetEdns0(1232, false)
		b, _ = m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0})
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s, err := New(Options{Config: testConfig(f, bigZone(), nil, nil), Self: "east", StateDir: filepath.Join(f.TempDir(), "dns"), Owners: o.get})
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5353")
	f.Fuzz(func(t *testing.T, req []byte) {
		for i := 0; i < 2; i++ { // the second time from the cache
			out := s.handleUDP(make([]byte, 0, 512), req, from, make([]byte, 0, 300), time.Now())
			if out == nil {
				continue
			}
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil {
				if len(out) == 12 && out[3]&0x0f == dns.RcodeFormatError {
					continue // FORMERR header for an unparseable request
				}
				t.Fatalf("reply does not unpack: %v", err)
			}
			if len(req) >= 2 && m.Id != uint16(req[0])<<8|uint16(req[1]) {
				t.Fatalf("reply ID %d", m.Id)
			}
			if len(out) > 1232 {
				t.Fatalf("UDP reply of %d bytes", len(out))
			}
		}
	})
}
