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

// Issue 20: NOTIFY was signed with transfer_key, which no document said;
// secondaries that accept NOTIFY by address refused it. Each notify entry
// now says whether it is signed, and with which key.
func TestNotifyEntriesSayWhetherTheyAreSigned(t *testing.T) {
	head := `[[keys]]
name = "xfr"
secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="

[[zones]]
origin = "example.test."
file = "example.test.zone"
transfer_key = "xfr"
`
	zone := "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"
	for name, c := range map[string]struct {
		notify string
		want   []NotifyTarget // nil: an error naming wantErr
		err    string
	}{
		"plain and signed": {
			notify: `notify = ["127.0.0.1:5353", { address = "192.0.2.9:53", key = "XFR" }]`,
			want:   []NotifyTarget{{Address: "127.0.0.1:5353"}, {Address: "192.0.2.9:53", Key: "xfr."}},
		},
		"unknown key":     {notify: `notify = [{ address = "192.0.2.9:53", key = "other" }]`, err: `notify.0.key: "other.": no such key`},
		"no address":      {notify: `notify = [{ key = "xfr" }]`, err: "needs address"},
		"unknown field":   {notify: `notify = [{ address = "192.0.2.9:53", tsig = "xfr" }]`, err: `unknown field "tsig"`},
		"not a host:port": {notify: `notify = ["192.0.2.9"]`, err: `notify.0: "192.0.2.9": want host:port`},
		"a number":        {notify: `notify = [53]`, err: "want \"host:port\""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "dns.toml"), []byte(head+c.notify+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(zone), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := Config{Listen: "127.0.0.1:53", ZonesFile: filepath.Join(dir, "dns.toml")}
			errs := cfg.Load(dir, []string{"east", "west"})
			if c.err != "" {
				if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.err) {
					t.Fatalf("want an error naming %q, got %v", c.err, errs)
				}
				return
			}
			if len(errs) != 0 {
				t.Fatal(errs)
			}
			if got := cfg.Zones[0].Notify; fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("notify = %+v, want %+v", got, c.want)
			}
		})
	}
}

// A zones-file error says file:line: key (STYLE §4).
func TestZonesFileErrorsSayFileLineAndKey(t *testing.T) {
	zones := `[[zones]]
origin = "example.test."
file = "example.test.zone"

[[zones.failover]]
name = "www"
type = "A"
ttl = "5s"
ticket = "web"
sites = { east = { targets = ["192.0.2.1"] } }

[[zones.failover]]
name = "api"
type = "MX"
ttl = "5s"
ticket = "web"
sites = { east = { targets = ["192.0.2.1"] } }
when_no_owner = "sometimes"
health = { rise = 1, fal = 2 }
`
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.toml")
	if err := os.WriteFile(path, []byte(zones), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:53", ZonesFile: path}
	got := fmt.Sprint(cfg.Load(dir, []string{"east", "west"}))
	for _, want := range []string{
		path + `:14: zones.0.failover.1.type: "MX": want A, AAAA or CNAME`,
		path + `:18: zones.0.failover.1.when_no_owner: "sometimes": want nodata or fallback`,
		path + `:19: zones.failover.health.fal: unknown key`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors do not say %q:\n%s", want, got)
		}
	}
}

// A failover entry starts from DefaultFailover(): the keys left out of
// the zones file take its policies and health check settings, the keys
// given replace them.
func TestFailoverEntriesStartFromTheirDefaults(t *testing.T) {
	zones := `[[zones]]
origin = "example.test."
file = "example.test.zone"

[[zones.failover]]
name = "www"
type = "A"
ttl = "5s"
ticket = "web"
sites = { east = { targets = ["192.0.2.1"] } }
health = { rise = 1 }
`
	dir := t.TempDir()
	for name, text := range map[string]string{"dns.toml": zones, "example.test.zone": testZone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Default()
	cfg.Listen, cfg.ZonesFile = "127.0.0.1:53", "dns.toml"
	if errs := cfg.Load(dir, []string{"east", "west"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	got, want := cfg.Zones[0].Failover[0], DefaultFailover()
	want.Health.Rise = 1
	if got.Health.Interval != want.Health.Interval || got.Health.Fall != want.Health.Fall || got.Health.Rise != 1 || got.Health.Status != want.Health.Status ||
		got.WhenNoOwner != want.WhenNoOwner || got.WhenUnhealthy != want.WhenUnhealthy {
		t.Fatalf("decoded %+v, want the defaults %+v with rise 1", got, want)
	}
	if cfg.RateLimit != DefaultRateLimit || cfg.RateLimitSlip != DefaultRateLimitSlip {
		t.Fatalf("rate limit %d/%d, want the defaults", cfg.RateLimit, cfg.RateLimitSlip)
	}
}
