package dnsfail

import (
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
