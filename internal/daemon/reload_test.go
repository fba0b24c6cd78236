package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/internal/config"
)

const reloadBase = `local = "east"
auth_key_file = "auth.key"
state_dir = "state"
[api]
listen = "127.0.0.1:17801"
token_file = "api.token"
[pacemaker]
driver = "none"
[log]
level = "info"
[cluster]
name = "test"
[[cluster.members]]
name = "east"
role = "site"
address = "127.0.0.1:17901"
[[cluster.members]]
name = "west"
role = "site"
address = "127.0.0.1:17902"
[[cluster.members]]
name = "arbitrator"
role = "arbitrator"
address = "127.0.0.1:17903"
[cluster.tickets.web]
expire = "10s"
renewal_freq = "4s"
timeout = "500ms"
retries = 3
stop_timeout = "1s"
`

// loadAt writes the configuration (and its key files) into dir and loads
// it.
func loadAt(t *testing.T, dir, text string) *config.File {
	t.Helper()
	for f, v := range map[string]string{"auth.key": "0123456789abcdef0123456789abcdef", "east.toml": text} {
		if _, err := os.Stat(filepath.Join(dir, f)); f == "auth.key" && err == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Load(filepath.Join(dir, "east.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func writeToken(t *testing.T, dir, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "api.token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A reload applies the tokens and the log level; what needs a restart is
// named and nothing is applied.
func TestReloadAppliesTokensAndLevelAndNamesRestarts(t *testing.T) {
	dir := t.TempDir()
	writeToken(t, dir, "first-token-0123456789abcdef")
	d, err := New(loadAt(t, dir, reloadBase), slog.New(slog.DiscardHandler), Options{LogLevel: new(slog.LevelVar)})
	if err != nil {
		t.Fatal(err)
	}

	writeToken(t, dir, "second-token-0123456789abcdef")
	if err := d.Reload(loadAt(t, dir, strings.Replace(reloadBase, `level = "info"`, `level = "debug"`, 1))); err != nil {
		t.Fatal(err)
	}
	if got := *d.tokens.Load(); got[0] != "second-token-0123456789abcdef" {
		t.Fatalf("tokens after the reload: %q", got)
	}
	if d.LogLevel.Level() != slog.LevelDebug {
		t.Fatalf("log level after the reload: %v", d.LogLevel.Level())
	}

	for change, want := range map[string][2]string{
		"members":        {`address = "127.0.0.1:17902"`, `address = "127.0.0.1:17912"`},
		"ticket timings": {`expire = "10s"`, `expire = "20s"`},
		"api.listen":     {`listen = "127.0.0.1:17801"`, `listen = "127.0.0.1:17811"`},
		"state_dir":      {`state_dir = "state"`, `state_dir = "elsewhere"`},
	} {
		writeToken(t, dir, "third-token-0123456789abcdef")
		err := d.Reload(loadAt(t, dir, strings.Replace(reloadBase, want[0], want[1], 1)))
		if err == nil || !strings.Contains(err.Error(), "needs a restart") {
			t.Fatalf("%s: %v, want a refusal naming the restart", change, err)
		}
		t.Logf("%s: %v", change, err)
		if got := *d.tokens.Load(); got[0] != "second-token-0123456789abcdef" {
			t.Fatalf("%s: a refused reload applied the token %q", change, got[0])
		}
	}
}
