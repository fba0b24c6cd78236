package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// cibSite is one simulated Pacemaker site: the CIB file its daemon drives
// with crm_ticket, and the real tools to act on it as the cluster would.
type cibSite struct {
	t    *testing.T
	path string
}

func (s cibSite) tool(name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "CIB_file="+s.path)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// settle runs one scheduler transition on the file (what the cluster
// would do), then says where the service runs.
func (s cibSite) settle() string {
	s.tool("flock", s.path+".lock", "crm_simulate", "-x", s.path, "-S", "-X", "-Q")
	return strings.TrimSpace(s.tool("crm_resource", "--locate", "-r", "svc"))
}

func (s cibSite) state() string { return s.tool("crm_ticket", "-t", "web", "-q") }

func pacemakerCluster(t *testing.T, tickets string) (*tc.Cluster, map[string]cibSite) {
	return pacemakerClusterWith(t, tickets, "stop.xml")
}

func pacemakerClusterWith(t *testing.T, tickets, cibFile string) (*tc.Cluster, map[string]cibSite) {
	tc.RequireTool(t, "crm_ticket", "pacemaker-cli-utils")
	tc.RequireTool(t, "crm_simulate", "pacemaker-cli-utils")
	src, err := os.ReadFile("../../pacemaker/testdata/" + cibFile)
	if err != nil {
		t.Fatal(err)
	}
	sites := map[string]cibSite{}
	// The site's cluster acts on every ticket change: crm_ticket is a
	// wrapper that runs the scheduler after a grant, revoke, standby or
	// activate, as Pacemaker would (the CIB file has no daemon).
	real, err := exec.LookPath("crm_ticket")
	if err != nil {
		t.Fatal(err)
	}
	// A change is made on a copy of the CIB file, then renamed into place:
	// a daemon that stops kills its crm_ticket mid-write, which a CIB
	// daemon survives and a file written in place does not (CI: the next
	// start read "does not conform to the configured schema"). Changes
	// take the file's lock, as settle does, so that none is lost.
	wrapper := filepath.Join(t.TempDir(), "crm_ticket")
	script := fmt.Sprintf(`#!/bin/sh
real=%s
case " $* " in
*" -g "*|*" -r "*|*" -s "*|*" -a "*) scheduler=1 ;;
*" -S "*|*" -D "*) scheduler= ;;
*) exec "$real" "$@" ;;
esac
exec 9>"$CIB_file.lock"
flock 9
tmp=$(mktemp "$CIB_file.XXXXXX") || exit 1
cp "$CIB_file" "$tmp" || exit 1
CIB_file=$tmp "$real" "$@"
rc=$?
if [ $rc -ne 0 ]; then rm -f "$tmp"; exit $rc; fi
if [ -n "$scheduler" ]; then crm_simulate -x "$tmp" -S -X -Q >/dev/null 2>&1; fi
mv "$tmp" "$CIB_file"
`, real)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: tickets,
		Extra: func(m *tc.Member) string {
			if m.Role != "site" {
				return ""
			}
			p := filepath.Join(t.TempDir(), m.Name+"-cib.xml")
			if err := os.WriteFile(p, src, 0o600); err != nil {
				t.Fatal(err)
			}
			sites[m.Name] = cibSite{t: t, path: p}
			return fmt.Sprintf("[pacemaker]\ndriver = \"crm_ticket\"\ncrm_ticket = %q\ncib_file = %q\ntimeout = \"5s\"\n", wrapper, p)
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	return c, sites
}

func TestSiteDrivesItsCIBThroughGrantLossAndRestart(t *testing.T) {
	c, sites := pacemakerCluster(t, exampleTickets)
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	// East's CIB was left granted by a crash long ago, while nobody holds
	// the ticket: reconciled away at start.
	sites["east"].tool("crm_ticket", "-t", "web", "-g", "--force", "-S", "owner", "--attr-value=east", "-S", "expires", "--attr-value=1")
	c.StartAll()
	tc.Eventually(t, 5*time.Second, func() error {
		if st := sites["east"].state(); !strings.Contains(st, `granted="false"`) {
			return fmt.Errorf("stale grant not revoked at start:\n%s", st)
		}
		return nil
	})

	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		st := sites["east"].state()
		for _, want := range []string{`granted="true"`, `owner="east"`, `term="`, `expires="`, `geobooth-cfg-name="test"`} {
			if !strings.Contains(st, want) {
				return fmt.Errorf("east's CIB lacks %s:\n%s", want, st)
			}
		}
		return nil
	})
	if where := sites["east"].settle(); !strings.Contains(where, "is running on") {
		t.Fatalf("east: %s", where)
	}
	if where := sites["west"].settle(); !strings.Contains(where, "NOT running") {
		t.Fatalf("west: %s", where)
	}

	// Planned move: east goes to standby, revokes; west grants.
	if _, errOut, code := arb.Ctl("move", "web", "west"); code != 0 {
		t.Fatalf("move: %s", errOut)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(sites["east"].state(), `granted="false"`) || !strings.Contains(sites["west"].state(), `granted="true"`) {
			return fmt.Errorf("east %s / west %s", sites["east"].state(), sites["west"].state())
		}
		return nil
	})
	if where := sites["east"].settle(); !strings.Contains(where, "NOT running") {
		t.Fatalf("east after the move: %s", where)
	}
	if where := sites["west"].settle(); !strings.Contains(where, "is running on") {
		t.Fatalf("west after the move: %s", where)
	}

	// The owner loses its majority (the others die): it revokes in its CIB
	// before its lease ends, and the service stops.
	east.Kill()
	arb.Kill()
	tc.Eventually(t, 15*time.Second, func() error {
		if st := sites["west"].state(); !strings.Contains(st, `granted="false"`) {
			return fmt.Errorf("west's CIB after losing the lease:\n%s", st)
		}
		return nil
	})
	if where := sites["west"].settle(); !strings.Contains(where, "NOT running") {
		t.Fatalf("west after the loss: %s", where)
	}

	// Restart reconciliation: west's CIB is granted again by hand (as a
	// crash would leave it), and east holds the ticket; west's daemon,
	// restarted, revokes it.
	west.Kill()
	east.Start()
	arb.Start()
	east.WaitUp(10 * time.Second)
	arb.WaitUp(10 * time.Second)
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant east again: %s", errOut)
	}
	sites["west"].tool("crm_ticket", "-t", "web", "-g", "--force", "-S", "owner", "--attr-value=west", "-S", "expires",
		fmt.Sprintf("--attr-value=%d", time.Now().Add(-time.Second).Unix()))
	west.Start()
	west.WaitUp(10 * time.Second)
	tc.Eventually(t, 5*time.Second, func() error {
		if st := sites["west"].state(); !strings.Contains(st, `granted="false"`) {
			return fmt.Errorf("west's stale grant survived its restart while east owns web:\n%s", st)
		}
		return nil
	})
	// Standby through ticketctl at the owner; refused at the arbitrator.
	if _, errOut, code := east.Ctl("standby", "web"); code != 0 {
		t.Fatalf("standby: %s", errOut)
	}
	if where := sites["east"].settle(); !strings.Contains(where, "NOT running") {
		t.Fatalf("east in standby: %s", where)
	}
	if tk, err := east.Ticket("web"); err != nil || tk.State != "standby" || !tk.HeldLocally {
		t.Fatalf("east's view in standby: %+v %v", tk, err)
	}
	if _, errOut, code := arb.Ctl("standby", "web"); code == 0 || !strings.Contains(errOut, "no CIB") {
		t.Fatalf("standby at the arbitrator: %d %q", code, errOut)
	}
	east.Ctl("activate", "web")
	if where := sites["east"].settle(); !strings.Contains(where, "is running on") {
		t.Fatalf("east activated: %s", where)
	}
	if tk, err := east.Ticket("web"); err != nil || tk.State != "granted" {
		t.Fatalf("east's view after activate: %+v %v", tk, err)
	}
}

