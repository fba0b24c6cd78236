package e2e

import (
	"bytes"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/testenv"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/replication"
)

// The ticket web in examples/geo/cluster.toml.
const (
	expire       = 10 * time.Second
	acquireAfter = 3 * time.Second
	timeout      = time.Second
	drift        = 0.01
)

// failoverBound is docs/operations.md's bound for a lost owner, for the
// slower of the two sites (rank 1), measured from the loss: the lease may
// have been renewed just before.
func failoverBound() time.Duration {
	lease := float64(expire + acquireAfter)
	return time.Duration(lease/(1-drift)) + timeout + timeout/2
}

// TestGeoCluster runs the scenarios one after the other on one network,
// each with a fresh deployment of examples/geo.
func TestGeoCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end scenarios take minutes: not with -short")
	}
	n := setupNetwork(t)
	var figures []string
	report := func(format string, args ...any) {
		figures = append(figures, fmt.Sprintf(format, args...))
	}
	t.Cleanup(func() {
		t.Logf("figures:\n  %s", strings.Join(figures, "\n  "))
	})
	t.Run("1-start-grant-write-dig", func(t *testing.T) { scenarioStart(t, n) })
	t.Run("2-kill-owner", func(t *testing.T) { scenarioKill(t, n, report) })
	t.Run("3-partition-owner", func(t *testing.T) { scenarioPartition(t, n, report) })
	t.Run("4-no-majority", func(t *testing.T) { scenarioNoMajority(t, n, report) })
	t.Run("5-planned-move", func(t *testing.T) { scenarioMove(t, n, report) })
	t.Run("6-restart-all", func(t *testing.T) { scenarioRestartAll(t, n, report) })
	t.Run("7-flapping-link", func(t *testing.T) { scenarioFlapping(t, n, report) })
	t.Run("8-voter-disk-fails", func(t *testing.T) { scenarioVoterDiskFails(t, n, report) })
	t.Run("9-rolling-configuration-change", func(t *testing.T) { scenarioRollingChange(t, n, report) })
	t.Run("10-no-plaintext-between-members", func(t *testing.T) { scenarioNoPlaintext(t, n, report) })
}

// begin starts a fresh deployment, watches its owners and grants web to
// site: the site's service runs and every member answers its address.
func begin(t *testing.T, n *network, site string) (*geo, *monitor) {
	g := newGeo(t, n)
	g.start()
	mon := g.watch()
	g.grant(site)
	g.waitService(site, "running", 10*time.Second)
	g.waitDNS(addr[site], 15*time.Second, "east", "west", "arbitrator")
	return g, mon
}

// finish checks the safety properties over the whole scenario.
func finish(t *testing.T, g *geo, mon *monitor) {
	t.Helper()
	mon.halt()
	mon.check(t)
	g.checkOneService()
	var spans []string
	for _, iv := range g.serviceIntervals(testenv.Monotonic()) {
		spans = append(spans, fmt.Sprintf("%s %.1fs", iv.site, (iv.end-iv.start).Seconds()))
	}
	t.Logf("%d owner rounds checked; the service ran in turn at: %s", len(mon.snapshot()), strings.Join(spans, ", "))
}

func scenarioStart(t *testing.T, n *network) {
	g, mon := begin(t, n, "east")
	if out, err := qemuIO("east", false, "write -P 0x5a 0 1M", "flush"); err != nil {
		t.Fatalf("write through east's export from the client: %v\n%s", err, out)
	}
	if out, err := qemuIO("east", true, "read -P 0x5a 0 1M"); err != nil {
		t.Fatalf("read back from the client: %v\n%s", err, out)
	}
	g.waitVolume("east", 10*time.Second, "primary in sync", primaryInSync)
	tc.Eventually(t, 10*time.Second, func() error {
		if img := g.replica("west"); bytes.Count(img[:1<<20], []byte{0x5a}) != 1<<20 {
			return fmt.Errorf("west's replica lacks east's 1 MiB")
		}
		return nil
	})
	if st := g.cibState("east"); !strings.Contains(st, `granted="true"`) || !strings.Contains(st, `owner="east"`) {
		t.Errorf("east's CIB: %s", st)
	}
	if st := g.cibState("west"); strings.Contains(st, `granted="true"`) {
		t.Errorf("west's CIB grants web while east holds it: %s", st)
	}
	finish(t, g, mon)
}

