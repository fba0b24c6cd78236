// Package pacemaker checks the example Pacemaker configuration: the
// resources load into a CIB that Pacemaker's own checker accepts, and the
// scheduler places the site daemon's group on one node.
package pacemaker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

func TestTheSiteGroupIsAValidConfigurationOnOneNode(t *testing.T) {
	testenv.RequireTool(t, "crm_verify", "pacemaker-cli-utils")
	testenv.RequireTool(t, "crm_simulate", "pacemaker-cli-utils")
	cib, err := os.ReadFile("../../pacemaker/testdata/stop.xml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile("geobooth-resource.xml")
	if err != nil {
		t.Fatal(err)
	}
	inner := strings.TrimSpace(string(ex))
	inner = strings.TrimSuffix(strings.TrimPrefix(inner, "<resources>"), "</resources>")
	if !strings.Contains(string(cib), "</resources>") {
		t.Fatal("the test CIB has no resources section")
	}
	path := filepath.Join(t.TempDir(), "cib.xml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(cib), "</resources>", inner+"</resources>", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("crm_verify", "-x", path).CombinedOutput(); err != nil {
		t.Fatalf("crm_verify refuses the example: %v\n%s", err, out)
	}
	if out, err := exec.Command("crm_simulate", "-x", path, "-S", "-X", "-Q").CombinedOutput(); err != nil {
		t.Fatalf("crm_simulate: %v\n%s", err, out)
	}
	nodes := map[string]bool{}
	for _, r := range []string{"geobooth-state", "geobooth-ip", "geobooth"} {
		cmd := exec.Command("crm_resource", "--locate", "-r", r)
		cmd.Env = append(os.Environ(), "CIB_file="+path)
		out, err := cmd.CombinedOutput()
		s := strings.TrimSpace(string(out))
		if err != nil || !strings.Contains(s, "is running on: ") {
			t.Fatalf("%s does not run: %v\n%s", r, err, out)
		}
		nodes[s[strings.LastIndex(s, " ")+1:]] = true
	}
	if len(nodes) != 1 {
		t.Fatalf("the group's resources run on %v: the state device, the address and the daemon must be on one node", nodes)
	}
}
