package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 20: secondaries that listed one member as primary kept answering
// east's address after a kill -9 of east ("no usable master"), and NOTIFY
// was signed with transfer_key, so a secondary that accepts NOTIFY by
// address refused it. NSD and Knot, configured from the examples'
// snippets (every member a primary), follow a failover after kill -9 of
// the owner, with unsigned NOTIFY (examples/local) and with TSIG-signed
// NOTIFY and transfers (examples/geo).
func TestSecondariesFollowAFailoverFromEveryMember(t *testing.T) {
	for _, signed := range []bool{false, true} {
		name := "unsigned NOTIFY (examples/local)"
		if signed {
			name = "TSIG-signed NOTIFY and transfers (examples/geo)"
		}
		t.Run(name, func(t *testing.T) {
			slow(t)
			secondariesFollow(t, signed)
		})
	}
}

func secondariesFollow(t *testing.T, signed bool) {
	nsdBin := tc.RequireTool(t, "nsd", "nsd")
	knotBin := tc.RequireTool(t, "knotd", "knot")
	c, ports := dnsMembers(t, func(string) string { return "dns.toml" })
	copyExampleZones(t, c.Dir)
	nsdPort, knotPort := tc.FreePort(t), tc.FreePort(t)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(secret)

	// The members' zones file: the example's, with the secondaries to
	// NOTIFY (and the key, signed).
	zones, err := os.ReadFile(filepath.Join(c.Dir, "dns.toml"))
	if err != nil {
		t.Fatal(err)
	}
	notify := fmt.Sprintf(`notify = ["127.0.0.1:%d", "127.0.0.1:%d"]`, nsdPort, knotPort)
	keys := ""
	if signed {
		notify = fmt.Sprintf("transfer_key = \"xfr\"\nnotify = [{ address = \"127.0.0.1:%d\", key = \"xfr\" }, { address = \"127.0.0.1:%d\", key = \"xfr\" }]", nsdPort, knotPort)
		keys = fmt.Sprintf("[[keys]]\nname = \"xfr\"\nsecret = %q\n\n", b64)
	}
	const anchor = `allow_transfer = ["127.0.0.1"]`
	if !strings.Contains(string(zones), anchor) {
		t.Fatalf("examples/local/dns.toml has no %s line", anchor)
	}
	zones = []byte(keys + strings.Replace(string(zones), anchor, anchor+"\n"+notify, 1))
	// Secondaries transfer the zone unsigned (docs/dns.md): this test is
	// about NOTIFY and transfers, on the zone without DNSSEC.
	zones = []byte(strings.Replace(string(zones), `dnssec_keys = ["run/example.test.key"]`, "", 1))
	if err := os.WriteFile(filepath.Join(c.Dir, "dns.toml"), zones, 0o600); err != nil {
		t.Fatal(err)
	}

	// The secondaries, from the examples' snippets, addresses replaced by
	// the test's.
	example := "local"
	if signed {
		example = "geo"
	}
	snippet := func(file string, replace ...string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", example, "secondaries", file))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer(replace...).Replace(string(b))
		if signed && !strings.Contains(s, b64) {
			t.Fatalf("the %s snippet has no secret to replace", file)
		}
		return s
	}
	var nsdAddrs, knotAddrs []string
	for i, m := range []string{"east", "west", "arbitrator"} {
		if signed {
			geo := fmt.Sprintf("203.0.113.%d", 11+i)
			nsdAddrs = append(nsdAddrs, geo+"@53", fmt.Sprintf("127.0.0.1@%d", ports[m]), geo, "127.0.0.1")
			knotAddrs = append(knotAddrs, geo+"@53", fmt.Sprintf("127.0.0.1@%d", ports[m]), geo, "127.0.0.1")
		} else {
			local := fmt.Sprintf("127.0.0.1@%d", 5301+i)
			nsdAddrs = append(nsdAddrs, local, fmt.Sprintf("127.0.0.1@%d", ports[m]))
			knotAddrs = append(knotAddrs, local, fmt.Sprintf("127.0.0.1@%d", ports[m]))
		}
	}
	secretRepl := []string{"REPLACE-WITH-THE-BASE64-SECRET", b64}
	dir := t.TempDir()
	nsdDir, knotDir := filepath.Join(dir, "nsd"), filepath.Join(dir, "knot")
	for _, d := range []string{nsdDir, knotDir, filepath.Join(knotDir, "db"), filepath.Join(knotDir, "zones")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nsdConf := fmt.Sprintf(`server:
    ip-address: 127.0.0.1@%d
    port: %d
    username: ""
    chroot: ""
    zonesdir: %q
    database: ""
    pidfile: "%s/nsd.pid"
    xfrdfile: "%s/xfrd.state"
    zonelistfile: "%s/zone.list"
    logfile: "%s/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
`, nsdPort, nsdPort, nsdDir, nsdDir, nsdDir, nsdDir, nsdDir) + snippet("nsd.conf", append(secretRepl, nsdAddrs...)...)
	knotConf := fmt.Sprintf(`server:
    listen: 127.0.0.1@%d
    rundir: %s
    user: root:root
database:
    storage: %s/db
log:
  - target: %s/knot.log
    any: info
template:
  - id: default
    storage: %s/zones
`, knotPort, knotDir, knotDir, knotDir, knotDir) + snippet("knot.conf", append(secretRepl, knotAddrs...)...)
	for file, conf := range map[string]string{filepath.Join(nsdDir, "nsd.conf"): nsdConf, filepath.Join(knotDir, "knot.conf"): knotConf} {
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.StartAll()
	for _, cmd := range []*exec.Cmd{
		exec.Command(nsdBin, "-d", "-c", filepath.Join(nsdDir, "nsd.conf")),
		exec.Command(knotBin, "-c", filepath.Join(knotDir, "knot.conf")),
	} {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{filepath.Join(nsdDir, "nsd.log"), filepath.Join(knotDir, "knot.log")} {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	secondaries := map[string]string{"NSD": fmt.Sprintf("127.0.0.1:%d", nsdPort), "Knot": fmt.Sprintf("127.0.0.1:%d", knotPort)}
	follow := func(want string, members []string, timeout time.Duration) {
		t.Helper()
		tc.Eventually(t, timeout, func() error {
			for _, m := range members {
				if a, err := wwwA(fmt.Sprintf("127.0.0.1:%d", ports[m]), time.Second); err != nil || a != want {
					return fmt.Errorf("%s answers %q (%v), want %s", m, a, err, want)
				}
			}
			return nil
		})
		at := time.Now()
		tc.Eventually(t, 15*time.Second, func() error {
			for name, addr := range secondaries {
				if a, err := wwwA(addr, time.Second); err != nil || a != want {
					return fmt.Errorf("%s answers %q (%v), want %s", name, a, err, want)
				}
			}
			return nil
		})
		t.Logf("both secondaries answered %s %v after the members did", want, time.Since(at).Round(time.Millisecond))
	}

	east := c.Member("east")
	if out, errOut, code := east.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %d %s %s", code, out, errOut)
	}
	follow("127.0.0.11", []string{"east", "west", "arbitrator"}, 30*time.Second)
	east.Kill()
	follow("127.0.0.12", []string{"west", "arbitrator"}, 60*time.Second)
	st, _, _ := c.Member("west").Ctl("dns")
	for _, name := range []string{"NSD", "Knot"} {
		port := nsdPort
		if name == "Knot" {
			port = knotPort
		}
		want := fmt.Sprintf("NOTIFY 127.0.0.1:%d (unsigned)", port)
		if signed {
			want = fmt.Sprintf("NOTIFY 127.0.0.1:%d (signed with xfr.)", port)
		}
		if !strings.Contains(st, want) {
			t.Errorf("west's ticketctl dns does not show %q:\n%s", want, st)
		}
	}
}
