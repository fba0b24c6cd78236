package boothmix

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// geoboothd as a site of a Booth cluster, beside a boothd site and a
// boothd arbitrator: east is geoboothd without an authfile, and, mirrored,
// west is with one. A grant at geoboothd with the booth client; every
// member's booth list shows it; geoboothd's CIB has it; geoboothd, then
// the arbitrator, restart mid-lease and the ticket stays; a manual ticket
// is granted and revoked; geoboothd is killed and the boothd site takes
// the ticket after the lease; geoboothd comes back as a follower; the
// boothd site is killed and geoboothd takes the ticket back; a revoke
// asked at the boothd site is redirected to geoboothd; geoboothd leads
// again until its before-acquire handler fails, and steps down. No two
// sites' CIBs hold the ticket at once.
func TestGeoboothdIsASiteOfABoothCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the daemons run as their own processes: the race pass has nothing to find here")
	}
	t.Parallel() // each in namespaces of its own
	requirePeers(t)
	bin := buildGeoboothd(t, t.TempDir())
	for _, c := range []struct {
		name string
		geo  int // the site geoboothd runs
		auth bool
	}{{"geoboothd east, no authfile", 0, false}, {"geoboothd west, authfile", 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mixedSites(t, bin, c.geo, c.auth)
		})
	}
}

