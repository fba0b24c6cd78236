package cluster

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 20: members served different serials for the same content (east
// and the arbitrator 1796195907, west 1796195910 after restarts), so a
// secondary pulling from several members saw serials jump back and forth.
// After a grant, a move and a restart of one member, dig SOA gives the
// same serial at every member, and no member's serial ever goes back.
func TestOneSerialOnEveryMember(t *testing.T) {
	slow(t)
	c, ports := dnsMembers(t, func(string) string { return "dns.toml" })
	copyExampleZones(t, c.Dir)
	c.StartAll()
	names := []string{"east", "west", "arbitrator"}
	query := func(m string, name string, qtype uint16) (*dns.Msg, error) {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, fmt.Sprintf("127.0.0.1:%d", ports[m]))
		return r, err
	}
	soa := func(m string) (uint32, error) {
		r, err := query(m, "example.test.", dns.TypeSOA)
		if err != nil {
			return 0, err
		}
		if len(r.Answer) != 1 {
			return 0, fmt.Errorf("%s: SOA answer %v", m, r.Answer)
		}
		return r.Answer[0].(*dns.SOA).Serial, nil
	}
	// Every member's SOA, polled: a serial that goes back is a failure.
	var (
		mu        sync.Mutex
		last      = map[string]uint32{}
		violation string
	)
	stop := every(20*time.Millisecond, func() {
		for _, m := range names {
			s, err := soa(m)
			if err != nil {
				continue // a member restarting
			}
			mu.Lock()
			if prev, ok := last[m]; ok && int32(s-prev) < 0 && violation == "" {
				violation = fmt.Sprintf("%s's serial went back from %d to %d", m, prev, s)
			}
			last[m] = s
			mu.Unlock()
		}
	})
	agreed := func(what, www string) uint32 {
		t.Helper()
		var serial uint32
		tc.Eventually(t, 30*time.Second, func() error {
			serials := map[string]uint32{}
			for _, m := range names {
				r, err := query(m, "www.example.test.", dns.TypeA)
				if err != nil {
					return err
				}
				got := ""
				if len(r.Answer) == 1 {
					got = r.Answer[0].(*dns.A).A.String()
				}
				if got != www {
					return fmt.Errorf("%s: %s answers %q, want %q", what, m, got, www)
				}
				if serials[m], err = soa(m); err != nil {
					return err
				}
			}
			if serials["east"] != serials["west"] || serials["east"] != serials["arbitrator"] {
				return fmt.Errorf("%s: serials differ: %v", what, serials)
			}
			serial = serials["east"]
			return nil
		})
		return serial
	}
	east := c.Member("east")
	if out, errOut, code := east.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %d %s %s", code, out, errOut)
	}
	granted := agreed("after the grant", "127.0.0.11")
	if out, errOut, code := east.Ctl("move", "web", "west"); code != 0 {
		t.Fatalf("move: %d %s %s", code, out, errOut)
	}
	moved := agreed("after the move", "127.0.0.12")
	arb := c.Member("arbitrator")
	arb.Stop()
	arb.Start()
	arb.WaitUp(20 * time.Second)
	restarted := agreed("after a restart of the arbitrator", "127.0.0.12")
	stop()
	if violation != "" {
		t.Fatal(violation)
	}
	if int32(moved-granted) <= 0 || int32(restarted-moved) < 0 {
		t.Fatalf("serials: granted %d, moved %d, after the restart %d", granted, moved, restarted)
	}
	t.Logf("serials: granted %d, moved %d, after the restart %d", granted, moved, restarted)
}