func scenarioKill(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	const total = 2000
	w := startWrites(t, "east", total)
	// The client's count, then the lag east reports: every write counted
	// was acknowledged before the lag sample.
	var acked int
	var lag int64
	tc.Eventually(t, 30*time.Second, func() error {
		acked = w.Acked()
		st, err := g.volume("east")
		if err != nil {
			return err
		}
		lag = st.Peers[0].LagBytes
		if acked < 300 {
			return fmt.Errorf("the client has %d writes acknowledged, waiting for 300", acked)
		}
		return nil
	})
	g.kill("east")
	killed := time.Now()
	<-w.done
	took := g.waitHolder("west", killed, 2*failoverBound())
	bound := failoverBound()
	report("kill east: west holds web %.2fs after the kill (bound %.2fs)", took.Seconds(), bound.Seconds())
	if took > bound+time.Second {
		t.Errorf("west took web %v after east was killed, beyond the bound %v (+1 s for polling)", took, bound)
	}
	g.waitService("west", "running", 10*time.Second)
	if st := g.cibState("west"); !strings.Contains(st, `granted="true"`) || !strings.Contains(st, `owner="west"`) {
		t.Errorf("west's CIB after the takeover: %s", st)
	}
	g.waitDNS(addr["west"], 15*time.Second, "west", "arbitrator")
	report("kill east: every live member answers west %.2fs after the kill", time.Since(killed).Seconds())

	img := exported(t, "west")
	k, ok := prefix(img, total)
	if !ok {
		t.Fatalf("west's data is not a prefix of east's writes: not crash-consistent")
	}
	need := acked - int((lag+block-1)/block)
	report("kill east: client had %d writes acknowledged at the lag sample (lag %d bytes); west has the first %d", acked, lag, k)
	if k < need {
		t.Errorf("west has %d blocks; the client had %d acknowledged with %d bytes of lag: %d must be there", k, acked, lag, need)
	}

	// East comes back: its stale grant goes, it resyncs from west.
	east := g.Member("east")
	east.Start()
	east.WaitUp(15 * time.Second)
	g.waitService("east", "stopped", 10*time.Second)
	if st := g.cibState("east"); strings.Contains(st, `granted="true"`) {
		t.Errorf("east's CIB still grants web after its restart: %s", st)
	}
	g.waitVolume("east", 60*time.Second, "secondary UpToDate", func(s api.Volume) bool {
		return s.Role == replication.Secondary && s.Disk == replication.UpToDate && len(s.Peers) == 1 && s.Peers[0].State == replication.InSync
	})
	g.waitVolume("west", 10*time.Second, "primary in sync", primaryInSync)
	if !bytes.Equal(exported(t, "west"), g.replica("east")) {
		t.Errorf("after the resync east's replica differs from west's data")
	}
	finish(t, g, mon)
}