// A crm_ticket that hangs on revoke: the daemon escalates (exits non-zero)
// and the other site still takes over once the lease runs out.
func TestHangingCrmTicketEscalatesAndTheLeaseStillEnds(t *testing.T) {
	dir := t.TempDir()
	hang := filepath.Join(dir, "crm_ticket")
	// Grants work (they go to the real tool), revokes hang.
	real, err := exec.LookPath("crm_ticket")
	if err != nil {
		tc.RequireTool(t, "crm_ticket", "pacemaker-cli-utils")
	}
	os.WriteFile(hang, []byte(fmt.Sprintf("#!/bin/sh\ncase \" $* \" in *\" -r \"*) sleep 600;; esac\nexec %s \"$@\"\n", real)), 0o755)
	c, sites := pacemakerCluster(t, exampleTickets)
	for _, n := range []string{"east"} {
		m := c.Member(n)
		cfg, _ := os.ReadFile(m.Config)
		cfg = []byte(regexp.MustCompile(`crm_ticket = ".*"`).ReplaceAllString(string(cfg), fmt.Sprintf("crm_ticket = %q\nretries = 1", hang)))
		cfg = []byte(strings.Replace(string(cfg), `timeout = "5s"`, `timeout = "500ms"`, 1))
		os.WriteFile(m.Config, cfg, 0o600)
	}
	c.StartAll()
	east, arb := c.Member("east"), c.Member("arbitrator")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	if _, _, code := arb.Ctl("revoke", "--no-wait", "web"); code != 0 {
		t.Fatal("revoke request refused")
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if east.Running() {
			return fmt.Errorf("east still running with a revoke its CIB refuses")
		}
		return nil
	})
	log, _ := os.ReadFile(east.LogPath)
	if !strings.Contains(string(log), "escalating") {
		t.Fatalf("no escalation logged:\n%s", log)
	}
	_ = sites
	// The lease ends in time: west takes the ticket (still granted) after
	// expire + acquire_after.
	waitOwner(t, c, "web", "west", 10*time.Second+2*time.Second+3*time.Second)
}

