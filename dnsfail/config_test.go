package dnsfail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 17, F11: a zones file holding TSIG secrets passed at mode 0644.
func TestZonesFileWithSecretsMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	zones := `[[keys]]
name = "transfer"
secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
`
	path := filepath.Join(dir, "dns.toml")
	if err := os.WriteFile(path, []byte(zones), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{Listen: "127.0.0.1:53", ZonesFile: path}
	errs := c.Load(dir, []string{"east", "west"})
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "holds TSIG secrets and is readable by others") {
		t.Fatalf("a world-readable zones file with a key: %v", errs)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c = Config{Listen: "127.0.0.1:53", ZonesFile: path}
	if errs := c.Load(dir, []string{"east", "west"}); len(errs) != 0 {
		t.Fatalf("the same file at 0600: %v", errs)
	}
	// Without a secret the file may stay readable (zones are public data).
	if err := os.WriteFile(path, []byte("# no zones yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = Config{Listen: "127.0.0.1:53", ZonesFile: path}
	if errs := c.Load(dir, []string{"east", "west"}); len(errs) != 0 {
		t.Fatalf("a readable zones file without secrets: %v", errs)
	}
}

// Issue 19: geoboothd -check said ok for a missing zone file, a garbage
// one, an invalid record and a static record clashing with a failover
// name, and the daemon then refused to start. The check builds each zone
// as the server does.
func TestZoneFilesAreCheckedWithTheConfiguration(t *testing.T) {
	zones := `[[zones]]
origin = "example.test."
file = "example.test.zone"
allow_transfer = ["127.0.0.1"]

[[zones.failover]]
name = "www"
type = "A"
ttl = "5s"
ticket = "web"
[zones.failover.sites.east]
targets = ["192.0.2.1"]
[zones.failover.sites.west]
targets = ["192.0.2.2"]
`
	good := "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"
	for name, c := range map[string]struct {
		zone string // "" : no zone file
		want string
	}{
		"missing":            {"", "example.test.zone"},
		"garbage":            {"this is not a zone file {\n", "example.test.zone"},
		"invalid record":     {good + "bad IN A 999.1.1.1\n", "999.1.1.1"},
		"clash with www":     {good + "www IN A 192.0.2.80\n", "www"},
		"a good zone (none)": {good, ""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "dns.toml"), []byte(zones), 0o644); err != nil {
				t.Fatal(err)
			}
			if c.zone != "" {
				if err := os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(c.zone), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{Listen: "127.0.0.1:53", ZonesFile: filepath.Join(dir, "dns.toml")}
			errs := cfg.Load(dir, []string{"east", "west"})
			if c.want == "" {
				if len(errs) != 0 {
					t.Fatalf("a good zone: %v", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.want) {
				t.Fatalf("want an error naming %q, got %v", c.want, errs)
			}
		})
	}
}
