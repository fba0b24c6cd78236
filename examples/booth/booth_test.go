// Package booth_test loads the Booth example as geoboothd -booth-config
// does, so that it cannot rot.
package booth_test

import (
	"net/netip"
	"testing"

	"github.com/geobooth/geobooth/booth"
	"github.com/geobooth/geobooth/booth/boothconf"
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
