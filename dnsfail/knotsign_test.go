package dnsfail

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/geobooth/geobooth/kit/testenv"
)

// Issue 20: secondaries of a signed zone. A transfer carries the zone
// unsigned, so the deployment that works with any number of secondaries
// is a hidden primary: the members serve the zone unsigned to signing
// secondaries (Knot with dnssec-signing, examples/geo/secondaries/
// knot-signing.conf), and only those are in the parent's NS set, with
// Knot's key's DS. Knot signs what it transfers and follows a failover:
// delv with Knot's key as the anchor validates the failover answer before
// and after the move.
func TestKnotSignsTheZoneItTransfers(t *testing.T) {
	knotAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	o := &owners{}
	o.set("east", time.Time{})
	cfg := testConfig(t, testZone, nil, func(z *ZoneConfig) { z.Notify = []NotifyTarget{{Address: knotAddr}} })
	s := startServer(t, cfg, o, "east", nil)
	snippet, err := os.ReadFile(filepath.Join("..", "examples", "geo", "secondaries", "knot-signing.conf"))
	if err != nil {
		t.Fatal(err)
	}
	primary := strings.Replace(s.Addrs()[1], ":", "@", 1)
	body := strings.NewReplacer("203.0.113.11@53", primary, "203.0.113.12@53", primary, "203.0.113.13@53", primary,
		"203.0.113.11", "127.0.0.1", "203.0.113.12", "127.0.0.1", "203.0.113.13", "127.0.0.1").Replace(string(snippet))
	knot(t, knotAddr, func(dir string) string {
		return "template:\n  - id: default\n    storage: " + dir + "/zones\n" + body
	}, nil)
	var anchors string
	testenv.Eventually(t, 20*time.Second, func() error {
		q := new(dns.Msg)
		q.SetQuestion("example.test.", dns.TypeDNSKEY)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, knotAddr)
		if err != nil {
			return err
		}
		var key string
		for _, rr := range r.Answer {
			if k, ok := rr.(*dns.DNSKEY); ok && k.Flags == 257 {
				key = fmt.Sprintf("trust-anchors {\n  example.test. static-key %d %d %d \"%s\";\n};\n", k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
			}
		}
		if key == "" {
			return fmt.Errorf("Knot serves no key yet: %v", r.Answer)
		}
		anchors = filepath.Join(t.TempDir(), "anchors.conf")
		return os.WriteFile(anchors, []byte(key), 0o644)
	})
	validated := func(want string) error {
		out := delv(t, knotAddr, anchors, "www.example.test.", "A")
		if !strings.Contains(out, "fully validated") || !strings.Contains(out, want) {
			return fmt.Errorf("delv at Knot:\n%s", out)
		}
		return nil
	}
	testenv.Eventually(t, 10*time.Second, func() error { return validated("127.0.0.11") })
	o.set("west", time.Time{})
	s.Changed()
	testenv.Eventually(t, 10*time.Second, func() error { return validated("127.0.0.12") })
	if out, err := exec.Command("delv", "@127.0.0.1", "-p", strings.Split(knotAddr, ":")[1], "-a", anchors, "+root=example.test.", "+tcp",
		"nope.example.test.", "A").CombinedOutput(); err != nil || !strings.Contains(string(out), "fully validated") {
		t.Fatalf("NXDOMAIN at Knot: %v\n%s", err, out)
	}
}
