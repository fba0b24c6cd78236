package pacemaker

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tc "github.com/geobooth/geobooth/internal/testenv"
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

func TestAgentsPassOcfTester(t *testing.T) {
	tester := tc.RequireTool(t, "ocf-tester", "resource-agents")
	tc.RequireTool(t, "xmllint", "libxml2-utils")
	dir, geoboothd, ticketctl := fakes(t)
	cfg := filepath.Join(dir, "site.toml")
	os.WriteFile(cfg, []byte("# stand-in\n"), 0o644)
	cases := map[string][]string{
		"geobooth":     {"-o", "config=" + cfg, "-o", "geoboothd=" + geoboothd, "-o", "ticketctl=" + ticketctl, "-o", "rundir=" + dir},
		"ticket-guard": {"-o", "ticket=web", "-o", "config=" + cfg, "-o", "ticketctl=" + ticketctl, "-o", "state=" + filepath.Join(dir, "guard.state")},
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
	for _, name := range []string{"geobooth", "ticket-guard"} {
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
	for _, name := range []string{"geobooth", "ticket-guard"} {
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
