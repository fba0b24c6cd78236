package testcluster

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FromExample prepares the cluster of an examples/ folder exactly as
// configured (fixed ports and all), with its files copied to a temporary
// folder so state and keys start fresh; it does not start it. names are
// the member config files without .toml.
func FromExample(t testing.TB, example string, names ...string) *Cluster {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", example)
	c := &Cluster{t: t, Dir: t.TempDir(), Bin: Binaries(t)}
	if err := copyDir(src, c.Dir); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(c.Dir, "run")
	os.RemoveAll(run)
	os.MkdirAll(run, 0o700)
	c.run("", "keygen", filepath.Join(run, "auth.key"))
	c.run("", "keygen", "-token", filepath.Join(run, "api.token"))
	c.run("", "keygen", "-serf", filepath.Join(run, "serf.keyring"))
	if example == "local" {
		// as ./cluster start does: the example zone is signed.
		c.run("", "dns", "keygen", "example.test.", filepath.Join(run, "example.test.key"))
	}
	b, _ := os.ReadFile(filepath.Join(run, "api.token"))
	c.Token = strings.TrimSpace(string(b))
	for _, n := range names {
		m := &Member{Name: n, cluster: c, Config: filepath.Join(c.Dir, n+".toml"), LogPath: filepath.Join(run, n+".log"), ExtraPorts: map[string]int{}}
		var f struct {
			API struct {
				Listen string `toml:"listen"`
			} `toml:"api"`
		}
		if _, err := toml.DecodeFile(m.Config, &f); err != nil {
			t.Fatal(err)
		}
		m.API = f.API.Listen
		c.Members = append(c.Members, m)
	}
	t.Cleanup(func() {
		c.StopAll()
		c.checkRaces()
	})
	return c
}

// copyDir copies a folder tree (files only), skipping run/.
func copyDir(from, to string) error {
	return filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			if rel == "run" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(filepath.Join(to, rel), b, info.Mode().Perm()|0o600)
	})
}
