package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// geoboothd refuses a broken configuration before starting anything, with
// the file, line and key.
func TestBrokenConfigurationsExitBeforeStarting(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
	})
	east := c.Member("east")
	orig, _ := os.ReadFile(east.Config)
	clusterFile := filepath.Join(c.Dir, "cluster.toml")
	origCluster, _ := os.ReadFile(clusterFile)
	cases := []struct {
		name     string
		member   string
		cluster  string
		want     []string
		keyPerms os.FileMode
	}{
		{name: "missing key file", member: strings.Replace(string(orig), `auth_key_file = "auth.key"`, `auth_key_file = "missing.key"`, 1),
			want: []string{"east.toml:3: auth_key_file:", "no such file"}},
		{name: "unreadable key file", keyPerms: 0o000, want: []string{"auth_key_file", "permission denied"}},
		{name: "duplicate member", cluster: strings.Replace(string(origCluster), `name = "west"`, `name = "east"`, 1),
			want: []string{"cluster.toml:", "members.1.name: duplicate member \"east\""}},
		{name: "retries = 2", cluster: strings.Replace(string(origCluster), "retries = 3", "retries = 2", 1),
			want: []string{"cluster.toml:", "defaults.retries: 2: must be at least 3"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			defer os.WriteFile(east.Config, orig, 0o600)
			defer os.WriteFile(clusterFile, origCluster, 0o600)
			defer os.Chmod(filepath.Join(c.Dir, "auth.key"), 0o600)
			if tt.member != "" {
				os.WriteFile(east.Config, []byte(tt.member), 0o600)
			}
			if tt.cluster != "" {
				os.WriteFile(clusterFile, []byte(tt.cluster), 0o600)
			}
			if tt.keyPerms != 0 || tt.name == "unreadable key file" {
				if os.Geteuid() == 0 {
					t.Skip("root reads any file")
				}
				os.Chmod(filepath.Join(c.Dir, "auth.key"), tt.keyPerms)
			}
			out, errOut, code := runCmd(filepath.Join(c.Bin, "geoboothd"), "-config", east.Config)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stdout %q stderr %q", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if strings.Contains(errOut, "started") {
				t.Errorf("something started: %q", errOut)
			}
		})
	}
}

// A member whose cluster section differs is refused, with a log line that
// says so, and shows up in peers.
func TestMemberWithDifferentClusterConfigIsRefused(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
	})
	west := c.Member("west")
	// West gets its own copy of the cluster file, with another expire.
	src, _ := os.ReadFile(filepath.Join(c.Dir, "cluster.toml"))
	other := strings.Replace(string(src), `expire = "10s"`, `expire = "12s"`, 1)
	os.WriteFile(filepath.Join(c.Dir, "cluster-west.toml"), []byte(other), 0o600)
	cfg, _ := os.ReadFile(west.Config)
	os.WriteFile(west.Config, []byte(strings.Replace(string(cfg), `"cluster.toml"`, `"cluster-west.toml"`, 1)), 0o600)
	c.StartAll()
	east := c.Member("east")
	// West asks for a grant: its datagrams reach east, which refuses them.
	west.Ctl("grant", "--no-wait", "web")
	tc.Eventually(t, 20*time.Second, func() error {
		log, _ := os.ReadFile(east.LogPath)
		if !strings.Contains(string(log), "its cluster configuration differs from ours") {
			return fmt.Errorf("no log line about west's configuration")
		}
		out, _, _ := east.Ctl("peers", "--json")
		if !strings.Contains(out, `"config_mismatch": true`) {
			return fmt.Errorf("peers does not show the mismatch: %s", out)
		}
		return nil
	})
}

// The before-acquire handler runs with Booth's environment; when it fails
// the site does not acquire; when it hangs it is killed at its timeout.
func TestBeforeAcquireHandlerEnvironmentFailureAndTimeout(t *testing.T) {
	dir := t.TempDir()
	envOut := filepath.Join(dir, "env")
	mode := filepath.Join(dir, "mode")
	script := filepath.Join(dir, "handler")
	os.WriteFile(mode, []byte("ok"), 0o644)
	os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
env | grep -E '^(BOOTH|GEOBOOTH)_' | sort > %s.$$
mv %s.$$ %s
case "$(cat %s)" in
  fail) exit 1 ;;
  hang) sleep 600 ;;
esac
exit 0
`, envOut, envOut, envOut, mode)), 0o755)
	c := threeMembers(t, fmt.Sprintf(`
[tickets.web]
expire = "4s"
renewal_freq = "2s"
timeout = "300ms"
retries = 3
before_acquire_handler = %q
handler_timeout = "1s"
`, script))
	east, west := c.Member("east"), c.Member("west")
	if _, errOut, code := east.Ctl("grant", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	env, _ := os.ReadFile(envOut)
	for _, want := range []string{"BOOTH_TICKET=web", "BOOTH_LOCAL=east", "BOOTH_CONF_PATH=" + east.Config,
		"GEOBOOTH_TICKET=web", "GEOBOOTH_LOCAL=east", "BOOTH_TICKET_EXPIRES=", "GEOBOOTH_HANDLER_KIND="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("handler environment lacks %q:\n%s", want, env)
		}
	}
	// A failing handler at renewal releases the ticket; west's handler
	// fails too, so nobody holds it.
	os.WriteFile(mode, []byte("fail"), 0o644)
	waitOwner(t, c, "web", "", 10*time.Second)
	if tk, _ := west.Ticket("web"); tk.HeldLocally {
		t.Fatal("west acquired although its handler fails")
	}
	// A hanging handler is killed after handler_timeout and counts as failed.
	os.WriteFile(mode, []byte("hang"), 0o644)
	tc.Eventually(t, 20*time.Second, func() error {
		m, _ := west.Get("/metrics")
		if !strings.Contains(m, `geobooth_ticket_handler_runs_total{result="timeout",ticket="web"}`) {
			return fmt.Errorf("no timed-out handler run counted")
		}
		return nil
	})
	// Once the handler passes again, the (still granted) ticket is acquired
	// by one of the sites.
	os.WriteFile(mode, []byte("ok"), 0o644)
	tc.Eventually(t, 20*time.Second, func() error {
		tk, err := c.Member("arbitrator").Ticket("web")
		if err != nil || tk.Owner == "" {
			return fmt.Errorf("no owner yet: %+v %v", tk, err)
		}
		return nil
	})
}
