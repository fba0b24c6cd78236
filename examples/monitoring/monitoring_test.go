// Package monitoring checks the example Prometheus rules and Grafana
// dashboard: the rules load and fire as their unit tests say (promtool),
// and every geobooth metric they name is one the daemon exports.
package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

var metricName = regexp.MustCompile(`geobooth_[a-z_]+`)

// exported returns every metric name defined in the project's Go sources.
func exported(t *testing.T) map[string]bool {
	names := map[string]bool{}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "examples" || d.Name() == "run") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`"(geobooth_[a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 30 {
		t.Fatalf("found only %d metric names in the sources", len(names))
	}
	return names
}

func checkNames(t *testing.T, file string, names map[string]bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	used := metricName.FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatalf("%s names no geobooth metric", file)
	}
	for _, n := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if !names[n] && !names[base] {
			t.Errorf("%s uses %s, which the daemon does not export", file, n)
		}
	}
}

func TestAlertRulesLoadAndFire(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}, {"check", "config", "prometheus.yml"}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
	checkNames(t, "alerts.yml", exported(t))
	// Every alert the operator was promised is there.
	b, _ := os.ReadFile("alerts.yml")
	for _, a := range []string{"GeoboothTicketWithoutOwner", "GeoboothLeaseRenewalsFailing", "GeoboothReplicationLagHigh",
		"GeoboothSplitBrain", "GeoboothMemberDown", "GeoboothConfigMismatch"} {
		if !strings.Contains(string(b), "alert: "+a+"\n") {
			t.Errorf("alert %s missing", a)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	areas := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			areas[p.Title] = true
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	for _, a := range []string{"Tickets", "Members", "Replication", "DNS", "Pacemaker"} {
		if !areas[a] {
			t.Errorf("no %s row", a)
		}
	}
	checkNames(t, "grafana-dashboard.json", exported(t))
}
