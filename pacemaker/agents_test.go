package pacemaker

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tc "github.com/geobooth/geobooth/kit/testenv"
)

func agentPath(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("agents", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// script writes an executable stand-in.
func script(t *testing.T, dir, name, body string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, env []string, name string, args ...string) (string, int) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// fakes makes a geoboothd that runs until killed (and passes -check) and a
// ticketctl that answers yes.
func fakes(t *testing.T) (dir, geoboothd, ticketctl string) {
	dir = t.TempDir()
	geoboothd = script(t, dir, "geoboothd", `[ "$1" = "-check" ] && exit 0; exec sleep 600`)
	ticketctl = script(t, dir, "ticketctl", `exit 0`)
	return dir, geoboothd, ticketctl
}

// fakeVolumeCtl makes a ticketctl that answers repl for one volume from a
// role file (primary or secondary) and a disk file, and changes the role
// on promote and demote; promote fails when the file "notheld" exists.
func fakeVolumeCtl(t *testing.T, dir string) string {
	os.WriteFile(filepath.Join(dir, "role"), []byte("secondary"), 0o644)
	os.WriteFile(filepath.Join(dir, "disk"), []byte("UpToDate"), 0o644)
	return script(t, dir, "ticketctl-repl", `d=`+dir+`
shift 2
[ "$1" = repl ] || exit 2
case "$2" in
--json) printf '{\n  "volume": "data",\n  "role": "%s",\n  "disk": "%s",\n  "peers": [{"peer_role": "x", "peer_disk": "y"}]\n}\n' "$(cat $d/role)" "$(cat $d/disk)" ;;
promote) [ -f $d/notheld ] && { echo "ticket web is not held here" >&2; exit 1; }; echo primary >$d/role ;;
demote) echo secondary >$d/role ;;
*) exit 2 ;;
esac`)
}

func TestAgentsPassOcfTester(t *testing.T) {
	tester := tc.RequireTool(t, "ocf-tester", "resource-agents")
	tc.RequireTool(t, "xmllint", "libxml2-utils")
	dir, geoboothd, ticketctl := fakes(t)
	cfg := filepath.Join(dir, "site.toml")
	os.WriteFile(cfg, []byte("# stand-in\n"), 0o644)
	cases := map[string][]string{
		"geobooth":     {"-o", "config=" + cfg, "-o", "geoboothd=" + geoboothd, "-o", "ticketctl=" + ticketctl, "-o", "rundir=" + dir},
		"ticket-guard": {"-o", "ticket=web", "-o", "config=" + cfg, "-o", "ticketctl=" + ticketctl, "-o", "state=" + filepath.Join(dir, "guard.state")},
		"volume":       {"-o", "volume=data", "-o", "config=" + cfg, "-o", "ticketctl=" + fakeVolumeCtl(t, dir), "-o", "state=" + filepath.Join(dir, "volume.state")},
	}
	for name, params := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-n", "test-" + name}, params...)
			out, code := run(t, nil, tester, append(args, agentPath(t, name))...)
			if code != 0 || !strings.Contains(out, "passed all tests") {
				t.Fatalf("ocf-tester: exit %d\n%s", code, out)
			}
		})
	}
}

func TestAgentsAnswerMetaDataAndRefuseUnknownActions(t *testing.T) {
	for _, name := range []string{"geobooth", "ticket-guard", "volume"} {
		out, code := run(t, nil, agentPath(t, name), "meta-data")
		if code != 0 || !strings.Contains(out, `<resource-agent name="`+name+`"`) || !strings.Contains(out, "ra-api-1.dtd") {
			t.Errorf("%s meta-data: exit %d\n%s", name, code, out)
		}
		if _, code := run(t, nil, agentPath(t, name), "frobnicate"); code != 3 {
			t.Errorf("%s frobnicate: exit %d, want 3 (OCF_ERR_UNIMPLEMENTED)", name, code)
		}
	}
}

