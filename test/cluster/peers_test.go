package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 19: members serving different zones files are shown (peers'
// ZONES column, a metric), as is each member's version and wire version;
// a reload that makes them equal clears it.
func TestPeersShowZonesMismatchVersionAndWire(t *testing.T) {
	c, _ := dnsMembers(t, func(m string) string { return "dns-" + m + ".toml" })
	zone, err := os.ReadFile(filepath.Join("..", "..", "examples", "local", "example.test.zone"))
	if err != nil {
		t.Fatal(err)
	}
	zones, err := os.ReadFile(filepath.Join("..", "..", "examples", "local", "dns.toml"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(c.Dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.Members {
		write("dns-"+m.Name+".toml", []byte(strings.Replace(string(zones), `file = "example.test.zone"`, `file = "`+m.Name+`.zone"`, 1)))
		z := zone
		if m.Name == "arbitrator" {
			z = append(append([]byte{}, zone...), "stale A 192.0.2.1\n"...)
		}
		write(m.Name+".zone", z)
	}
	exampleDNSSECKey(t, c.Dir)
	c.StartAll()
	east, arb := c.Member("east"), c.Member("arbitrator")
	peersRow := func(name string) []string {
		out, errOut, code := east.Ctl("peers")
		if code != 0 {
			t.Fatalf("peers: %d %s", code, errOut)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				return f
			}
		}
		t.Fatalf("no %s in\n%s", name, out)
		return nil
	}
	mismatch := regexp.MustCompile(`(?m)^geobooth_dns_zones_mismatch_members (\S+)$`)
	metric := func() string {
		body, err := east.Get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if g := mismatch.FindStringSubmatch(body); g != nil {
			return g[1]
		}
		return "absent"
	}
	tc.Eventually(t, 20*time.Second, func() error {
		if row := peersRow("arbitrator"); !strings.Contains(strings.Join(row, " "), "DIFFERS") {
			return fmt.Errorf("arbitrator's row %v", row)
		}
		if m := metric(); m != "1" {
			return fmt.Errorf("geobooth_dns_zones_mismatch_members %s", m)
		}
		return nil
	})
	row := strings.Join(peersRow("west"), " ")
	if !strings.Contains(row, " same ") || !strings.Contains(row, "ticket/1 replication/1") {
		t.Fatalf("west's row %q: want zones same and the wire versions", row)
	}
	body, _ := east.Get("/metrics")
	if !regexp.MustCompile(`geobooth_build_info\{goversion="go[^"]+",version="[^"]+",wire="ticket/1 replication/1"\} 1`).MatchString(body) {
		t.Fatal("no geobooth_build_info in the metrics")
	}

	write("arbitrator.zone", zone)
	off := logSize(arb)
	if err := syscall.Kill(arb.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, arb, off, "SIGHUP: configuration reloaded")
	tc.Eventually(t, 20*time.Second, func() error {
		if row := peersRow("arbitrator"); strings.Contains(strings.Join(row, " "), "DIFFERS") {
			return fmt.Errorf("arbitrator's row %v after the reload", row)
		}
		if m := metric(); m != "0" {
			return fmt.Errorf("geobooth_dns_zones_mismatch_members %s after the reload", m)
		}
		return nil
	})
}
