package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/kit/testenv"
)

// siteGroup runs east's geoboothd as Pacemaker would run the resource
// group of examples/pacemaker/geobooth-group.xml on one node of the site:
// the Filesystem resource mounts the device holding state_dir, then the
// geobooth agent starts the daemon; a stop runs them in reverse. Both
// agents are the real ones, run by crm_resource. The nodes are played on
// this one host: each has its own run folder, and mounts the device the
// group names.
type siteGroup struct {
	t                   *testing.T
	provider, stateDir  string
	geoboothd, ticketct string
	config, log         string
}

func (g siteGroup) ocf(action, provider, agent string, opts ...string) {
	g.t.Helper()
	args := []string{action, "--class", "ocf", "--provider", provider, "--agent", agent}
	for _, o := range opts {
		args = append(args, "--option", o)
	}
	if out, err := exec.Command("crm_resource", args...).CombinedOutput(); err != nil {
		g.t.Fatalf("crm_resource %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (g siteGroup) daemonOpts(node string) []string {
	return []string{"config=" + g.config, "geoboothd=" + g.geoboothd, "ticketctl=" + g.ticketct,
		"rundir=" + filepath.Join(filepath.Dir(g.config), node+"-run"), "logfile=" + g.log}
}

// start starts the group on node, with dev as the state device.
func (g siteGroup) start(node, dev string) {
	g.t.Helper()
	g.ocf("--force-start", "heartbeat", "Filesystem", "device="+dev, "directory="+g.stateDir, "fstype=ext4")
	g.ocf("--force-start", g.provider, "geobooth", g.daemonOpts(node)...)
}

// stop stops the group on node: the daemon (SIGTERM, waited for), then
// the file system.
func (g siteGroup) stop(node, dev string) {
	g.t.Helper()
	g.ocf("--force-stop", g.provider, "geobooth", g.daemonOpts(node)...)
	g.ocf("--force-stop", "heartbeat", "Filesystem", "device="+dev, "directory="+g.stateDir, "fstype=ext4")
}

// Issue 19: a site's geoboothd run by Pacemaker moves to another node of
// the site with its state_dir on a device the group mounts there
// (examples/pacemaker). It finds the state it wrote, re-acquires the
// ticket at once, and the site's service keeps running: the other site
// never gets the ticket. Then the contrast the issue reported: started on
// a node whose state_dir is a disk of its own, it finds no state and
// abstains for a lease (safe, but the site loses its hold); and moved back
// to the older state_dir after that, it must not trust it.
func TestSiteDaemonMovesToAnotherNodeWithItsState(t *testing.T) {
	slow(t)
	testenv.RequireRoot(t, "loop devices, mounts, and OCF agents under /usr/lib/ocf")
	tc.RequireTool(t, "crm_resource", "pacemaker-cli-utils")
	mkfs := tc.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/Filesystem"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ocf:heartbeat:Filesystem is missing (apt-get install resource-agents): %v", err)
		}
		t.Skipf("ocf:heartbeat:Filesystem is missing (apt-get install resource-agents): %v", err)
	}
	devices := map[string]string{}
	for _, name := range []string{"shared", "local"} {
		dev := testenv.LoopDevice(t, 64<<20)
		if out, err := exec.Command(mkfs, "-q", dev).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4 %s: %v\n%s", dev, err, out)
		}
		devices[name] = dev
	}
	// crm_resource finds agents only under the OCF root.
	provider := fmt.Sprintf("geobooth-move-%d", os.Getpid())
	agents := filepath.Join("/usr/lib/ocf/resource.d", provider)
	agent, err := filepath.Abs("../../pacemaker/agents/geobooth")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(agents, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(agents) })
	if err := os.Symlink(agent, filepath.Join(agents, "geobooth")); err != nil {
		t.Fatal(err)
	}

	c, sites := pacemakerCluster(t, exampleTickets)
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	g := siteGroup{t: t, provider: provider, stateDir: filepath.Join(c.Dir, "state", "east"),
		geoboothd: filepath.Join(c.Bin, "geoboothd"), ticketct: filepath.Join(c.Bin, "ticketctl"),
		config: east.Config, log: east.LogPath}
	if err := os.MkdirAll(g.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, the daemon and the mount go before the devices.
	running := map[string]string{} // node → device
	t.Cleanup(func() {
		for node, dev := range running {
			exec.Command("crm_resource", append([]string{"--force-stop", "--class", "ocf", "--provider", provider, "--agent", "geobooth"}, optionArgs(g.daemonOpts(node))...)...).Run()
			exec.Command("crm_resource", "--force-stop", "--class", "ocf", "--provider", "heartbeat", "--agent", "Filesystem",
				"--option", "device="+dev, "--option", "directory="+g.stateDir, "--option", "fstype=ext4").Run()
		}
	})
	startOn := func(node, dev string) {
		running[node] = dev
		g.start(node, dev)
	}
	stopOn := func(node string) {
		g.stop(node, running[node])
		delete(running, node)
	}

	west.Start()
	arb.Start()
	startOn("node1", devices["shared"])
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	heldByEast := func() error {
		tk, err := east.Ticket("web")
		if err != nil || !tk.HeldLocally {
			return fmt.Errorf("east does not hold web: %+v %v", tk, err)
		}
		return nil
	}
	tc.Eventually(t, 10*time.Second, heldByEast)
	// East holds web before its CIB says so: the grant is written after.
	tc.Eventually(t, 10*time.Second, func() error {
		if where := sites["east"].settle(); !strings.Contains(where, "is running on") {
			return fmt.Errorf("east's service: %s", where)
		}
		return nil
	})
	before, _ := east.Ticket("web")

	// The move: node1 stops the group, node2 starts it on the same device.
	moved := time.Now()
	stopOn("node1")
	startOn("node2", devices["shared"])
	tc.Eventually(t, 5*time.Second, heldByEast)
	after, _ := east.Ticket("web")
	t.Logf("east holds web again %v after the move began (term %d, then %d)", time.Since(moved).Round(100*time.Millisecond), before.Term, after.Term)
	// Over more than a lease after it, east keeps web and its service, and
	// west's CIB never grants it.
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if err := heldByEast(); err != nil {
			t.Fatalf("after the move: %v", err)
		}
		if st := sites["west"].state(); strings.Contains(st, `granted="true"`) {
			t.Fatalf("west's CIB granted web after east's daemon moved:\n%s", st)
		}
		if where := strings.TrimSpace(sites["east"].tool("crm_resource", "--locate", "-r", "svc")); !strings.Contains(where, "is running on") {
			t.Fatalf("east's service stopped after the move: %s", where)
		}
	}

	// The contrast: node3 keeps state_dir on a disk of its own.
	stopOn("node2")
	startOn("node3", devices["local"])
	tc.Eventually(t, 5*time.Second, func() error {
		if logs, _ := os.ReadFile(east.LogPath); !bytes.Contains(logs, []byte("ticket has no stored state: abstaining for one lease")) {
			return fmt.Errorf("east's log does not say it abstains")
		}
		return nil
	})
	// With its state east held web again within seconds; without, it
	// must not within its lease's remainder.
	mustAbstain := func(why string) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if err := heldByEast(); err == nil {
				t.Fatalf("east, started %s, holds web: it must abstain for a lease", why)
			}
		}
	}
	mustAbstain("without its state")

	// Worse: east takes web back on node3, then the group goes back to
	// node2, whose state device holds what east wrote before node3's run:
	// older than the promises it gave since. The incarnation in the CIB
	// (raised at every start) is higher than the one on that device: east
	// forgets the stale state and abstains, where with it east would
	// re-acquire at once.
	tc.Eventually(t, 30*time.Second, func() error {
		if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
			if _, errOut2, code := arb.Ctl("move", "web", "east"); code != 0 {
				return fmt.Errorf("grant: %s; move: %s", errOut, errOut2)
			}
		}
		return heldByEast()
	})
	noState := func() int {
		logs, _ := os.ReadFile(east.LogPath)
		return bytes.Count(logs, []byte(`msg="ticket has no stored state: abstaining for one lease" ticket=web`))
	}
	booted := noState()
	stopOn("node3")
	startOn("node2", devices["shared"])
	tc.Eventually(t, 5*time.Second, func() error {
		logs, _ := os.ReadFile(east.LogPath)
		if !bytes.Contains(logs, []byte("this daemon ran elsewhere in the site since it wrote its state_dir")) {
			return fmt.Errorf("east's log does not say its state_dir was superseded")
		}
		if noState() <= booted {
			return fmt.Errorf("east booted from the superseded state")
		}
		return nil
	})
	mustAbstain("from a state_dir another run superseded")
}

func optionArgs(opts []string) []string {
	var out []string
	for _, o := range opts {
		out = append(out, "--option", o)
	}
	return out
}