func mixedSites(t *testing.T, bin string, geo int, auth bool) {
	dir := shortDir(t)
	net := []string{"10.81.0.", "10.82.0."}[geo]
	addrs := []string{net + "1", net + "2", net + "3"}
	names := []string{"east", "west", "arbitrator"}
	confPath := writeBoothConf(t, dir, addrs, auth)
	// The handler fails at a site once a file names it.
	handler := filepath.Join(dir, "handler")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\ntest ! -e "+dir+"/fail-$BOOTH_LOCAL\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, confPath, "    before-acquire-handler = "+handler+"\nticket = \"db\"\n    mode = manual\n")
	ns := testenv.IPv4Namespaces(t, fmt.Sprintf("s%d", geo), addrs...)
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(events, 0o666); err != nil {
		t.Fatal(err)
	}
	members := make([]*member, 3)
	for i := range 3 {
		env := []string{"env"}
		if i < 2 {
			cib := filepath.Join(dir, names[i]+"-cib.xml")
			emptyCIB(t, cib)
			env = append(env, "PATH="+wrapper(t, dir, names[i], events)+":"+os.Getenv("PATH"), "CIB_file="+cib)
		}
		args := append(ns.Exec(i).Args, env...)
		if i == geo {
			args = append(args, bin, "-booth-config", confPath)
		} else {
			args = append(args, "boothd", "daemon", "-S", "-D", "-c", confPath, "-l", filepath.Join(dir, names[i]+".pid"))
		}
		members[i] = &member{name: names[i], log: filepath.Join(dir, names[i]+".log"), args: args}
	}
	for _, m := range members {
		m.start(t)
		t.Cleanup(func() { m.stop(syscall.SIGKILL) })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range members {
				b, _ := os.ReadFile(m.log)
				t.Logf("%s log:\n%s", m.name, tail(string(b), 60))
			}
		}
	})
	booth := func(i int, args ...string) (string, error) {
		out, err := ns.Exec(i, append([]string{"booth", args[0], "-c", confPath, "-s", addrs[i]}, args[1:]...)...).CombinedOutput()
		return string(out), err
	}
	leaderAt := func(i int, want string) func() error {
		return func() error {
			out, err := booth(i, "list")
			if err != nil || !strings.Contains(out, "ticket: web, leader: "+want) {
				return fmt.Errorf("booth list at %s: %v %q, want leader %s", names[i], err, out, want)
			}
			return nil
		}
	}
	other := 1 - geo

	testenv.Eventually(t, 30*time.Second, func() error {
		if out, err := booth(geo, "grant", "web"); err != nil {
			return fmt.Errorf("booth grant at geoboothd (%s): %v %s", names[geo], err, out)
		}
		return nil
	})
	for i := range members {
		testenv.Eventually(t, 20*time.Second, leaderAt(i, addrs[geo]))
	}
	testenv.Eventually(t, 2*expire, granted(t, events, names[geo]))

	// geoboothd restarts mid-lease: it finds the grant in its CIB and
	// takes the ticket back before the lease ends; nobody else holds it.
	members[geo].stop(syscall.SIGTERM)
	members[geo].start(t)
	testenv.Eventually(t, 20*time.Second, leaderAt(geo, addrs[geo]))
	for i := range members {
		if err := leaderAt(i, addrs[geo])(); err != nil {
			t.Fatalf("after geoboothd's restart mid-lease: %v", err)
		}
	}

	// The boothd arbitrator restarts mid-lease: nothing moves.
	members[2].stop(syscall.SIGTERM)
	members[2].start(t)
	testenv.Eventually(t, 20*time.Second, leaderAt(2, addrs[geo]))
	if err := leaderAt(other, addrs[geo])(); err != nil {
		t.Fatalf("after the arbitrator's restart: %v", err)
	}

	// A manual ticket: granted at geoboothd at once, without expiry, then
	// revoked.
	if out, err := booth(geo, "grant", "db"); err != nil {
		t.Fatalf("booth grant db (manual) at geoboothd: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		out, err := booth(other, "list")
		if err != nil || !strings.Contains(out, "ticket: db, leader: "+addrs[geo]+", expires: INF [manual mode]") {
			return fmt.Errorf("booth list at %s: %v %q", names[other], err, out)
		}
		return nil
	})
	if out, err := booth(geo, "revoke", "db"); err != nil {
		t.Fatalf("booth revoke db at geoboothd: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		cmd := exec.Command("crm_ticket", "-t", "db", "-q")
		cmd.Env = append(os.Environ(), "CIB_file="+filepath.Join(dir, names[geo]+"-cib.xml"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `granted="false"`) {
			return fmt.Errorf("db in geoboothd's CIB: %v %s", err, out)
		}
		return nil
	})

	// geoboothd dies: the boothd site takes the ticket after the lease.
	killed := testenv.Monotonic()
	members[geo].stop(syscall.SIGKILL)
	testenv.Eventually(t, expire+acquireAfter+20*timeout, leaderAt(other, addrs[other]))
	t.Logf("%s (boothd) leads %v after geoboothd was killed", names[other], (testenv.Monotonic() - killed).Round(100*time.Millisecond))
	testenv.Eventually(t, 2*expire, granted(t, events, names[other]))

	// geoboothd comes back as a follower; then the boothd site dies and
	// geoboothd takes the ticket.
	members[geo].start(t)
	testenv.Eventually(t, 20*time.Second, leaderAt(geo, addrs[other]))
	killedOther := testenv.Monotonic()
	members[other].stop(syscall.SIGKILL)
	testenv.Eventually(t, expire+acquireAfter+20*timeout, leaderAt(geo, addrs[geo]))
	t.Logf("%s (geoboothd) leads %v after boothd was killed", names[geo], (testenv.Monotonic() - killedOther).Round(100*time.Millisecond))
	testenv.Eventually(t, 2*expire, granted(t, events, names[geo]))

	// The boothd site comes back; a revoke asked there goes to geoboothd.
	members[other].start(t)
	testenv.Eventually(t, 20*time.Second, leaderAt(other, addrs[geo]))
	if out, err := booth(other, "revoke", "web"); err != nil {
		t.Fatalf("booth revoke at %s (redirected to geoboothd): %v\n%s", names[other], err, out)
	}
	for i := range members {
		testenv.Eventually(t, 10*time.Second, leaderAt(i, "none"))
	}

	// geoboothd leads again; its before-acquire handler starts failing:
	// it steps down at its next renewal and the boothd site takes over.
	testenv.Eventually(t, 30*time.Second, func() error {
		if out, err := booth(geo, "grant", "web"); err != nil {
			return fmt.Errorf("booth grant at geoboothd: %v %s", err, out)
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, leaderAt(other, addrs[geo]))
	if err := os.WriteFile(filepath.Join(dir, "fail-"+addrs[geo]), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := testenv.Monotonic()
	testenv.Eventually(t, expire+acquireAfter+20*timeout, leaderAt(other, addrs[other]))
	t.Logf("%s (boothd) leads %v after geoboothd's handler began to fail", names[other], (testenv.Monotonic() - failed).Round(100*time.Millisecond))
	ivs := grants(t, events, map[string]time.Duration{names[geo]: killed, names[other]: killedOther})
	checkNoOverlap(t, ivs)
	for _, iv := range ivs {
		t.Logf("%s held web for %v", iv.site, (iv.end - iv.start).Round(100*time.Millisecond))
	}
}

// granted: site's CIB was last written with the ticket granted.
func granted(t *testing.T, events, site string) func() error {
	return func() error {
		b, err := os.ReadFile(events)
		if err != nil {
			return err
		}
		last := ""
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.Contains(l, `"site":"`+site+`"`) {
				last = l
			}
		}
		if !strings.Contains(last, `"op":"grant"`) || !strings.Contains(last, `"rc":0`) {
			return fmt.Errorf("%s's last CIB write of web: %q, want a grant", site, last)
		}
		return nil
	}
}

// writeBoothConf writes the cluster's booth.conf (and its authfile).
func writeBoothConf(t *testing.T, dir string, addrs []string, auth bool) string {
	t.Helper()
	conf := "transport = UDP\nport = 9929\n"
	if auth {
		key := filepath.Join(dir, "authkey")
		if err := os.WriteFile(key, []byte("a shared booth key for the mixed test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += "authfile = " + key + "\n"
	}
	conf += fmt.Sprintf("site = %s\nsite = %s\narbitrator = %s\nticket = \"web\"\n    expire = %d\n    timeout = %d\n    retries = 3\n    renewal-freq = 5\n    acquire-after = %d\n",
		addrs[0], addrs[1], addrs[2], int(expire.Seconds()), int(timeout.Seconds()), int(acquireAfter.Seconds()))
	path := filepath.Join(dir, "booth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
