package boothmix

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/testenv"
)

// A rolling migration: a Booth cluster of three boothd holds web at east;
// the arbitrator, then west, then east (the leader, last) are replaced by
// geoboothd, each with DNS failover on the ticket, while the service keeps
// running; the all-geoboothd cluster fails over; then the cut-over to
// geobooth's own protocol (docs/booth.md), and the ticket is granted again
// at its site. Throughout, the sites' crm_ticket wrappers show no two sites
// granted at once, and no DNS answer names a site while the other holds
// the ticket; the time without any holder is reported.
func TestRollingMigrationFromBoothToGeoboothd(t *testing.T) {
	if testing.Short() {
		t.Skip("the daemons run as their own processes: the race pass has nothing to find here")
	}
	t.Parallel() // each in namespaces of its own
	requirePeers(t)
	bin := buildGeoboothd(t, t.TempDir())
	dir := shortDir(t)
	addrs := []string{"10.83.0.1", "10.83.0.2", "10.83.0.3"}
	names := []string{"east", "west", "arbitrator"}
	confPath := writeBoothConf(t, dir, addrs, true)
	zones := writeZones(t, dir, addrs[0], addrs[1])
	ns := testenv.IPv4Namespaces(t, "rm", addrs...)
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(events, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(events, 0o666); err != nil {
		t.Fatal(err)
	}
	// Each member's environment: a site's crm_ticket wrapper and CIB,
	// which boothd and then geoboothd use alike.
	env := make([][]string, 3)
	for i := range 3 {
		env[i] = []string{"env"}
		if i < 2 {
			cib := filepath.Join(dir, names[i]+"-cib.xml")
			emptyCIB(t, cib)
			env[i] = append(env[i], "PATH="+wrapper(t, dir, names[i], events)+":"+os.Getenv("PATH"), "CIB_file="+cib)
		}
	}
	boothd := func(i int) *member {
		args := append(append(ns.Exec(i).Args, env[i]...), "boothd", "daemon", "-S", "-D", "-c", confPath, "-l", filepath.Join(dir, names[i]+".pid"))
		return &member{name: names[i] + " (boothd)", log: filepath.Join(dir, names[i]+"-boothd.log"), args: args}
	}
	geoboothd := func(i int) *member {
		args := append(append(ns.Exec(i).Args, env[i]...), bin, "-booth-config", confPath, "-booth-dns", dnsAddr, "-booth-zones", zones,
			"-state-dir", filepath.Join(dir, names[i]+"-state"))
		return &member{name: names[i] + " (geoboothd)", log: filepath.Join(dir, names[i]+"-geoboothd.log"), args: args}
	}
	var all []*member
	run := func(m *member) *member {
		m.start(t)
		all = append(all, m)
		return m
	}
	t.Cleanup(func() {
		for _, m := range all {
			m.stop(syscall.SIGKILL)
		}
		if t.Failed() {
			for _, m := range all {
				b, _ := os.ReadFile(m.log)
				t.Logf("%s log:\n%s", m.name, tail(string(b), 40))
			}
		}
	})
	members := []*member{run(boothd(0)), run(boothd(1)), run(boothd(2))}
	booth := func(i int, args ...string) (string, error) {
		out, err := ns.Exec(i, append([]string{"booth", args[0], "-c", confPath, "-s", addrs[i]}, args[1:]...)...).CombinedOutput()
		return string(out), err
	}
	leader := func(i int) string {
		out, _ := booth(i, "list")
		for _, a := range addrs[:2] {
			if strings.Contains(out, "ticket: web, leader: "+a) {
				return a
			}
		}
		return ""
	}
	allFollow := func(want string) func() error {
		return func() error {
			for i := range 3 {
				if got := leader(i); got != want {
					return fmt.Errorf("%s says the leader is %q, want %s", names[i], got, want)
				}
			}
			return nil
		}
	}
	var samplers []func() []answer
	for i := range 3 {
		samplers = append(samplers, sampleDNS(t, ns, i))
	}

	testenv.Eventually(t, 30*time.Second, func() error {
		if out, err := booth(0, "grant", "web"); err != nil {
			return fmt.Errorf("booth grant at east: %v %s", err, out)
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, allFollow(addrs[0]))
	testenv.Eventually(t, 2*expire, granted(t, events, "east"))
	start := testenv.Monotonic()

	// One member at a time, the leader last; each replacement is done
	// once every member agrees on a leader again and that leader renewed
	// its lease through the new member (the arbitrator's list shows a
	// later expiry).
	expiry := func() string {
		out, _ := booth(2, "list")
		_, e, _ := strings.Cut(out, "expires: ")
		e, _, _ = strings.Cut(e, "\n")
		return e
	}
	for _, i := range []int{2, 1, 0} {
		members[i].stop(syscall.SIGTERM)
		members[i] = run(geoboothd(i))
		testenv.Eventually(t, expire+acquireAfter+20*timeout, func() error {
			l := leader(2)
			if l == "" {
				return fmt.Errorf("no leader at the arbitrator")
			}
			return allFollow(l)()
		})
		before := expiry()
		testenv.Eventually(t, expire, func() error {
			if e := expiry(); e == before || e == "" {
				return fmt.Errorf("no renewal yet: expires %q", e)
			}
			return allFollow(leader(2))()
		})
		t.Logf("%s replaced by geoboothd: the leader is %s, renewed until %s", names[i], leader(2), expiry())
	}
	// The whole cluster is geoboothd: the ticket still moves on a failure.
	l := slices.Index(addrs, leader(2))
	killed := testenv.Monotonic()
	members[l].stop(syscall.SIGKILL)
	testenv.Eventually(t, expire+acquireAfter+20*timeout, func() error {
		if got := leader(2); got != addrs[1-l] {
			return fmt.Errorf("the arbitrator follows %q, want %s", got, addrs[1-l])
		}
		return nil
	})
	testenv.Eventually(t, 2*expire, granted(t, events, names[1-l]))
	t.Logf("all-geoboothd cluster: %s leads %v after %s was killed", names[1-l], (testenv.Monotonic() - killed).Round(100*time.Millisecond), names[l])
	afterKill := testenv.Monotonic()

	// The cut-over to geobooth's own protocol, as docs/booth.md says: the
	// cluster file from booth.conf, each member's file, every member
	// stopped, every member started on geobooth's protocol, the ticket
	// granted again at its site once the new members' first lease of
	// abstention is over.
	holder := 1 - l
	ctl := buildTicketctl(t, t.TempDir())
	files := nativeCluster(t, ctl, dir, confPath, addrs, env)
	for _, m := range members {
		m.stop(syscall.SIGTERM)
	}
	cut := testenv.Monotonic()
	for i := range 3 {
		args := append(append(ns.Exec(i).Args, env[i]...), bin, "-config", files[i])
		run(&member{name: names[i] + " (geobooth)", log: filepath.Join(dir, names[i]+"-native.log"), args: args})
	}
	token := filepath.Join(dir, "native", "api.token")
	testenv.Eventually(t, 3*(expire+acquireAfter), func() error {
		out, err := ns.Exec(holder, ctl, "-addr", addrs[holder]+":7800", "-token-file", token, "grant", "--no-wait", "web").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ticketctl grant at %s: %v %s", names[holder], err, out)
		}
		return nil
	})
	// Done once the new protocol's owner is the holder and its CIB was
	// granted since the cut-over.
	testenv.Eventually(t, 2*expire, func() error {
		out, err := ns.Exec(2, ctl, "-addr", addrs[2]+":7800", "-token-file", token, "list", "--json").CombinedOutput()
		var ts []api.Ticket
		if err != nil || json.Unmarshal(out, &ts) != nil || len(ts) != 1 || ts[0].Owner != []string{"site1", "site2"}[holder] {
			return fmt.Errorf("ticketctl list at the arbitrator: %v %s", err, out)
		}
		for _, iv := range grants(t, events, nil) {
			if iv.site == names[holder] && iv.start > cut {
				return nil
			}
		}
		return fmt.Errorf("%s's CIB not granted since the cut-over", names[holder])
	})
	end := testenv.Monotonic()

	ivs := grants(t, events, map[string]time.Duration{names[l]: killed})
	checkNoOverlap(t, ivs)
	t.Logf("without a holder during the migration: %v (of %v)", uncovered(ivs, start, killed).Round(100*time.Millisecond), (killed - start).Round(100*time.Millisecond))
	t.Logf("without a holder after the kill: %v", uncovered(ivs, killed, afterKill).Round(100*time.Millisecond))
	t.Logf("without a holder across the cut-over: %v (expire %v, acquire-after %v)", uncovered(ivs, cut, end).Round(100*time.Millisecond), expire, acquireAfter)
	for i, sample := range samplers {
		t.Logf("DNS at %s:", names[i])
		checkDNS(t, sample(), ivs, map[string]string{eastTarget: "east", westTarget: "west"})
	}
}

// uncovered is how much of [from, to) no grant interval covers.
func uncovered(ivs []interval, from, to time.Duration) time.Duration {
	sorted := slices.Clone(ivs)
	slices.SortFunc(sorted, func(a, b interval) int { return int(a.start - b.start) })
	gap, at := time.Duration(0), from
	for _, iv := range sorted {
		if iv.end <= at {
			continue
		}
		if iv.start > at {
			gap += min(iv.start, to) - at
		}
		at = max(at, iv.end)
		if at >= to {
			return gap
		}
	}
	return gap + max(0, to-at)
}

// nativeCluster writes geobooth's own configuration for the cluster of
// booth.conf, as docs/booth.md's cut-over does: the cluster file from
// ticketctl import-booth, the keys from ticketctl keygen, and each
// member's file (its CIB, its DNS on the same zones with the sites named
// as in the cluster file). It returns the member files' paths.
func nativeCluster(t *testing.T, ctl, dir, boothConf string, addrs []string, env [][]string) []string {
	t.Helper()
	native := filepath.Join(dir, "native")
	if err := os.MkdirAll(native, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"import-booth", "-o", filepath.Join(native, "cluster.toml"), boothConf},
		{"keygen", filepath.Join(native, "auth.key")}, {"keygen", "-token", filepath.Join(native, "api.token")},
		{"keygen", "-serf", filepath.Join(native, "serf.keyring")}} {
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("ticketctl %v: %v\n%s", args, err, out)
		}
	}
	zones := writeZones(t, native, "site1", "site2")
	var paths []string
	for i, name := range []string{"site1", "site2", "arbitrator"} {
		m := fmt.Sprintf("local = %q\ncluster_file = \"cluster.toml\"\nauth_key_file = \"auth.key\"\nstate_dir = %q\n"+
			"[api]\nlisten = \"%s:7800\"\ntoken_file = \"api.token\"\n[serf]\nkeyring_file = \"serf.keyring\"\n"+
			"[dns]\nlisten = %q\nzones_file = %q\n",
			name, filepath.Join(native, name+"-state"), addrs[i], dnsAddr, zones)
		if i < 2 {
			cib := strings.TrimPrefix(env[i][len(env[i])-1], "CIB_file=")
			m += fmt.Sprintf("[pacemaker]\ndriver = \"crm_ticket\"\ncib_file = %q\n", cib)
		}
		p := filepath.Join(native, name+".toml")
		if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}
