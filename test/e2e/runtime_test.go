package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Scenarios of the ticket runtime under what the daemon meets in service
// (issue 16): a voter whose disk fails, and a configuration change rolled
// out as docs/operations.md says, under load.

// The arbitrator's disk fails as east dies: west can get no vote that is
// on disk, so it takes nothing until the disk is back; then it takes the
// ticket once.
func scenarioVoterDiskFails(t *testing.T, n *network, report func(string, ...any)) {
	g := newGeo(t, n)
	disk := tc.MountDisk(t, filepath.Join(g.host["arbitrator"], "run", "arbitrator"))
	g.start()
	mon := g.watch()
	g.grant("east")
	g.waitService("east", "running", 10*time.Second)

	disk.ReadOnly(true)
	g.kill("east")
	killed := time.Now()
	watch := 2 * failoverBound()
	for time.Since(killed) < watch {
		if tk, err := g.ticket("west"); err == nil && tk.HeldLocally {
			t.Fatalf("west took web %v after east was killed, with the arbitrator unable to write its vote", time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if m, err := g.Member("arbitrator").Get("/metrics"); err != nil || !strings.Contains(m, "geobooth_ticket_unsaved_tickets 1") {
		t.Errorf("the arbitrator does not report its unsaved ticket: %v", err)
	}
	disk.ReadOnly(false)
	took := g.waitHolder("west", time.Now(), 2*failoverBound())
	report("arbitrator's disk read-only during a failover: west held nothing for %v after the kill; %.2fs after the disk came back it holds web",
		watch.Round(time.Second), took.Seconds())
	g.waitService("west", "running", 10*time.Second)
	g.waitDNS(addr["west"], 15*time.Second, "west", "arbitrator")
	mon.halt()
	if moves, owners := mon.moves(); moves != 1 {
		t.Errorf("web moved %d times (%s), want once", moves, strings.Join(owners, " → "))
	}
	// (A renewal rewrites the grant with the new lease end: count terms.)
	terms := map[string]bool{}
	for _, e := range g.siteEvents() {
		if e.Site == "west" && e.Op == "grant" {
			terms[strings.Join(e.Args, " ")[strings.Index(strings.Join(e.Args, " "), "term"):]] = true
		}
	}
	if len(terms) != 1 {
		t.Errorf("west's CIB was granted web in %d terms, want one", len(terms))
	}
	finish(t, g, mon)
}

// changeCluster edits the cluster file every member has.
func (g *geo) changeCluster(from, to string) {
	g.t.Helper()
	for _, h := range g.host {
		p := filepath.Join(h, "cluster.toml")
		b, err := os.ReadFile(p)
		if err != nil {
			g.t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			g.t.Fatalf("%s has no %q", p, from)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
			g.t.Fatal(err)
		}
	}
}

// restart stops a member with SIGTERM, starts it and waits for its API.
func (g *geo) restart(name string) {
	g.t.Helper()
	m := g.Member(name)
	m.Stop()
	m.Start()
	m.WaitUp(15 * time.Second)
}

// A longer lease rolled out member by member while the client writes, in
// the order docs/operations.md gives (the arbitrator, the holder, the
// other site): the ticket does not move, and the service never stops.
func scenarioRollingChange(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	w := startWrites(t, "east", 100000)
	tc.Eventually(t, 30*time.Second, func() error {
		if a := w.Acked(); a < 100 {
			return fmt.Errorf("the client has %d writes acknowledged, waiting for 100", a)
		}
		return nil
	})
	g.changeCluster(`expire = "10s"
renewal_freq = "5s"`, `expire = "12s"
renewal_freq = "6s"`)
	// Members on the old file and on the new one do not hear each other:
	// after the arbitrator, east still holds web with west; after east,
	// with the arbitrator; after west, with both.
	var gaps []string
	for _, step := range []struct {
		name string
		sees []string
	}{{"arbitrator", []string{"east", "west"}}, {"east", []string{"east", "arbitrator"}}, {"west", []string{"east", "west", "arbitrator"}}} {
		before := time.Now()
		g.restart(step.name)
		g.waitHolder("east", before, 2*failoverBound())
		tc.Eventually(t, 2*failoverBound(), func() error {
			for _, m := range step.sees {
				tk, err := g.ticket(m)
				if err != nil {
					return err
				}
				if tk.Owner != "east" {
					return fmt.Errorf("%s reports owner %q after %s restarted", m, tk.Owner, step.name)
				}
			}
			return nil
		})
		gaps = append(gaps, fmt.Sprintf("%s %.1fs", step.name, time.Since(before).Seconds()))
	}
	if a := w.Acked(); a < 100 {
		t.Errorf("only %d writes acknowledged", a)
	}
	mon.halt()
	if moves, owners := mon.moves(); moves != 0 {
		t.Errorf("web moved %d times during the change (%s)", moves, strings.Join(owners, " → "))
	}
	for _, e := range g.siteEvents() {
		if e.Op == "revoke" || e.Site == "west" && e.Op == "grant" {
			t.Errorf("the change moved the service: %+v", e)
		}
	}
	// The writes go on at the holder after its restart.
	if out, err := qemuIO("east", false, "write -P 0x3c 32M 1M", "flush"); err != nil {
		t.Fatalf("write after the change: %v\n%s", err, out)
	}
	g.waitVolume("east", 30*time.Second, "primary in sync", primaryInSync)
	report("rolling change (expire 10 s → 12 s) under client writes: each member back with east the owner (%s); web never moved, the service never stopped",
		strings.Join(gaps, ", "))
	finish(t, g, mon)
}
