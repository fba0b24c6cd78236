package dnsfail

import (
	"encoding/base64"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// signedQuery sends a query for www signed with key/secret over network
// and returns the answer as received (not verified).
func signedQuery(t *testing.T, network, addr, key, secret string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
	wire, _, err := dns.TsigGenerate(m, secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: c}
	if _, err := co.Write(wire); err != nil {
		t.Fatal(err)
	}
	b, err := co.ReadMsgHeader(nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", network, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("%s: answer: %v", network, err)
	}
	return r
}

// Issue 17, F11: a query signed with a key the server does not know got an
// ordinary unsigned answer. RFC 8945 §5.2: NOTAUTH with the TSIG error
// BADKEY (unknown key) or BADSIG (a MAC that does not verify), unsigned.
func TestQueriesWithABadTSIGAreRefusedWithItsError(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("a secret of thirty-two bytes....."))
	other := base64.StdEncoding.EncodeToString([]byte("another secret of 32 bytes......"))
	o := &owners{}
	o.set("east", time.Now().Add(time.Hour))
	s := startServer(t, testConfig(t, testZone, nil, func(z *ZoneConfig) {
		z.keys = map[string]KeyConfig{"xfr.": {Name: "xfr.", Algorithm: "hmac-sha256", Secret: secret}}
	}), o, "east", nil)
	for _, network := range []string{"udp", "tcp"} {
		addr := s.Addrs()[0]
		if network == "tcp" {
			addr = s.Addrs()[1]
		}
		for _, c := range []struct {
			key, secret string
			rcode       int
			tsigErr     uint16
		}{
			{"nokey.", secret, dns.RcodeNotAuth, dns.RcodeBadKey},
			{"xfr.", other, dns.RcodeNotAuth, dns.RcodeBadSig},
			{"xfr.", secret, dns.RcodeSuccess, 0},
		} {
			r := signedQuery(t, network, addr, c.key, c.secret)
			tsig := r.IsTsig()
			if r.Rcode != c.rcode || tsig == nil || tsig.Error != c.tsigErr {
				t.Errorf("%s, key %s: rcode %s, TSIG %v; want %s with TSIG error %s", network, c.key,
					dns.RcodeToString[r.Rcode], tsig, dns.RcodeToString[c.rcode], dns.RcodeToString[int(c.tsigErr)])
				continue
			}
			if c.tsigErr != 0 && (tsig.MAC != "" || len(r.Answer) != 0) {
				t.Errorf("%s, key %s: the refusal carries a MAC or an answer: %v", network, c.key, r)
			}
		}
	}
}
