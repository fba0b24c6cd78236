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
// geobooth's own protocol (docs/booth.md), where the holder keeps the
// ticket (within a lease; measured: without a gap). Throughout, the sites' crm_ticket wrappers show no two sites
// granted at once, and no DNS answer names a site while the other holds
// the ticket; the time without any holder is reported.
func TestRollingMigrationFromBoothToGeoboothd(t *testing.T) {
	bin := daemonsTest(t)
	c := newBoothCluster(t, "rm", "10.83.0.", true)
	addrs := c.addrs
	zones := writeZones(t, c.dir, addrs[0], addrs[1])
	geoboothd := func(i int) *member {
		return c.geoboothd(i, bin, "-booth-dns", dnsAddr, "-booth-zones", zones, "-state-dir", filepath.Join(c.dir, names[i]+"-state"))
	}
	members := []*member{c.run(c.boothd(0)), c.run(c.boothd(1)), c.run(c.boothd(2))}
	leader := func(i int) string {
		for _, a := range addrs[:2] {
			if c.leaderAt(i, a)() == nil {
				return a
			}
		}
		return ""
	}
	allFollow := func(want string) func() error {
		return func() error {
			for i := range 3 {
				if err := c.leaderAt(i, want)(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var samplers []func() []answer
	for i := range 3 {
		samplers = append(samplers, sampleDNS(t, c.ns, i))
	}

	c.grant(0)
	testenv.Eventually(t, 20*time.Second, allFollow(addrs[0]))
	testenv.Eventually(t, 2*expire, granted(t, c.events, "east"))
	start := testenv.Monotonic()

	// One member at a time, the leader last; each replacement is done
	// once every member agrees on a leader again and that leader renewed
	// its lease through the new member (the arbitrator's list shows a
	// later expiry).
	expiry := func() string {
		out, _ := c.booth(2, "list")
		_, e, _ := strings.Cut(out, "expires: ")
		e, _, _ = strings.Cut(e, "\n")
		return e
	}
	for _, i := range []int{2, 1, 0} {
		members[i].stop(syscall.SIGTERM)
		members[i] = c.run(geoboothd(i))
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
	killed := c.failover(members[l], 1-l)
	afterKill := testenv.Monotonic()

	// The cut-over to geobooth's own protocol, as docs/booth.md says: the
	// cluster file from booth.conf, each member's file with the state
	// folder its Booth run used, every member stopped, every member
	// started on geobooth's protocol. The holder's handover names it and
	// the arbitrator's too: the holder takes the ticket on the new
	// protocol before the lease in its CIB ends. The member killed above
	// left an incomplete handover, and abstains.
	holder := 1 - l
	ctl := buildTicketctl(t, t.TempDir())
	files := nativeCluster(t, ctl, c.dir, c.conf, addrs, c.env)
	for _, m := range members {
		m.stop(syscall.SIGTERM)
	}
	cut := testenv.Monotonic()
	for i := range 3 {
		args := append(append(c.ns.Exec(i).Args, c.env[i]...), bin, "-config", files[i])
		c.run(&member{name: names[i] + " (geobooth)", log: filepath.Join(c.dir, names[i]+"-native.log"), args: args})
	}
	token := filepath.Join(c.dir, "native", "api.token")
	// Done once the new protocol's owner is the holder and its CIB was
	// written by it since the cut-over.
	testenv.Eventually(t, 3*(expire+acquireAfter), func() error {
		out, err := c.ns.Exec(2, ctl, "-addr", addrs[2]+":7800", "-token-file", token, "list", "--json").CombinedOutput()
		var ts []api.Ticket
		if err != nil || json.Unmarshal(out, &ts) != nil || len(ts) != 1 || ts[0].Owner != []string{"site1", "site2"}[holder] {
			return fmt.Errorf("ticketctl list at the arbitrator: %v %s", err, out)
		}
		for _, e := range readEvents(t, c.events) {
			if e.Site == names[holder] && e.Op == "grant" && e.Code == 0 && e.Start > cut {
				return nil
			}
		}
		return fmt.Errorf("%s's CIB not granted since the cut-over", names[holder])
	})
	end := testenv.Monotonic()

	ivs := grants(t, c.events, map[string]time.Duration{names[l]: killed})
	checkNoOverlap(t, ivs)
	t.Logf("without a holder during the migration: %v (of %v)", uncovered(ivs, start, killed).Round(100*time.Millisecond), (killed - start).Round(100*time.Millisecond))
	t.Logf("without a holder after the kill: %v", uncovered(ivs, killed, afterKill).Round(100*time.Millisecond))
	down := uncovered(ivs, cut, end)
	t.Logf("without a holder across the cut-over: %v (expire %v, acquire-after %v)", down.Round(100*time.Millisecond), expire, acquireAfter)
	if down > expire {
		t.Errorf("the cut-over left the ticket without a holder for %v, more than a lease (%v)", down, expire)
	}
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
// as in the cluster file, the state folder of its Booth run). It returns
// the member files' paths.
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
			name, filepath.Join(dir, names[i]+"-state"), addrs[i], dnsAddr, zones)
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
