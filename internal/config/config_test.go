package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/dnsfail/dnskey"
	"github.com/geobooth/geobooth/internal/alerts"
	"github.com/geobooth/geobooth/replication"

	"github.com/geobooth/geobooth/kit/testenv"
	"github.com/geobooth/geobooth/kit/tlsfiles"
)

const goodCluster = `name = "t"

[[members]]
name = "east"
role = "site"
address = "127.0.0.1:1"

[[members]]
name = "west"
role = "site"
address = "127.0.0.1:2"

[[members]]
name = "arbitrator"
role = "arbitrator"
address = "127.0.0.1:3"

[defaults]
timeout = "1s"
retries = 3

[tickets.web]
expire = "10s"
renewal_freq = "5s"
acquire_after = "2s"

[tickets.batch]
mode = "manual"
`

const goodMember = `local = "east"
cluster_file = "cluster.toml"
auth_key_file = "auth.key"

[api]
listen = "127.0.0.1:7801"
token_file = "api.token"
`

// dir writes the files into a temp folder with secrets at mode 0600.
func dir(t *testing.T, files map[string]string) string {
	t.Helper()
	d := t.TempDir()
	base := map[string]string{"cluster.toml": goodCluster, "member.toml": goodMember,
		"auth.key": "0123456789abcdef\n", "api.token": "token-token-token-token\n"}
	for k, v := range files {
		base[k] = v
	}
	for name, content := range base {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestLoadResolvesTicketsDefaultsAndPaths(t *testing.T) {
	d := dir(t, nil)
	f, err := Load(filepath.Join(d, "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Self != 0 || f.StateDir != filepath.Join(d, "run", "east") {
		t.Fatalf("self %d, state dir %s", f.Self, f.StateDir)
	}
	if string(f.Key) != "0123456789abcdef" || f.API.Token != "token-token-token-token" {
		t.Fatalf("secrets: key %q token %q", f.Key, f.API.Token)
	}
	if len(f.Tickets) != 2 || f.Tickets[0].Name != "batch" || f.Tickets[1].Name != "web" {
		t.Fatalf("tickets = %+v", f.Tickets)
	}
	web := f.Tickets[1]
	if web.Expire != 10*time.Second || web.RenewalFreq != 5*time.Second || web.AcquireAfter != 2*time.Second ||
		web.Timeout != time.Second || web.Retries != 3 || web.MaxClockDrift != 0.01 {
		t.Fatalf("web = %+v", web)
	}
	batch := f.Tickets[0]
	if batch.Expire != 600*time.Second || batch.Timeout != time.Second || batch.Mode.String() != "manual" {
		t.Fatalf("batch = %+v (Booth's expire default, timeout from defaults)", batch)
	}
	f2, err := Load(filepath.Join(d, "member.toml"), "/tmp/elsewhere")
	if err != nil || f2.StateDir != "/tmp/elsewhere" {
		t.Fatalf("-state-dir override: %v %v", f2, err)
	}
	if f.Digest() != f2.Digest() {
		t.Fatal("digest depends on local settings")
	}
}

func TestDigestChangesWithTheClusterSection(t *testing.T) {
	a, err := Load(filepath.Join(dir(t, nil), "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(filepath.Join(dir(t, map[string]string{"cluster.toml": strings.Replace(goodCluster, `expire = "10s"`, `expire = "11s"`, 1)}), "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() == b.Digest() {
		t.Fatal("different expire, same digest")
	}
}

// loadErr loads and returns the single expected error line containing want.
func loadErr(t *testing.T, files map[string]string, want ...string) string {
	t.Helper()
	_, err := Load(filepath.Join(dir(t, files), "member.toml"), "")
	if err == nil {
		t.Fatalf("loaded without error, want %q", want)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error of type %T: %v", err, err)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("error %q does not contain %q", msg, w)
		}
	}
	return msg
}

func TestConfigErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"retries below three", map[string]string{"cluster.toml": strings.Replace(goodCluster, "retries = 3", "retries = 2", 1)},
			[]string{"cluster.toml:20: defaults.retries: 2: must be at least 3"}},
		{"duplicate member", map[string]string{"cluster.toml": strings.Replace(goodCluster, `name = "west"`, `name = "east"`, 1)},
			[]string{"cluster.toml:9: members.1.name: duplicate member \"east\""}},
		{"integer duration", map[string]string{"cluster.toml": strings.Replace(goodCluster, `expire = "10s"`, `expire = 10`, 1)},
			[]string{"cluster.toml:23: tickets.web.expire", "quoted string with a unit"}},
		{"missing key file", map[string]string{"member.toml": strings.Replace(goodMember, "auth.key", "nope.key", 1)},
			[]string{"member.toml:3: auth_key_file:", "no such file"}},
		{"short key", map[string]string{"auth.key": "short"},
			[]string{"member.toml:3: auth_key_file:", "8 to 64"}},
		{"unknown key", map[string]string{"member.toml": "frobnicate = 1\n" + goodMember},
			[]string{"member.toml:1: frobnicate: unknown key"}},
		{"unknown local", map[string]string{"member.toml": strings.Replace(goodMember, `local = "east"`, `local = "north"`, 1)},
			[]string{"member.toml:1: local: \"north\" is not a member"}},
		{"bad role", map[string]string{"cluster.toml": strings.Replace(goodCluster, `role = "arbitrator"`, `role = "judge"`, 1)},
			[]string{"members.2.role", "want site or arbitrator"}},
		{"syntax", map[string]string{"member.toml": "local = \n"}, []string{"member.toml:1"}},
		{"timing relation", map[string]string{"cluster.toml": strings.Replace(goodCluster, `renewal_freq = "5s"`, `renewal_freq = "3s"`, 1)},
			[]string{"cluster.toml:19: defaults.timeout", "must be shorter than renewal_freq (3s) (for ticket web)"}},
		{"alert hook missing", map[string]string{"member.toml": goodMember + "\n[[alerts]]\nname = \"page\"\nprogram = \"nosuch-hook\"\n"},
			[]string{"alerts.0.program", "nosuch-hook: no such file"}},
		{"alert hook of unknown kind", map[string]string{"member.toml": goodMember + "\n[[alerts]]\nname = \"page\"\nurl = \"http://127.0.0.1:9/\"\nkinds = [\"renewed\"]\n"},
			[]string{"alerts.0.kinds", `"renewed": not an event kind`}},
		{"guard longer than acquire_after", map[string]string{"member.toml": goodMember + guardTwoSeconds},
			[]string{"member.toml:11: pacemaker.guard_time: 2s: ticket web", "raise its acquire_after to at least 2.025s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { loadErr(t, c.files, c.want...) })
	}
}

const guardTwoSeconds = `
[pacemaker]
driver = "none"
guard_time = "2s"
`

const goodVolume = `
[[volumes]]
name = "data"
ticket = "web"
size = "4MiB"
path = "data.img"
listen = "127.0.0.1:7901"
split_brain = "manual"
peers = [{ name = "west", address = "127.0.0.1:7902" }]
`

func TestVolumesAreResolvedAndChecked(t *testing.T) {
	d := dir(t, map[string]string{"member.toml": goodMember + goodVolume})
	f, err := Load(filepath.Join(d, "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	v := f.Volumes[0]
	if v.Path != filepath.Join(d, "run", "east", "data.img") || v.SplitBrain != "manual" || time.Duration(v.DrainTimeout) != 30*time.Second {
		t.Fatalf("volume not resolved: %+v", v)
	}
	// Issue 18: a relative path resolved into the configuration's folder,
	// which the unit makes read-only. It names a file of the state folder
	// now, the -state-dir override included.
	moved := t.TempDir()
	f, err = Load(filepath.Join(d, "member.toml"), moved)
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Volumes[0]; v.Path != filepath.Join(moved, "data.img") {
		t.Fatalf("with -state-dir %s the volume's file is %s", moved, v.Path)
	}
	// A file left where earlier versions put it is not silently replaced
	// by a new blank one.
	if err := os.WriteFile(filepath.Join(d, "data.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(d, "member.toml"), ""); err == nil || !strings.Contains(err.Error(), "beside the configuration, where earlier versions put it") {
		t.Fatalf("a volume file at the old place: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(d, "run", "east"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(d, "data.img"), filepath.Join(d, "run", "east", "data.img")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(d, "member.toml"), ""); err != nil {
		t.Fatalf("after the move into the state folder: %v", err)
	}
	cases := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown ticket", `ticket = "web"`, `ticket = "db"`, []string{"member.toml:11: volumes.0.ticket: \"db\": not a ticket"}},
		{"peer is self", `name = "west"`, `name = "east"`, []string{"volumes.0.peers.0.name: \"east\" is this member"}},
		{"peer is arbitrator", `name = "west"`, `name = "arbitrator"`, []string{"\"arbitrator\" is not a site"}},
		{"bad size", `size = "4MiB"`, `size = "4097"`, []string{"member.toml:12: volumes.0.size"}},
		{"bad policy", `split_brain = "manual"`, `split_brain = "coin"`, []string{"volumes.0.split_brain: \"coin\""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			loadErr(t, map[string]string{"member.toml": goodMember + strings.Replace(goodVolume, c.from, c.to, 1)}, c.want...)
		})
	}
	t.Run("arbitrator", func(t *testing.T) {
		m := strings.Replace(goodMember, `local = "east"`, `local = "arbitrator"`, 1)
		loadErr(t, map[string]string{"member.toml": m + goodVolume}, "volumes: only a site holds a replica")
	})
}

func TestSecretReadableByOthersIsRefused(t *testing.T) {
	d := dir(t, nil)
	if err := os.Chmod(filepath.Join(d, "auth.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(d, "member.toml"), "")
	if err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("err = %v", err)
	}
}

func TestEveryExampleConfigLoads(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*/*.toml")
	n := 0
	for _, p := range files {
		src, _ := os.ReadFile(p)
		if !strings.Contains(string(src), "\nlocal = ") && !strings.HasPrefix(string(src), "local = ") {
			continue // a shared cluster file, loaded through its members
		}
		n++
		t.Run(p, func(t *testing.T) {
			if strings.Contains(string(src), `driver = "crm_ticket"`) {
				testenv.RequireTool(t, "crm_ticket", "pacemaker-cli-utils")
			}
			// Secrets are made at run time; give the loader stand-ins
			// (examples/local keeps them in run/, examples/geo beside the
			// configs).
			d := t.TempDir()
			copyTree(t, filepath.Dir(p), d)
			os.MkdirAll(filepath.Join(d, "run"), 0o700)
			for _, sub := range []string{"run", "."} {
				for _, s := range []string{"auth.key", "api.token"} {
					os.WriteFile(filepath.Join(d, sub, s), []byte("0123456789abcdef0123"), 0o600)
				}
				os.WriteFile(filepath.Join(d, sub, "serf.keyring"), []byte(`["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]`), 0o600)
			}
			key, err := dnskey.New("example.test.")
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, "run", "example.test.key"), []byte(key), 0o600)
			if strings.Contains(string(src), "\n[tls]") {
				local := strings.TrimSuffix(filepath.Base(p), ".toml")
				ca, err := tlsfiles.NewCA("example", time.Now(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				m, err := tlsfiles.NewMember(ca, local, nil, time.Now(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(d, "ca.pem"), ca.Cert, 0o644)
				if err := m.Write(filepath.Join(d, local+".pem"), filepath.Join(d, local+"-key.pem")); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Load(filepath.Join(d, filepath.Base(p)), ""); err != nil {
				t.Error(err)
			}
		})
	}
	if n < 3 {
		t.Fatalf("found %d member configs under examples/", n)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o600)
	}
}

// Issue 18: the metadata of a volume on a block device went beside it, in
// /dev. It goes to the state folder unless meta_dir says otherwise; a
// file's stays beside it.
func TestBlockDeviceMetadataGoesToTheStateFolder(t *testing.T) {
	dev := testenv.LoopDevice(t, 4<<20)
	vol := strings.Replace(goodVolume, `path = "data.img"`, fmt.Sprintf("path = %q", dev), 1)
	d := dir(t, map[string]string{"member.toml": goodMember + vol})
	f, err := Load(filepath.Join(d, "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(f.StateDir, "volumes", "data"); f.Volumes[0].MetaDir != want {
		t.Fatalf("meta_dir of a block device = %q, want %q", f.Volumes[0].MetaDir, want)
	}
	d = dir(t, map[string]string{"member.toml": goodMember + goodVolume})
	if f, err = Load(filepath.Join(d, "member.toml"), ""); err != nil || f.Volumes[0].MetaDir != "" {
		t.Fatalf("a file's metadata moved: %q %v", f.Volumes[0].MetaDir, err)
	}
}

// TestEverySectionStartsFromItsDefaults: a key left out of the file takes
// the value its package's Default…() gives, for a table and for each
// entry of an array of tables alike (the volumes' csums and resync_rate
// used to come out zero from a file: checksummed resyncs off, rate
// uncapped, although documented on and 100 MiB/s).
func TestEverySectionStartsFromItsDefaults(t *testing.T) {
	alert := "\n[[alerts]]\nname = \"hook\"\nurl = \"http://127.0.0.1:1/\"\n"
	d := dir(t, map[string]string{"member.toml": goodMember + goodVolume + alert})
	f, err := Load(filepath.Join(d, "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	v, want := f.Volumes[0], replication.DefaultVolume()
	if v.Csums != want.Csums || v.ResyncRate != want.ResyncRate || v.SendBuffer != want.SendBuffer || v.Protocol != want.Protocol || v.NewReplicas != want.NewReplicas {
		t.Fatalf("volume from the file %+v, defaults %+v", v, want)
	}
	if a, want := f.Alerts[0], alerts.DefaultConfig(); a.Timeout != want.Timeout || a.Retries != want.Retries {
		t.Fatalf("alert from the file %+v, defaults %+v", a, want)
	}
	if def := DefaultFile(); f.MaxElections != def.MaxElections || f.Cluster.MaxTimeSkew != def.Cluster.MaxTimeSkew {
		t.Fatalf("max_elections %d, max_time_skew %v: want the defaults", f.MaxElections, f.Cluster.MaxTimeSkew)
	}
	off := strings.Replace(goodVolume, `name = "data"`, "name = \"data\"\ncsums = false", 1)
	f, err = Load(filepath.Join(dir(t, map[string]string{"member.toml": goodMember + off}), "member.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Volumes[0].Csums {
		t.Fatal("csums = false in the file came out true")
	}
}
