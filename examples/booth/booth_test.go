// Package booth_test loads the Booth example as geoboothd -booth-config
// does, so that it cannot rot.
package booth_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/booth"
	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/boothsite"
	"github.com/geobooth/geobooth/dnsfail"
)

func TestTheExampleLoadsAsTheArbitratorReadsIt(t *testing.T) {
	cfg, err := boothconf.LoadConfig("booth.conf")
	if err != nil {
		t.Fatal(err)
	}
	self, err := cfg.FindSelf([]netip.Addr{netip.MustParseAddr("203.0.113.13")})
	if err != nil || !self.Arbitrator {
		t.Fatalf("the arbitrator's address finds %+v, %v", self, err)
	}
	if _, err := booth.NewArbiter(cfg, self.Address); err != nil {
		t.Fatal(err)
	}
	var sites []string
	for _, m := range cfg.Members {
		if !m.Arbitrator {
			sites = append(sites, m.Address.String())
		}
	}
	dc := dnsfail.Default()
	dc.Listen, dc.ZonesFile = "203.0.113.13:53", "dns.toml"
	if errs := dc.Load(".", sites); len(errs) > 0 {
		t.Fatalf("dns.toml: %v", errs)
	}
	if len(dc.Zones) != 1 || len(dc.Zones[0].Failover) != 1 || dc.Zones[0].Failover[0].Ticket != "web" {
		t.Fatalf("zones %+v", dc.Zones)
	}
}

// The site's volumes file is what a site checks: on a ticket of
// booth.conf, the peer the other site (its key and certificates are the
// operator's, so they are pointed at the test's).
func TestTheSitesVolumesFileLoads(t *testing.T) {
	cfg, err := boothconf.LoadConfig("booth.conf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("volumes-east.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "replication.key")
	if err := os.WriteFile(key, []byte("a replication key of the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), `auth_key_file = "/etc/geobooth/replication.key"`, `auth_key_file = "`+key+`"`, 1)
	text = text[:strings.Index(text, "[tls]")] + text[strings.Index(text, "[[volumes]]"):]
	path := filepath.Join(dir, "volumes.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := boothsite.Load(path, cfg, netip.MustParseAddr("203.0.113.11"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Volumes[0]; v.Ticket != "web" || v.Peers[0].Name != "203.0.113.12" {
		t.Fatalf("loaded %+v", v)
	}
}
