package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// geoboothd -check -booth-config validates what the Booth mode would
// load: booth.conf, this member's place in it, the authfile, the zones.
func TestCheckOfTheBoothMode(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "authkey")
	if err := os.WriteFile(key, []byte("a booth key of some length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../examples/booth/booth.conf")
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("/etc/booth/authkey"), []byte(key), 1)
	conf := filepath.Join(dir, "booth.conf")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	zones, err := filepath.Abs("../../examples/booth/dns.toml")
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "api.token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.token")
	if err := os.WriteFile(open, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repKey := filepath.Join(dir, "replication.key")
	if err := os.WriteFile(repKey, []byte("a replication key of the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vols := filepath.Join(dir, "volumes.toml")
	if err := os.WriteFile(vols, []byte(`auth_key_file = "`+repKey+`"
[[volumes]]
name = "data"
ticket = "web"
size = "1MiB"
path = "data.img"
listen = "203.0.113.11:7788"
peers = [{ name = "203.0.113.12", address = "203.0.113.12:7788" }]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name string
		o    boothOptions
		want int
	}{
		{"the arbitrator", boothOptions{config: conf, address: "203.0.113.13"}, 0},
		{"with DNS", boothOptions{config: conf, address: "203.0.113.13", dns: "127.0.0.1:5300", zones: zones, stateDir: dir}, 0},
		{"a site", boothOptions{config: conf, address: "203.0.113.11"}, 0},
		{"a site taking ticketctl's commands", boothOptions{config: conf, address: "203.0.113.11", status: "127.0.0.1:7809", token: token}, 0},
		{"a token without the listener", boothOptions{config: conf, address: "203.0.113.11", token: token}, 2},
		{"a token others can read", boothOptions{config: conf, address: "203.0.113.11", status: "127.0.0.1:7809", token: open}, 2},
		{"a token at the arbitrator", boothOptions{config: conf, address: "203.0.113.13", status: "127.0.0.1:7809", token: token}, 2},
		{"a site with volumes", boothOptions{config: conf, address: "203.0.113.11", volumes: vols, stateDir: dir}, 0},
		{"volumes without a state folder", boothOptions{config: conf, address: "203.0.113.11", volumes: vols}, 2},
		{"volumes at the arbitrator", boothOptions{config: conf, address: "203.0.113.13", volumes: vols, stateDir: dir}, 2},
		{"volumes at the other site (itself its peer)", boothOptions{config: conf, address: "203.0.113.12", volumes: vols, stateDir: dir}, 2},
		{"not a member", boothOptions{config: conf, address: "203.0.113.99"}, 2},
		{"DNS without a state folder", boothOptions{config: conf, address: "203.0.113.13", dns: "127.0.0.1:5300", zones: zones}, 2},
		{"the example's authfile is not here", boothOptions{config: "../../examples/booth/booth.conf", address: "203.0.113.13"}, 2},
	} {
		if got := runBooth(context.Background(), c.o, true, log); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// -booth-alerts: the hooks' file is read as a member file's [[alerts]]
// (defaults, checks, unknown keys), with file:line in its errors.
func TestBoothAlertsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[[alerts]]\nname = \"hook\"\nurl = \"http://127.0.0.1:9/\"\n")
	cfgs, err := loadAlerts(good)
	if err != nil || len(cfgs) != 1 || cfgs[0].Retries != 5 || cfgs[0].Timeout.D() != 10*time.Second {
		t.Fatalf("good file: %+v %v (want the defaults filled)", cfgs, err)
	}
	bad := write("bad.toml", "[[alerts]]\nname = \"hook\"\nurl = \"ftp://x\"\ncolour = \"red\"\n")
	_, err = loadAlerts(bad)
	for _, want := range []string{bad + ":3: alerts.0.url", bad + ":4: alerts.colour: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad file: %v, want %q", err, want)
		}
	}
	if _, err := loadAlerts(write("empty.toml", "")); err == nil {
		t.Error("a file without hooks was taken")
	}
}
