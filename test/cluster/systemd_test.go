package cluster

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 19: the unit is Type=notify. A member started as systemd would
// (NOTIFY_SOCKET, WATCHDOG_USEC) says READY=1 once it serves, feeds the
// watchdog from its ticket loop, and says STOPPING=1 when it stops.
func TestSystemdNotifyReadyWatchdogStopping(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	arb := c.Member("arbitrator")
	arb.Env = append(arb.Env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	started := time.Now()
	c.StartAll()
	var got []string
	recv := func() string {
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 4096)
		n, err := conn.Read(b)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(b[:n]))
		return string(b[:n])
	}
	if m := recv(); !strings.HasPrefix(m, "READY=1\n") || !strings.Contains(m, "STATUS=member arbitrator") {
		t.Fatalf("first notification %q, want READY=1 with a status", m)
	}
	// Ready means serving: the API answers.
	if _, err := arb.Tickets(); err != nil {
		t.Fatalf("READY=1 sent but the API does not answer: %v", err)
	}
	for i := 0; i < 3; i++ {
		if m := recv(); m != "WATCHDOG=1\n" {
			t.Fatalf("notification %q, want WATCHDOG=1", m)
		}
	}
	arb.Stop()
	for {
		if m := recv(); m == "STOPPING=1\n" {
			break
		} else if m != "WATCHDOG=1\n" {
			t.Fatalf("notification %q while stopping", m)
		}
	}
	t.Logf("ready, 3 keep-alives and stopping within %v", time.Since(started).Round(time.Millisecond))
}
