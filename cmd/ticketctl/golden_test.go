package main

import (
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// clearEnv unsets the variables that stand for global flags, so that the
// help shows the same defaults everywhere.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, e := range environment {
		t.Setenv(e.name, "")
	}
}

// output runs ticketctl and returns what it prints on stdout (help
// included) and the exit status main would give.
func output(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out strings.Builder
	err := run(args, &out)
	var h *helpText
	var ee *exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &h):
		return h.text, 0
	case errors.As(err, &ee):
		return ee.msg, ee.code
	}
	return err.Error(), 1
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/ticketctl -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (-update rewrites it):\n--- got\n%s", name, p, got)
	}
}

// Issue 19: the help, a command's help, the completion script and the
// man page come from the command table; their text is reviewed here.
func TestGoldenHelpAndCompletion(t *testing.T) {
	clearEnv(t)
	for name, args := range map[string][]string{
		"help":            {"-h"},
		"help-grant":      {"help", "grant"},
		"grant-h":         {"grant", "-h"},
		"tls-h":           {"tls", "-h"},
		"completion-bash": {"completion", "bash"},
		"completion-fish": {"completion", "fish"},
	} {
		got, code := output(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, got)
		}
		golden(t, name, got)
	}
	for _, args := range [][]string{{"--help"}, {"help"}} {
		if got, _ := output(t, args...); got != usage() {
			t.Errorf("%v is not the usage", args)
		}
	}
	if a, _ := output(t, "help", "grant"); a != func() string { s, _ := output(t, "grant", "-h"); return s }() {
		t.Error("help grant and grant -h differ")
	}
	if got, code := output(t, "--version"); code != 0 || !strings.HasPrefix(got, "ticketctl ") {
		t.Errorf("--version: %d %q", code, got)
	}
	if got, code := output(t, "help", "nosuch"); code != 2 || !strings.Contains(got, "unknown command") {
		t.Errorf("help nosuch: %d %q", code, got)
	}
	if got, code := output(t, "completion", "tcsh"); code != 2 || !strings.Contains(got, "unknown shell") {
		t.Errorf("completion tcsh: %d %q", code, got)
	}
}

// Every command of the table has a help that names its own flags, and
// every flag a command accepts is in the completion.
func TestEveryCommandHasHelpFromItsFlags(t *testing.T) {
	clearEnv(t)
	bash, _ := output(t, "completion", "bash")
	for i := range table {
		c := &table[i]
		h := commandHelp(c)
		flagsOf(c).VisitAll(func(f *flag.Flag) {
			if !strings.Contains(h, "  -"+f.Name) {
				t.Errorf("%s: help does not list -%s:\n%s", c.name, f.Name, h)
			}
			if !strings.Contains(bash, dashed(f)) {
				t.Errorf("%s: completion does not offer %s", c.name, dashed(f))
			}
		})
	}
}

// The bash completion completes commands, a command's flags and
// subcommands, when bash runs it.
func TestBashCompletionCompletes(t *testing.T) {
	clearEnv(t)
	bashPath := testenv.RequireTool(t, "bash", "bash")
	script, _ := output(t, "completion", "bash")
	for line, want := range map[string]string{
		"ticketctl gr":           "grant",
		"ticketctl grant --no":   "--no-wait",
		"ticketctl tls c":        "ca cert",
		"ticketctl -config x re": "revoke repl",
	} {
		words := strings.Fields(line)
		sh := script + "\nCOMP_WORDS=(" + line + "); COMP_CWORD=" + string(rune('0'+len(words)-1)) + "; _ticketctl; echo \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bashPath, "-c", sh).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
}

// The man page is valid roff (groff reports no warning) and documents
// every command, the environment and the exit statuses.
func TestManPage(t *testing.T) {
	clearEnv(t)
	page, code := output(t, "man")
	if code != 0 {
		t.Fatal(page)
	}
	for _, c := range table {
		if !strings.Contains(page, ".SS "+roff(c.name)) {
			t.Errorf("no section for %s", c.name)
		}
	}
	for _, want := range []string{".SH ENVIRONMENT", "GEOBOOTH_CONFIG", ".SH EXIT STATUS", ".SH FILES"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q", want)
		}
	}
	groff := testenv.RequireTool(t, "groff", "groff-base")
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
}

// GEOBOOTH_ADDR and GEOBOOTH_TOKEN_FILE stand for -addr and -token-file;
// GEOBOOTH_CONFIG for -config; without any, the one member configuration
// in the packaged folder is used, and several are refused by name.
func TestEnvironmentAndDefaultConfig(t *testing.T) {
	clearEnv(t)
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"name":"web","owner":"east","term":3,"mode":"auto","state":"granted","lease_remaining_s":7.5,"attrs":{}}]`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tok, []byte("env-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GEOBOOTH_ADDR", srv.URL)
	t.Setenv("GEOBOOTH_TOKEN_FILE", tok)
	if out, code := output(t, "list"); code != 0 || !strings.Contains(out, "web") || gotAuth != "Bearer env-token" {
		t.Fatalf("with GEOBOOTH_ADDR: %d %q, auth %q", code, out, gotAuth)
	}

	member := func(path, token string) {
		t.Helper()
		cfg := "local = \"east\"\n[api]\nlisten = \"" + strings.TrimPrefix(srv.URL, "http://") + "\"\ntoken_file = \"" + token + "\"\n"
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clearEnv(t)
	cfg := filepath.Join(dir, "east.toml")
	member(cfg, "api.token")
	t.Setenv("GEOBOOTH_CONFIG", cfg)
	gotAuth = ""
	if out, code := output(t, "list"); code != 0 || gotAuth != "Bearer env-token" {
		t.Fatalf("with GEOBOOTH_CONFIG: %d %q, auth %q", code, out, gotAuth)
	}

	clearEnv(t)
	etc := t.TempDir()
	old := defaultConfigDir
	defaultConfigDir = etc
	t.Cleanup(func() { defaultConfigDir = old })
	if out, code := output(t, "list"); code != 2 || !strings.Contains(out, "no member configuration in "+etc) {
		t.Fatalf("no configuration anywhere: %d %q", code, out)
	}
	if err := os.WriteFile(filepath.Join(etc, "cluster.toml"), []byte("name = \"c\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	member(filepath.Join(etc, "east.toml"), tok)
	gotAuth = ""
	if out, code := output(t, "list"); code != 0 || gotAuth != "Bearer env-token" {
		t.Fatalf("the one member configuration in %s: %d %q", etc, code, out)
	}
	member(filepath.Join(etc, "west.toml"), tok)
	if out, code := output(t, "list"); code != 2 || !strings.Contains(out, "several member configurations") {
		t.Fatalf("two member configurations: %d %q", code, out)
	}
}
