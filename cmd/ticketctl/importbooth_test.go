package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/internal/config"
)

// importAndLoad runs import-booth on conf and loads the cluster file it
// writes as a geobooth member (local) would.
func importAndLoad(t *testing.T, conf, local, host string) (*config.File, string) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "booth.conf")
	if err := os.WriteFile(in, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := filepath.Join(dir, "cluster.toml")
	var out bytes.Buffer
	if err := run([]string{"import-booth", "-o", cluster, in}, &out); err != nil {
		t.Fatalf("import-booth: %v", err)
	}
	text, err := os.ReadFile(cluster)
	if err != nil {
		t.Fatal(err)
	}
	// A member's own file, as examples/geo's, with keys and certificates
	// made by ticketctl.
	for _, args := range [][]string{{"keygen", filepath.Join(dir, "auth.key")}, {"keygen", "-token", filepath.Join(dir, "api.token")},
		{"keygen", "-serf", filepath.Join(dir, "serf.keyring")}, {"tls", "ca", "-dir", dir},
		{"tls", "cert", "-dir", dir, "-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"), "-host", host, local}} {
		if err := run(args, &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	member := fmt.Sprintf(`local = %q
cluster_file = "cluster.toml"
auth_key_file = "auth.key"
state_dir = %q
[api]
listen = "%s:7800"
token_file = "api.token"
[tls]
ca_file = "ca.pem"
cert_file = "%s.pem"
key_file = "%s-key.pem"
[serf]
keyring_file = "serf.keyring"
`, local, filepath.Join(dir, "state"), host, local, local)
	path := filepath.Join(dir, "member.toml")
	if err := os.WriteFile(path, []byte(member), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, "")
	if err != nil {
		t.Fatalf("the imported cluster file does not load: %v\n%s", err, text)
	}
	return f, string(text)
}

func TestImportBoothCarriesEveryTicketSetting(t *testing.T) {
	conf := `authfile = /etc/booth/authkey
port = 9930
site = 192.0.2.1
site = 192.0.2.2
arbitrator = 192.0.2.3
ticket = "__defaults__"
    timeout = 2
    retries = 4
ticket = "web"
    expire = 60
    acquire-after = 5
    before-acquire-handler = /usr/share/booth/service-runnable db
    attr-prereq = auto repl eq ok
ticket = "batch"
    expire = 1500ms
    timeout = 100ms
    retries = 3
    renewal-freq = 1000ms
    mode = manual
    weights = 1,2,3
`
	f, text := importAndLoad(t, conf, "site2", "192.0.2.2")
	if f.Cluster.Name != "booth" || len(f.Cluster.Members) != 3 || f.Cluster.Members[2].Role != "arbitrator" || f.Cluster.Members[1].Address != "192.0.2.2:9930" {
		t.Fatalf("cluster %+v\n%s", f.Cluster, text)
	}
	byName := map[string]int{}
	for i, tc := range f.Tickets {
		byName[tc.Name] = i
	}
	web := f.Tickets[byName["web"]]
	if web.Expire.Seconds() != 60 || web.Timeout.Seconds() != 2 || web.Retries != 4 || web.RenewalFreq.Seconds() != 30 ||
		web.AcquireAfter.Seconds() != 5 || len(web.AttrPrereqs) != 1 || web.AttrPrereqs[0].Name != "repl" {
		t.Fatalf("web = %+v\n%s", web, text)
	}
	if !strings.Contains(text, `before_acquire_handler = "/usr/share/booth/service-runnable db"`) {
		t.Fatalf("handler not carried over:\n%s", text)
	}
	batch := f.Tickets[byName["batch"]]
	if batch.Expire.Milliseconds() != 1500 || batch.RenewalFreq.Milliseconds() != 1000 || len(batch.Weights) != 0 {
		t.Fatalf("batch = %+v\n%s", batch, text)
	}
	for _, note := range []string{"authfile /etc/booth/authkey", "weights not carried over", "ticket batch is manual", "milliseconds", "BOOTH_* variables"} {
		if !strings.Contains(text, note) {
			t.Errorf("no note on %q:\n%s", note, text)
		}
	}
}

func TestImportBoothOfTheShippedExample(t *testing.T) {
	b, err := os.ReadFile("/usr/share/doc/booth/examples/booth.conf.example")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("booth's example (the booth package): %v", err)
		}
		t.Skip("booth is not installed")
	}
	f, _ := importAndLoad(t, string(b), "site1", "147.4.215.19")
	if len(f.Tickets) != 2 || len(f.Cluster.Members) != 3 {
		t.Fatalf("tickets %d, members %d", len(f.Tickets), len(f.Cluster.Members))
	}
}

func TestImportBoothRefusesWhatBoothRefuses(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "booth.conf")
	if err := os.WriteFile(in, []byte("site = 192.0.2.1\nticket = web\n  expire = 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run([]string{"import-booth", in}, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, "booth.conf:3") {
		t.Fatalf("import of a booth.conf Booth refuses: %v", err)
	}
}