func scenarioPartition(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	demoted := make(chan time.Duration, 1)
	cut := testenv.Monotonic()
	go func() {
		for testenv.Monotonic()-cut < 60*time.Second {
			if st, err := g.volume("east"); err == nil && st.Role == replication.Secondary {
				demoted <- testenv.Monotonic()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(demoted)
	}()
	n.isolate("east", "west", "arbitrator")
	cutAt := time.Now()
	stop := g.waitService("east", "stopped", 2*expire)
	took := g.waitHolder("west", cutAt, 2*failoverBound())
	var acquired time.Duration
	tc.Eventually(t, 5*time.Second, func() error {
		if acquired = mon.firstHeld("west", cut); acquired == 0 {
			return fmt.Errorf("the owner monitor has not seen west hold web yet")
		}
		return nil
	})
	demotedAt, ok := <-demoted
	if !ok {
		t.Fatalf("east's volume was never seen secondary")
	}
	report("partition east: east's service stopped %.2fs after the cut, west holds web %.2fs after it (%.2fs between)",
		(stop.End - cut).Seconds(), took.Seconds(), (acquired - stop.End).Seconds())
	if stop.Op != "revoke" || !(stop.End < acquired) {
		t.Errorf("east's service stopped (%s, ends at %v) not before west acquired (after %v)", stop.Op, stop.End, acquired)
	}
	if !(demotedAt < acquired) {
		t.Errorf("east's volume was demoted at %v, not before west acquired (after %v)", demotedAt, acquired)
	}
	g.waitService("west", "running", 10*time.Second)
	g.waitDNS(addr["west"], 15*time.Second, "west", "arbitrator")
	// East, cut off, no longer answers its own address.
	if got, err := dig("east"); err != nil || got == addr["east"] {
		t.Errorf("east, partitioned after its lease, answers %q (%v)", got, err)
	}

	n.healAll()
	tc.Eventually(t, 30*time.Second, func() error {
		tk, err := g.ticket("east")
		if err != nil {
			return err
		}
		if tk.Owner != "west" || tk.HeldLocally {
			return fmt.Errorf("east after the heal: %+v", tk)
		}
		return nil
	})
	es := g.waitVolume("east", 60*time.Second, "secondary in sync", func(s api.Volume) bool {
		return s.Role == replication.Secondary && s.Disk == replication.UpToDate && len(s.Peers) == 1 && s.Peers[0].State == replication.InSync
	})
	ws := g.waitVolume("west", 10*time.Second, "primary in sync", primaryInSync)
	if es.SplitBrains != 0 || ws.SplitBrains != 0 {
		t.Errorf("split brain after the heal: east %d, west %d", es.SplitBrains, ws.SplitBrains)
	}
	g.waitDNS(addr["west"], 15*time.Second, "east", "west", "arbitrator")
	finish(t, g, mon)
}

func scenarioNoMajority(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	before, err := g.ticket("east")
	if err != nil {
		t.Fatal(err)
	}
	n.isolate("arbitrator", "east", "west")
	// Nothing moves: east keeps renewing with west's vote.
	var last time.Time
	var lastMono time.Duration
	for end := time.Now().Add(expire + acquireAfter + 3*time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		tk, err := g.ticket("east")
		now, nowMono := time.Now(), testenv.Monotonic()
		if err != nil {
			t.Fatal(err)
		}
		if !tk.HeldLocally || tk.Term != before.Term {
			t.Fatalf("web moved while only the arbitrator was cut off: %+v (before %+v)", tk, before)
		}
		if tk.Expires != nil {
			last, lastMono = *tk.Expires, nowMono+tk.Expires.Sub(now)
		}
	}
	if !last.After(*before.Expires) {
		t.Errorf("east did not renew without the arbitrator: lease end %v, before %v", last, before.Expires)
	}
	// Now east too: no two members can talk, nobody has a majority.
	cut := testenv.Monotonic()
	n.isolate("east", "west", "arbitrator")
	tc.Eventually(t, 5*time.Second, func() error {
		tk, err := g.ticket("east")
		if err != nil {
			return err
		}
		if tk.Expires != nil && tk.HeldLocally {
			last, lastMono = *tk.Expires, testenv.Monotonic()+time.Until(*tk.Expires)
		}
		if testenv.Monotonic()-cut < time.Second {
			return fmt.Errorf("settling")
		}
		return nil
	})
	stop := g.waitService("east", "stopped", 2*expire)
	report("no majority: east began its CIB revoke %+.2fs from its lease end and its service was stopped %+.2fs from it (%.2fs after the cut)",
		(stop.Start - lastMono).Seconds(), (stop.End - lastMono).Seconds(), (stop.End - cut).Seconds())
	// The owner stops at its lease end (a drift margin before it); the
	// others leave it acquire_after to finish stopping.
	if stop.Op != "revoke" || stop.Start > lastMono+300*time.Millisecond || stop.End > lastMono+acquireAfter {
		t.Errorf("east released (%s) from %v to %v: its lease ended at %v", stop.Op, stop.Start, stop.End, lastMono)
	}
	if out, errOut, code := g.Member("west").Ctl("grant", "-s", "west", "web", "-timeout", "5s"); code == 0 {
		t.Errorf("a grant to west without a majority succeeded: %s%s", out, errOut)
	}
	for end := time.Now().Add(expire + acquireAfter + 2*time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		for _, m := range g.Members {
			if tk, err := m.Ticket("web"); err == nil && tk.HeldLocally {
				t.Fatalf("%s holds web without a majority: %+v", m.Name, tk)
			}
		}
	}
	n.healAll()
	tc.Eventually(t, 2*failoverBound(), func() error {
		for _, m := range g.Members {
			if tk, err := m.Ticket("web"); err == nil && tk.HeldLocally {
				return nil
			}
		}
		return fmt.Errorf("nobody holds web after the heal")
	})
	finish(t, g, mon)
}

func scenarioMove(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "west")
	if out, err := qemuIO("west", false, "write -P 0x33 0 4M", "flush"); err != nil {
		t.Fatalf("write at west: %v\n%s", err, out)
	}
	t0 := time.Now()
	if out, errOut, code := g.Member("arbitrator").Ctl("move", "web", "east"); code != 0 {
		t.Fatalf("ticketctl move web east: exit %d: %s%s", code, out, errOut)
	}
	report("planned move west → east: ticketctl move returned after %.2fs", time.Since(t0).Seconds())
	st := g.waitVolume("east", 10*time.Second, "primary", func(s api.Volume) bool { return s.Role == replication.Primary })
	if len(st.Peers) != 1 || st.Peers[0].LagBytes != 0 {
		t.Errorf("east's volume after the move: %+v", st)
	}
	if out, err := qemuIO("east", true, "read -P 0x33 0 4M"); err != nil {
		t.Errorf("east lacks west's writes after the move: %v\n%s", err, out)
	}
	if !bytes.Equal(exported(t, "east"), g.replica("west")) {
		t.Errorf("after the move east's data differs from west's replica")
	}
	g.waitDNS(addr["east"], 10*time.Second, "east", "west", "arbitrator")
	westStop := g.waitService("west", "stopped", 5*time.Second)
	eastStart := g.waitService("east", "running", 5*time.Second)
	if !(westStop.End < eastStart.Start) {
		t.Errorf("west's service stopped (%s, ends %v) after east's started (%v)", westStop.Op, westStop.End, eastStart.Start)
	}
	finish(t, g, mon)
}

func scenarioRestartAll(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	before, err := g.ticket("east")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range g.Members {
		wg.Add(1)
		go func() { defer wg.Done(); m.Stop() }()
	}
	wg.Wait()
	t0 := time.Now()
	for _, m := range g.Members {
		m.Start()
	}
	for _, m := range g.Members {
		m.WaitUp(15 * time.Second)
	}
	took := g.waitHolder("east", t0, 2*failoverBound())
	report("restart all: east holds web again %.2fs after the restart (term %d before)", took.Seconds(), before.Term)
	tc.Eventually(t, 10*time.Second, func() error {
		for _, m := range g.Members {
			tk, err := m.Ticket("web")
			if err != nil {
				return err
			}
			if tk.Owner != "east" {
				return fmt.Errorf("%s reports owner %q", m.Name, tk.Owner)
			}
		}
		return nil
	})
	for _, e := range g.siteEvents() {
		if e.Site == "west" && e.Op == "grant" {
			t.Errorf("west's CIB was granted web: %+v", e)
		}
	}
	if st := g.cibState("east"); !strings.Contains(st, `granted="true"`) {
		t.Errorf("east's CIB after the restart: %s", st)
	}
	g.waitVolume("east", 30*time.Second, "primary in sync", primaryInSync)
	finish(t, g, mon)
}

func scenarioFlapping(t *testing.T, n *network, report func(string, ...any)) {
	g, mon := begin(t, n, "east")
	rnd := rand.New(rand.NewSource(7))
	const span = time.Minute
	var flips int
	for end := time.Now().Add(span); time.Now().Before(end); {
		n.isolate("east", "west", "arbitrator")
		time.Sleep(min(time.Until(end), 2*time.Second+time.Duration(rnd.Int63n(int64(10*time.Second)))))
		n.healAll()
		flips++
		time.Sleep(min(time.Until(end), 2*time.Second+time.Duration(rnd.Int63n(int64(4*time.Second)))))
	}
	tc.Eventually(t, 2*failoverBound(), func() error {
		for _, m := range g.Members {
			if tk, err := m.Ticket("web"); err == nil && tk.HeldLocally {
				return nil
			}
		}
		return fmt.Errorf("nobody holds web after the link settled")
	})
	mon.halt()
	moves, owners := mon.moves()
	var started []string
	for _, iv := range g.serviceIntervals(testenv.Monotonic()) {
		started = append(started, iv.site)
	}
	report("flapping link: %d partitions in %v, web moved %d times (%s); the service started %d times (%s)",
		flips, span, moves, strings.Join(owners, " → "), len(started), strings.Join(started, ", "))
	// Each move waits for the holder's lease to run out: at most one per
	// expire, plus the last.
	if limit := int(span/expire) + 1; moves > limit {
		t.Errorf("web moved %d times in %v (at most %d expected)", moves, span, limit)
	}
	finish(t, g, mon)
}
