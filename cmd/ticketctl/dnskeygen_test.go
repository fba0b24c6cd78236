package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Issue 20: dns keygen writes a DNSSEC key file (mode 0600) whose first
// record is the zone's DNSKEY, refuses to overwrite one, and says which
// key it made.
func TestDNSKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "example.test.key")
	var out strings.Builder
	if err := run([]string{"dns", "keygen", "example.test", file}, &out); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	b, _ := os.ReadFile(file)
	var key *dns.DNSKEY
	for _, line := range strings.Split(string(b), "\n") {
		if rr, err := dns.NewRR(line); err == nil && rr != nil {
			key, _ = rr.(*dns.DNSKEY)
			break
		}
	}
	if key == nil || key.Hdr.Name != "example.test." || key.Flags != 257 || key.Algorithm != dns.ECDSAP256SHA256 {
		t.Fatalf("key file:\n%s", b)
	}
	if !strings.Contains(out.String(), "key tag "+strconv.Itoa(int(key.KeyTag()))) {
		t.Errorf("output %q names another key than %d", out.String(), key.KeyTag())
	}
	var ee *exitError
	if err := run([]string{"dns", "keygen", "example.test", file}, &out); !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("overwrote a key file: %v", err)
	}
}