// The shipped before-acquire handler keeps the ticket away from a site
// whose cluster could not run the service: east's CIB bans it everywhere,
// so east does not acquire; west's can run it, so west does.
func TestServiceRunnableHandlerSteersTheTicket(t *testing.T) {
	handler, _ := filepath.Abs("../../pacemaker/handlers/service-runnable")
	tc.RequireTool(t, "xmllint", "libxml2-utils")
	c, sites := pacemakerCluster(t, fmt.Sprintf(`
[tickets.web]
expire = "4s"
renewal_freq = "2s"
timeout = "300ms"
retries = 3
before_acquire_handler = "%s svc"
`, handler))
	for _, node := range []string{"node1", "node2"} {
		sites["east"].tool("crm_resource", "--ban", "-r", "svc", "-N", node)
	}
	c.StartAll()
	east := c.Member("east")
	if _, _, code := east.Ctl("grant", "--no-wait", "-s", "east", "web"); code != 0 {
		t.Fatal("grant request refused")
	}
	tc.Eventually(t, 15*time.Second, func() error {
		m, _ := east.Get("/metrics")
		if !strings.Contains(m, `geobooth_ticket_handler_runs_total{result="failed",ticket="web"}`) {
			return fmt.Errorf("east's handler has not refused yet")
		}
		return nil
	})
	if tk, _ := east.Ticket("web"); tk.HeldLocally {
		t.Fatal("east acquired although its cluster cannot run svc")
	}
	if _, errOut, code := east.Ctl("grant", "-s", "west", "web"); code != 0 {
		t.Fatalf("grant to west: %s", errOut)
	}
	// West holds the ticket; its CIB grant follows the acquisition.
	tc.Eventually(t, 10*time.Second, func() error {
		if where := sites["west"].settle(); !strings.Contains(where, "is running on") {
			return fmt.Errorf("west: %s", where)
		}
		return nil
	})
}

// With loss-policy demote, the promotable clone (the replicated volume's
// model) is promoted at the site holding the ticket and demoted, not
// stopped, where it is lost.
func TestPromotableCloneFollowsTheTicketWithLossPolicyDemote(t *testing.T) {
	c, sites := pacemakerClusterWith(t, exampleTickets, "demote.xml")
	c.StartAll()
	arb := c.Member("arbitrator")
	promoted := func(s cibSite) bool {
		s.tool("crm_simulate", "-x", s.path, "-S", "-X", "-Q")
		return strings.Contains(s.tool("crm_mon", "-1", "--output-as=xml"), `role="Promoted"`)
	}
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	tc.Eventually(t, 15*time.Second, func() error {
		if !promoted(sites["east"]) || promoted(sites["west"]) {
			return fmt.Errorf("east promoted %v, west promoted %v", promoted(sites["east"]), promoted(sites["west"]))
		}
		return nil
	})
	if _, errOut, code := arb.Ctl("move", "web", "west"); code != 0 {
		t.Fatalf("move: %s", errOut)
	}
	tc.Eventually(t, 20*time.Second, func() error {
		if promoted(sites["east"]) || !promoted(sites["west"]) {
			return fmt.Errorf("east promoted %v, west promoted %v", promoted(sites["east"]), promoted(sites["west"]))
		}
		return nil
	})
	if mon := sites["east"].tool("crm_mon", "-1", "--output-as=xml"); !strings.Contains(mon, `role="Unpromoted"`) {
		t.Fatalf("east's clone should run unpromoted, not stop:\n%s", mon)
	}
}