// installAgents makes the agents visible to crm_resource, which finds them
// only under the OCF root (root needed).
func installAgents(t *testing.T) string {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("crm_resource tests need root to install agents under /usr/lib/ocf")
		}
		t.Skip("crm_resource finds agents only under /usr/lib/ocf: run as root")
	}
	provider := "geobooth-test"
	dir := filepath.Join("/usr/lib/ocf/resource.d", provider)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, name := range []string{"geobooth", "ticket-guard", "volume"} {
		if err := os.Symlink(agentPath(t, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return provider
}

func TestCrmResourceValidateAndForceCheckExitCodes(t *testing.T) {
	tc.RequireTool(t, "crm_resource", "pacemaker-cli-utils")
	provider := installAgents(t)
	dir, geoboothd, ticketctl := fakes(t)
	notHeld := script(t, dir, "ticketctl-no", `[ "$3" = held ] && exit 1; exit 0`)
	state := "state=" + filepath.Join(dir, "g.state")
	cases := []struct {
		name   string
		action string
		agent  string
		opts   []string
		want   int
	}{
		{"guard valid", "--validate", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl}, 0},
		{"guard without ticket", "--validate", "ticket-guard", []string{"ticketctl=" + ticketctl}, 6},
		{"guard without ticketctl", "--validate", "ticket-guard", []string{"ticket=web", "ticketctl=/nonexistent/ticketctl"}, 5},
		{"guard stopped", "--force-check", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 7},
		{"guard start", "--force-start", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 0},
		{"guard running", "--force-check", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 0},
		{"guard promote refused without the ticket", "--force-promote", "ticket-guard", []string{"ticket=web", "ticketctl=" + notHeld, state}, 1},
		{"guard promote", "--force-promote", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 0},
		{"guard promoted", "--force-check", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 8},
		{"guard promoted without the ticket", "--force-check", "ticket-guard", []string{"ticket=web", "ticketctl=" + notHeld, state}, 9},
		{"guard demote", "--force-demote", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 0},
		{"guard stop", "--force-stop", "ticket-guard", []string{"ticket=web", "ticketctl=" + ticketctl, state}, 0},
		{"daemon without config", "--validate", "geobooth", []string{"geoboothd=" + geoboothd, "ticketctl=" + ticketctl}, 6},
		{"daemon without program", "--validate", "geobooth", []string{"config=/etc/hostname", "geoboothd=/nonexistent/geoboothd", "ticketctl=" + ticketctl}, 5},
		{"daemon not running", "--force-check", "geobooth", []string{"config=/etc/hostname", "geoboothd=" + geoboothd, "ticketctl=" + ticketctl, "rundir=" + dir}, 7},
	}
	for _, c := range cases {
		args := []string{c.action, "--class", "ocf", "--provider", provider, "--agent", c.agent}
		for _, o := range c.opts {
			args = append(args, "--option", o)
		}
		out, code := run(t, nil, "crm_resource", args...)
		if code != c.want {
			t.Errorf("%s: crm_resource %s: exit %d, want %d\n%s", c.name, c.action, code, c.want, out)
		}
	}
}

func TestServiceRunnableHandler(t *testing.T) {
	tc.RequireTool(t, "crm_simulate", "pacemaker-cli-utils")
	tc.RequireTool(t, "xmllint", "libxml2-utils")
	handler, _ := filepath.Abs("handlers/service-runnable")
	cases := []struct {
		name, cib string
		setup     [][]string
		args      []string
		want      int
	}{
		{"would start", "stop.xml", nil, []string{"svc"}, 0},
		{"not promotable", "stop.xml", nil, []string{"svc", "Promoted"}, 1},
		{"promotable clone", "demote.xml", nil, []string{"vol-clone", "Promoted"}, 0},
		{"unknown resource", "stop.xml", nil, []string{"nosuch"}, 1},
		{"banned everywhere", "stop.xml", [][]string{{"crm_resource", "--ban", "-r", "svc", "-N", "node1"}, {"crm_resource", "--ban", "-r", "svc", "-N", "node2"}}, []string{"svc"}, 1},
		{"ticket in standby", "stop.xml", [][]string{{"crm_resource", "--ban", "-r", "svc", "-N", "node1"}, {"crm_resource", "--ban", "-r", "svc", "-N", "node2"}, {"crm_ticket", "-t", "web", "-s"}}, []string{"svc"}, 0},
		{"target-role Stopped", "stop.xml", [][]string{{"crm_resource", "--ban", "-r", "svc", "-N", "node1"}, {"crm_resource", "--ban", "-r", "svc", "-N", "node2"}, {"crm_resource", "-r", "svc", "--meta", "-p", "target-role", "-v", "Stopped"}}, []string{"svc"}, 0},
		{"no arguments", "stop.xml", nil, nil, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, c.cib)
			env := []string{"CIB_file=" + s.cib, "BOOTH_TICKET=web"}
			for _, cmd := range c.setup {
				if out, code := run(t, env, cmd[0], cmd[1:]...); code != 0 {
					t.Fatalf("%v: %d %s", cmd, code, out)
				}
			}
			out, code := run(t, env, handler, c.args...)
			if code != c.want {
				t.Fatalf("exit %d, want %d\n%s", code, c.want, out)
			}
		})
	}
}

// TestVolumeAgentFollowsTheDaemon drives the volume agent through
// crm_resource against a stand-in ticketctl: roles come from the daemon,
// and a promotion the daemon refuses (ticket not held) fails.
func TestVolumeAgentFollowsTheDaemon(t *testing.T) {
	tc.RequireTool(t, "crm_resource", "pacemaker-cli-utils")
	provider := installAgents(t)
	dir := t.TempDir()
	opts := []string{"volume=data", "ticketctl=" + fakeVolumeCtl(t, dir), "state=" + filepath.Join(dir, "v.state")}
	notHeld := filepath.Join(dir, "notheld")
	steps := []struct {
		name, action string
		setup        func()
		want         int
	}{
		{"stopped", "--force-check", nil, 7},
		{"start", "--force-start", nil, 0},
		{"secondary", "--force-check", nil, 0},
		{"promote refused without the ticket", "--force-promote", func() { os.WriteFile(notHeld, nil, 0o644) }, 1},
		{"still secondary", "--force-check", nil, 0},
		{"promote", "--force-promote", func() { os.Remove(notHeld) }, 0},
		{"primary", "--force-check", nil, 8},
		{"demote", "--force-demote", nil, 0},
		{"secondary again", "--force-check", nil, 0},
		{"promote for stop", "--force-promote", nil, 0},
		{"stop demotes", "--force-stop", nil, 0},
		{"stopped again", "--force-check", nil, 7},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		args := []string{s.action, "--class", "ocf", "--provider", provider, "--agent", "volume"}
		for _, o := range opts {
			args = append(args, "--option", o)
		}
		out, code := run(t, nil, "crm_resource", args...)
		if code != s.want {
			t.Fatalf("%s: crm_resource %s: exit %d, want %d\n%s", s.name, s.action, code, s.want, out)
		}
	}
	if role, _ := os.ReadFile(filepath.Join(dir, "role")); strings.TrimSpace(string(role)) != "secondary" {
		t.Fatalf("stop left the volume %s", role)
	}
	args := []string{"--validate", "--class", "ocf", "--provider", provider, "--agent", "volume", "--option", opts[1]}
	if out, code := run(t, nil, "crm_resource", args...); code != 6 {
		t.Fatalf("validate without a volume: exit %d, want 6\n%s", code, out)
	}
}
