package cluster

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 19: a DNS port in use was reported about a second after
// "geoboothd started", as "*dnsfail.Server: DNS: listen udp …: listen udp
// …". The start now fails before "started", with one clear line.
func TestDNSPortInUseFailsTheStartClearly(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		Extra: func(m *tc.Member) string {
			if m.Name != "arbitrator" {
				return ""
			}
			return fmt.Sprintf("[dns]\nlisten = %q\nzones_file = \"dns.toml\"\n", busy.LocalAddr().String())
		},
	})
	copyExampleZones(t, c.Dir)
	arb := c.Member("arbitrator")
	arb.Start()
	tc.Eventually(t, 20*time.Second, func() error {
		if arb.Running() {
			return fmt.Errorf("still running")
		}
		return nil
	})
	b, _ := os.ReadFile(arb.LogPath)
	log := string(b)
	if strings.Contains(log, "geoboothd started") {
		t.Errorf("the log says started although DNS could not listen:\n%s", log)
	}
	want := "DNS: listen udp " + busy.LocalAddr().String() + ": bind: address already in use"
	if !strings.Contains(log, want) || strings.Count(log, "listen udp") != 1 || strings.Contains(log, "*dnsfail") {
		t.Errorf("want one line with %q:\n%s", want, log)
	}
}
