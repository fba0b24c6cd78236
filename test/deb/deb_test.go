// Package deb tests the Debian package as an operator meets it: built
// reproducibly by make deb, installed with dpkg, checked, removed.
package deb

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// build builds the package into out and returns its path and its hash.
func build(t *testing.T, out string) (string, string) {
	t.Helper()
	deb := strings.TrimSpace(run(t, "../..", "packaging/deb/build", out))
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	return deb, fmt.Sprintf("%x", sha256.Sum256(b))
}

// members lists a package's members (mode, owner, size, time, name) and
// the hash of each file's contents, control files included.
func members(t *testing.T, deb string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	run(t, "", "dpkg-deb", "-R", deb, dir)
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "", "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		out[f[len(f)-1]] = line
	}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out["contents of "+rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	return out
}

// debDiff says which members of two packages differ, and how.
func debDiff(t *testing.T, a, b string) string {
	ma, mb := members(t, a), members(t, b)
	var diff []string
	for k, va := range ma {
		if vb := mb[k]; va != vb {
			diff = append(diff, fmt.Sprintf("%s\n  first:  %s\n  second: %s", k, va, vb))
		}
	}
	for k, vb := range mb {
		if _, ok := ma[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s\n  only in the second: %s", k, vb))
		}
	}
	if len(diff) == 0 {
		return "no member differs (the archive's own metadata does)"
	}
	sort.Strings(diff)
	return strings.Join(diff, "\n")
}

// Issue 19: "make install" was the only way to install. The package is
// built twice with the same bytes; installed, its daemon checks the
// geo example as an operator would set it up; its unit verifies; its man
// page reads; removing it leaves no daemon running and the state in
// place. It changes the machine (dpkg -i), so it runs in CI or when
// GEOBOOTH_TEST_PACKAGE=1, as root.
func TestPackageBuildsReproduciblyInstallsChecksAndRemoves(t *testing.T) {
	if os.Getenv("CI") == "" && os.Getenv("GEOBOOTH_TEST_PACKAGE") == "" {
		t.Skip("installs a package on this machine: runs in CI or with GEOBOOTH_TEST_PACKAGE=1")
	}
	testenv.RequireRoot(t, "dpkg -i")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
	testenv.RequireTool(t, "systemd-analyze", "systemd")
	testenv.RequireTool(t, "man", "man-db")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "geobooth").CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a geobooth package is installed on this machine already: %s", out)
	}
	a, b := t.TempDir(), t.TempDir()
	debA, ha := build(t, a)
	debB, hb := build(t, b)
	if ha != hb {
		t.Fatalf("two builds of the same commit differ: %s %s\n%s", ha, hb, debDiff(t, debA, debB))
	}
	debs, _ := filepath.Glob(filepath.Join(a, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("built %v", debs)
	}
	run(t, "", "dpkg", "-i", debs[0])
	installed := true
	t.Cleanup(func() {
		if installed {
			exec.Command("dpkg", "-r", "geobooth").Run()
		}
	})
	if out := run(t, "", "/usr/bin/geoboothd", "-version"); !strings.HasPrefix(out, "geoboothd ") || strings.Contains(out, "dev\n") {
		t.Fatalf("geoboothd -version: %q", out)
	}
	if out := run(t, "", "id", "geobooth"); !strings.Contains(out, "uid=") {
		t.Fatalf("no user geobooth: %s", out)
	}
	if st, err := os.Stat("/var/lib/geobooth"); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("/var/lib/geobooth: %v %v", st, err)
	}

	// The geo example as an operator copies it, with keys and
	// certificates made by the installed ticketctl, checked by the
	// installed daemon.
	etc := t.TempDir()
	run(t, "", "cp", "-r", "/usr/share/doc/geobooth/examples/geo/.", etc)
	ctl := func(args ...string) { run(t, etc, "/usr/bin/ticketctl", args...) }
	ctl("keygen", "auth.key")
	ctl("keygen", "-token", "api.token")
	ctl("keygen", "-serf", "serf.keyring")
	ctl("tls", "ca")
	for _, m := range []string{"east", "west", "arbitrator"} {
		ctl("tls", "cert", "-host", "198.51.100.1", m)
	}
	for _, m := range []string{"east", "west", "arbitrator"} {
		if out := run(t, etc, "/usr/bin/geoboothd", "-check", "-config", filepath.Join(etc, m+".toml"), "-state-dir", t.TempDir()); !strings.Contains(out, ": ok") {
			t.Fatalf("%s: -check: %s", m, out)
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/geoboothd@.service").CombinedOutput(); err != nil || bytes.Contains(out, []byte("geoboothd@")) {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	cmd := exec.Command("man", "-P", "cat", "ticketctl")
	cmd.Env = append(os.Environ(), "MANWIDTH=80")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "EXIT STATUS") {
		t.Fatalf("man ticketctl: %v\n%s", err, out)
	}
	cmd = exec.Command("man", "-P", "cat", "8", "geoboothd")
	cmd.Env = append(os.Environ(), "MANWIDTH=80")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SIGHUP") {
		t.Fatalf("man geoboothd: %v\n%s", err, out)
	}
	if out := run(t, "", "bash", "-c", ". /usr/share/bash-completion/completions/ticketctl && complete -p ticketctl"); !strings.Contains(out, "_ticketctl") {
		t.Fatalf("bash completion: %s", out)
	}

	// State written under /var/lib/geobooth survives the removal.
	marker := "/var/lib/geobooth/test-marker"
	if err := os.WriteFile(marker, []byte("votes"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	run(t, "", "dpkg", "-r", "geobooth")
	installed = false
	if _, err := os.Stat("/usr/bin/geoboothd"); !os.IsNotExist(err) {
		t.Fatalf("/usr/bin/geoboothd after dpkg -r: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("dpkg -r removed the state: %v", err)
	}
	if out, err := exec.Command("pgrep", "-f", "^/usr/bin/geoboothd").CombinedOutput(); err == nil {
		t.Fatalf("geoboothd still runs after dpkg -r: %s", out)
	}
}
