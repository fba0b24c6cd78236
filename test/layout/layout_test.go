// Package layout checks that the folders stay the architecture: every
// package sits in a layer, and imports only run down the layers (never up,
// never sideways between the worlds the ticket drives).
package layout

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/geobooth/geobooth"

// layers, from the bottom. A package imports only packages of a lower
// layer, or of its own layer below its own folder (replication →
// replication/nbd); leaves may import leaves. A pattern ending in "/..."
// covers a folder's packages.
var layers = [][]string{
	// leaves: the API's types and helpers of the standard library's kind
	{"api", "kit/...", "dnsfail/dnskey", "booth/boothconf", "booth/handover", "ticket/internal/mutation"},
	// the protocol's core, its deterministic runtime engine, and the shell
	// around the engine (clock, transport, store, workers)
	{"ticket"},
	{"ticket/engine"},
	{"internal/node"},
	// the worlds the ticket drives, the membership and alerting parts, and
	// Booth's protocol (its own engine, beside ticket's)
	{"replication", "replication/nbd", "dnsfail", "pacemaker", "internal/membership", "internal/alerts", "booth"},
	// the configuration file, which hands each part its section
	{"internal/config"},
	// the HTTP API, then the status page that renders its tickets
	{"internal/httpapi"},
	{"internal/dashboard"},
	// the daemon's common assembly
	{"internal/daemon"},
	// the roles
	{"site", "arbitrator", "boothsite"},
	// the commands
	{"cmd/..."},
}

// clientOnly: ticketctl is a plain HTTP client of the API; it links the
// leaves only (no serf, no DNS server, no replication engine).
var clientOnly = map[string]bool{"cmd/ticketctl": true}

// outside the layers: tests, benchmarks, examples and test harnesses may
// import anything.
var free = []string{"test/...", "bench/...", "examples/...", "internal/testcluster"}

func matches(pattern, pkg string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == p || strings.HasPrefix(pkg, p+"/")
	}
	return pkg == pattern
}

func layerOf(pkg string) int {
	for i, l := range layers {
		for _, p := range l {
			if matches(p, pkg) {
				return i
			}
		}
	}
	return -1
}

func isFree(pkg string) bool {
	for _, p := range free {
		if matches(p, pkg) {
			return true
		}
	}
	return false
}

// imports lists the module's packages and what each imports of the module
// (test files aside). It reads every package's folder and files itself as
// well, so that go test's cache knows this result depends on them.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{"\t"}}{{.Dir}}{{range .Imports}}{{"\t"}}{{.}}{{end}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		pkg, ok := strings.CutPrefix(f[0], module+"/")
		if !ok {
			continue
		}
		if entries, err := os.ReadDir(f[1]); err == nil {
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".go") {
					_, _ = os.ReadFile(filepath.Join(f[1], e.Name()))
				}
			}
		}
		deps[pkg] = nil
		for _, imp := range f[2:] {
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				deps[pkg] = append(deps[pkg], rel)
			}
		}
	}
	return deps
}

func TestImportsRunDownTheLayers(t *testing.T) {
	for pkg, deps := range imports(t) {
		if isFree(pkg) {
			continue
		}
		lp := layerOf(pkg)
		if lp < 0 {
			t.Errorf("%s is in no layer: add it to the table in test/layout (and to the README's layout)", pkg)
			continue
		}
		for _, d := range deps {
			ld := layerOf(d)
			switch {
			case ld < 0 || isFree(d):
				t.Errorf("%s imports %s, which is in no layer (or a test harness)", pkg, d)
			case clientOnly[pkg] && ld != 0:
				t.Errorf("%s is an API client: it may import only the leaves, not %s", pkg, d)
			case ld > lp:
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must run down", pkg, lp, d, ld)
			case ld == lp && ld != 0 && !strings.HasPrefix(d, pkg+"/"):
				t.Errorf("%s imports %s of its own layer: only its own sub-packages", pkg, d)
			}
		}
	}
}
