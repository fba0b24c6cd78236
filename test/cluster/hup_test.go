package cluster

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 19: kill -HUP terminated geoboothd at once. It now re-reads its
// TLS files and goes on; so does a member with TLS.
func TestHUPDoesNotTerminateTheDaemon(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		TLS:     true,
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	arb := c.Member("arbitrator")
	if err := syscall.Kill(arb.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		b, _ := os.ReadFile(arb.LogPath)
		if !strings.Contains(string(b), "SIGHUP: TLS files re-read") {
			return fmt.Errorf("no SIGHUP line in the log yet")
		}
		return nil
	})
	if !arb.Running() {
		t.Fatal("the daemon exited on SIGHUP")
	}
	if _, err := arb.Tickets(); err != nil {
		t.Fatalf("the API after SIGHUP: %v", err)
	}
}
