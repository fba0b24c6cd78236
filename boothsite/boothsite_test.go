package boothsite

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/replication"
)

const boothConf = `site = 192.0.2.1
site = 192.0.2.2
arbitrator = 192.0.2.3
ticket = "web"
ticket = "db"
    mode = manual
`

var east = netip.MustParseAddr("192.0.2.1")

// setup writes booth.conf and a replication key in a new folder.
func setup(t *testing.T) (*boothconf.Config, string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := boothconf.ParseConfig(strings.NewReader(boothConf), filepath.Join(dir, "booth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "repl.key"), []byte("a replication key of the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

func writeFile(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "volumes.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const volume = `
[[volumes]]
name = "data"
ticket = "web"
size = "1MiB"
path = "data.img"
listen = "127.0.0.1:0"
peers = [{ name = "192.0.2.2", address = "127.0.0.1:1" }]
`

// The volumes file: paths in the state folder, a block device's metadata
// there too; each mistake refused with its line.
func TestLoadChecksTheVolumesAgainstBoothConf(t *testing.T) {
	cfg, dir := setup(t)
	state := filepath.Join(dir, "state")
	f, err := Load(writeFile(t, dir, `auth_key_file = "repl.key"`+volume), cfg, east, state)
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Volumes[0]; v.Path != filepath.Join(state, "data.img") || f.Self != "192.0.2.1" || string(f.Key) != "a replication key of the test" {
		t.Fatalf("loaded %+v (self %s)", v, f.Self)
	}
	for _, c := range []struct{ name, text, want string }{
		{"no key", volume, "volumes.toml: auth_key_file: missing"},
		{"the arbitrator as a peer", `auth_key_file = "repl.key"` + strings.Replace(volume, `"192.0.2.2"`, `"192.0.2.3"`, 1),
			`volumes.0.peers.0.name: "192.0.2.3" is not a site`},
		{"itself as a peer", `auth_key_file = "repl.key"` + strings.Replace(volume, `"192.0.2.2"`, `"192.0.2.1"`, 1),
			`"192.0.2.1" is this site`},
		{"a manual ticket", `auth_key_file = "repl.key"` + strings.Replace(volume, `"web"`, `"db"`, 1),
			":4: volumes.0.ticket: \"db\" is a manual ticket"},
		{"an unknown ticket", `auth_key_file = "repl.key"` + strings.Replace(volume, `"web"`, `"mail"`, 1), `"mail": not a ticket of`},
		{"an unknown key", `auth_key_file = "repl.key"` + volume + "colour = \"red\"\n", "colour: unknown key"},
		{"a certificate of another site", `auth_key_file = "repl.key"
[tls]
ca_file = "tls/ca.pem"
cert_file = "tls/192.0.2.2.pem"
key_file = "tls/192.0.2.2-key.pem"
` + volume, `it names "192.0.2.2", not this site's address 192.0.2.1`},
		{"no volumes", `auth_key_file = "repl.key"`, "no [[volumes]] entries"},
	} {
		if strings.Contains(c.text, "[tls]") {
			makeCert(t, dir, "192.0.2.2")
		}
		_, err := Load(writeFile(t, dir, c.text), cfg, east, state)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// makeCert makes the CA and a site's certificate with ticketctl's code
// path: the ticketctl binary, built once.
func makeCert(t *testing.T, dir, site string) {
	t.Helper()
	tlsDir := filepath.Join(dir, "tls")
	ctl := filepath.Join(dir, "ticketctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "github.com/geobooth/geobooth/cmd/ticketctl").CombinedOutput(); err != nil {
		t.Fatalf("go build ticketctl: %v\n%s", err, out)
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"tls", "ca", "-dir", tlsDir},
		{"tls", "cert", "-dir", tlsDir, "-ca", filepath.Join(tlsDir, "ca.pem"), "-ca-key", filepath.Join(tlsDir, "ca-key.pem"), "-host", site, site}} {
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("ticketctl %v: %v\n%s", args, err, out)
		}
	}
}

// The volumes follow the ticket: promoted by Acquire, their lease ended
// and demoted by Release (at once, with the lease left: its peer is away,
// there is nothing to drain to); a replica with bad data fails the check
// and is not promoted.
func TestVolumesFollowTheTicket(t *testing.T) {
	cfg, dir := setup(t)
	for _, c := range []struct {
		newReplicas string
		good        bool
	}{{"sync", true}, {"full", false}} {
		state := filepath.Join(dir, c.newReplicas)
		f, err := Load(writeFile(t, dir, `auth_key_file = "repl.key"`+volume+`new_replicas = "`+c.newReplicas+`"`+"\n"), cfg, east, state)
		if err != nil {
			t.Fatal(err)
		}
		var notes []string
		vs, err := Open(f, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), func(ticket, kind, _ string) { notes = append(notes, ticket+" "+kind) })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := vs.Start(ctx); err != nil {
			t.Fatal(err)
		}
		v := vs.List()[0]
		if got := vs.Tickets(); len(got) != 1 || got[0] != "web" {
			t.Fatalf("tickets %v", got)
		}
		vs.Lease("web", true, time.Now().Add(time.Minute))
		err = vs.Acquire(ctx, "web", time.Now().Add(time.Minute))
		if !c.good {
			if vs.Check("web") == nil || !errors.Is(err, replication.ErrNotUpToDate) || v.Role() != replication.Secondary {
				t.Fatalf("an Inconsistent replica: check %v, acquire %v, role %s", vs.Check("web"), err, v.Role())
			}
		} else {
			if err != nil || vs.Check("web") != nil || v.Role() != replication.Primary {
				t.Fatalf("a good replica: acquire %v, check %v, role %s", err, vs.Check("web"), v.Role())
			}
			vs.Lease("web", false, time.Time{})
			start := time.Now()
			if err := vs.Release(ctx, "web"); err != nil || v.Role() != replication.Secondary {
				t.Fatalf("release: %v, role %s", err, v.Role())
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the release waited %v for a peer that is away", took)
			}
			if len(notes) == 0 || notes[0] != "web promoted" {
				t.Fatalf("the ticket's timeline got %v", notes)
			}
		}
		cancel()
		if err := vs.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
