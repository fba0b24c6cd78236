package cluster

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 19: kill -HUP terminated geoboothd at once. It now reloads
// (TLS files included) and goes on.
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
		if !strings.Contains(string(b), "SIGHUP: configuration reloaded") {
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

// waitLog waits until m's log holds want, counted from offset.
func waitLog(t *testing.T, m *tc.Member, offset int, want string) {
	t.Helper()
	tc.Eventually(t, 10*time.Second, func() error {
		b, _ := os.ReadFile(m.LogPath)
		if len(b) < offset || !strings.Contains(string(b[offset:]), want) {
			return fmt.Errorf("no %q in the log yet", want)
		}
		return nil
	})
}

func logSize(m *tc.Member) int {
	b, _ := os.ReadFile(m.LogPath)
	return len(b)
}

// Issue 19: SIGHUP reloads what can change live. A changed zone file is
// served; a broken one is refused with -check's message and the old zone
// still answers; a change that needs a restart is named and refused; a
// new API token replaces the old one; the daemon never exits.
func TestHUPReloadsZonesAndTokens(t *testing.T) {
	dig := tc.RequireTool(t, "dig", "bind9-dnsutils")
	port := tc.FreePort(t)
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		Extra: func(m *tc.Member) string {
			if m.Name != "arbitrator" {
				return ""
			}
			return fmt.Sprintf("[dns]\nlisten = \"127.0.0.1:%d\"\nzones_file = \"dns.toml\"\n", port)
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
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
	write("example.test.zone", zone)
	write("dns.toml", zones)
	exampleDNSSECKey(t, c.Dir)
	c.StartAll()
	arb := c.Member("arbitrator")
	lookup := func(name string) string {
		out, err := exec.Command(dig, "@127.0.0.1", "-p", fmt.Sprint(port), "+short", "+tries=1", "+time=2", name, "A").CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	hup := func(want string) {
		t.Helper()
		off := logSize(arb)
		if err := syscall.Kill(arb.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitLog(t, arb, off, want)
		if !arb.Running() {
			t.Fatal("the daemon exited on SIGHUP")
		}
	}
	if got := lookup("reload.example.test."); got != "" {
		t.Fatalf("reload.example.test. before the reload: %q", got)
	}

	write("example.test.zone", append(append([]byte{}, zone...), "reload A 192.0.2.99\n"...))
	hup("SIGHUP: configuration reloaded")
	if got := lookup("reload.example.test."); got != "192.0.2.99" {
		t.Fatalf("reload.example.test. after the reload: %q", got)
	}

	write("example.test.zone", append(append([]byte{}, zone...), "bad A 999.1.1.1\n"...))
	hup("the running configuration stays")
	if got := lookup("reload.example.test."); got != "192.0.2.99" {
		t.Fatalf("the previous zone no longer answers after a refused reload: %q", got)
	}

	// A change of what needs a restart is named, and nothing is applied.
	write("example.test.zone", zone)
	cfg, err := os.ReadFile(arb.Config)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Base(arb.Config), []byte(strings.Replace(string(cfg), arb.API, fmt.Sprintf("127.0.0.1:%d", tc.FreePort(t)), 1)))
	hup("api.listen changed, which needs a restart")
	if got := lookup("reload.example.test."); got != "192.0.2.99" {
		t.Fatalf("a refused reload applied the zone: %q", got)
	}
	write(filepath.Base(arb.Config), cfg)

	// A new API token: the old one is refused from now on.
	old := c.Token
	if code := deleteAttrOf(t, arb, "web", old); code != http.StatusOK && code != http.StatusNotFound {
		t.Fatalf("the token before the reload: %d", code)
	}
	write("api.token", []byte("0123456789abcdef0123456789abcdef-new\n"))
	hup("SIGHUP: configuration reloaded")
	if got := lookup("reload.example.test."); got != "" {
		t.Fatalf("reload.example.test. after restoring the zone: %q", got)
	}
	if code := deleteAttrOf(t, arb, "web", old); code != http.StatusUnauthorized {
		t.Fatalf("the old token after the reload: %d, want 401", code)
	}
	if code := deleteAttrOf(t, arb, "web", "0123456789abcdef0123456789abcdef-new"); code == http.StatusUnauthorized {
		t.Fatal("the new token refused after the reload")
	}
}

// deleteAttrOf deletes an attribute of ticket with token and returns the
// status.
func deleteAttrOf(t *testing.T, m *tc.Member, ticket, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+m.API+"/api/v1/tickets/"+ticket+"/attrs/nosuch", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
