// Package boothmix runs geoboothd in clusters with the real ClusterLabs
// boothd (Debian's booth), in network namespaces.
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

	"github.com/geobooth/geobooth/kit/testenv"
)

// TestMain doubles as the sites' crm_ticket: each boothd finds a wrapper
// first on its PATH that runs this binary with BOOTHMIX_SITE set.
func TestMain(m *testing.M) {
	if site := os.Getenv("BOOTHMIX_SITE"); site != "" {
		os.Exit(crmTicket(site))
	}
	os.Exit(m.Run())
}

// event is one grant or revoke of ticket web that a site's boothd made in
// its CIB.
type event struct {
	Site  string        `json:"site"`
	Op    string        `json:"op"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Code  int           `json:"rc"`
}

// crmTicket runs the real crm_ticket and logs a grant or revoke of web,
// timed on the monotonic clock.
func crmTicket(site string) int {
	start := testenv.Monotonic()
	cmd := exec.Command("/usr/sbin/crm_ticket", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	code := 0
	if err := cmd.Run(); err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	args := os.Args[1:]
	op := ""
	switch {
	case slices.Contains(args, "-g") || slices.Contains(args, "--grant"):
		op = "grant"
	case slices.Contains(args, "-r") || slices.Contains(args, "--revoke"):
		op = "revoke"
	}
	if i := slices.Index(args, "-t"); op == "" || i < 0 || i+1 >= len(args) || args[i+1] != "web" {
		return code
	}
	line, _ := json.Marshal(event{Site: site, Op: op, Start: start, End: testenv.Monotonic(), Code: code})
	if f, err := os.OpenFile(os.Getenv("BOOTHMIX_EVENTS"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		f.Write(append(line, '\n'))
		f.Close()
	}
	return code
}

// interval is a time a site held the ticket in its CIB.
type interval struct {
	site       string
	start, end time.Duration
}

// grants reads the events into each site's grant intervals. A site
// whose boothd was killed (deaths: site → time) holds until then: its CIB
// keeps the grant, but a real site's loss-policy stops the service with
// boothd. One still holding at the end holds until now.
func grants(t *testing.T, path string, deaths map[string]time.Duration) []interval {
	t.Helper()
	evs := readEvents(t, path)
	for site, d := range deaths {
		evs = append(evs, event{Site: site, Op: "died", Start: d, End: d})
	}
	slices.SortFunc(evs, func(a, b event) int { return int(a.Start - b.Start) })
	open := map[string]time.Duration{}
	var out []interval
	for _, e := range evs {
		start, holding := open[e.Site]
		switch {
		case e.Op == "grant" && e.Code == 0 && !holding:
			open[e.Site] = e.Start
		case e.Op != "grant" && holding:
			out = append(out, interval{e.Site, start, e.End})
			delete(open, e.Site)
		}
	}
	for site, start := range open {
		out = append(out, interval{site, start, testenv.Monotonic()})
	}
	return out
}

// readEvents reads the crm_ticket wrappers' log.
func readEvents(t *testing.T, path string) []event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event
	for _, l := range strings.Fields(string(b)) {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("event %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// checkNoOverlap fails when two sites held the ticket at once.
func checkNoOverlap(t *testing.T, ivs []interval) {
	t.Helper()
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			if a.site != b.site && a.start < b.end && b.start < a.end {
				t.Errorf("%s held web from %v to %v and %s from %v to %v", a.site, a.start, a.end, b.site, b.start, b.end)
			}
		}
	}
}

// member is one process of the cluster, restartable.
type member struct {
	name string
	args []string
	log  string
	cmd  *exec.Cmd
}

func (m *member) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(m.args[0], m.args[1:]...)
	m.cmd.Stdout, m.cmd.Stderr = f, f
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// stop sends sig and waits for the process.
func (m *member) stop(sig syscall.Signal) {
	if m.cmd == nil {
		return
	}
	// ip netns exec runs the daemon as its own process (exec).
	m.cmd.Process.Signal(sig)
	m.cmd.Wait()
	m.cmd = nil
}

func buildGeoboothd(t *testing.T, dir string) string { return build(t, dir, "geoboothd") }
func buildTicketctl(t *testing.T, dir string) string { return build(t, dir, "ticketctl") }

func build(t *testing.T, dir, cmd string) string {
	t.Helper()
	bin := filepath.Join(dir, cmd)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/geobooth/geobooth/cmd/"+cmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func requirePeers(t *testing.T) {
	for _, tool := range [][2]string{{"boothd", "booth"}, {"booth", "booth"}, {"crm_ticket", "pacemaker-cli-utils"}, {"cibadmin", "pacemaker-cli-utils"}, {"curl", "curl"}} {
		testenv.RequireTool(t, tool[0], tool[1])
	}
	testenv.RequireRoot(t, "network namespaces")
}

// wrapper writes a crm_ticket for site into its own directory.
func wrapper(t *testing.T, dir, site, events string) string {
	t.Helper()
	wd := filepath.Join(dir, "bin-"+site)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of this test binary, where the user boothd drops to can run
	// it (go test's build directory is root's only).
	self := filepath.Join(dir, "crm-ticket-log")
	if _, err := os.Stat(self); err != nil {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(self, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\nBOOTHMIX_SITE=%s BOOTHMIX_EVENTS=%s exec %s \"$@\"\n", site, events, self)
	if err := os.WriteFile(filepath.Join(wd, "crm_ticket"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wd
}

func emptyCIB(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("cibadmin", "--empty").Output()
	if err != nil {
		t.Fatalf("cibadmin --empty: %v", err)
	}
	if err := os.WriteFile(path, out, 0o666); err != nil {
		t.Fatal(err)
	}
}
