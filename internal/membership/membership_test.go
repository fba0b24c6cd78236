package membership

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

func keyring(t *testing.T, keys ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serf.keyring")
	b, _ := json.Marshal(keys)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var key1 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
var key2 = base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))

type running struct {
	m      *Membership
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, name, bind string, join []string, ring string) *running {
	t.Helper()
	cfg := Default()
	cfg.Profile, cfg.KeyringFile = "local", ring
	cfg.RejoinInterval = confkit.Duration(200 * time.Millisecond)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(cfg, name, bind, join, map[string]string{"role": "site", "api": "127.0.0.1:1"}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statusOf(m *Membership, name string) string {
	for _, mb := range m.Members() {
		if mb.Name == name {
			return mb.Status
		}
	}
	return "absent"
}

func TestMembersJoinLeaveFailAndGossipEvents(t *testing.T) {
	ring := keyring(t, key1)
	a, b, c := freeAddr(t), freeAddr(t), freeAddr(t)
	all := []string{a, b, c}
	east := start(t, "east", a, all, ring)
	west := start(t, "west", b, all, ring)
	arb := start(t, "arbitrator", c, all, ring)
	eventually(t, 10*time.Second, func() error {
		for _, n := range []string{"east", "west", "arbitrator"} {
			if s := statusOf(east.m, n); s != "alive" {
				return fmt.Errorf("east sees %s %s", n, s)
			}
		}
		return nil
	})
	for _, mb := range west.m.Members() {
		if mb.Tags["role"] != "site" {
			t.Fatalf("tags of %s = %v", mb.Name, mb.Tags)
		}
	}

	// Tags propagate.
	if err := arb.m.SetTags(map[string]string{"role": "arbitrator"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		for _, mb := range east.m.Members() {
			if mb.Name == "arbitrator" && mb.Tags["role"] == "arbitrator" {
				return nil
			}
		}
		return fmt.Errorf("east has not seen the new tags")
	})

	// User events reach the others with the sender's name.
	var mu sync.Mutex
	got := map[string]string{}
	west.m.Subscribe("health", func(from string, p []byte) {
		mu.Lock()
		got[from] = string(p)
		mu.Unlock()
	})
	if err := east.m.Broadcast("health", []byte("east says up")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if got["east"] != "east says up" {
			return fmt.Errorf("west got %v", got)
		}
		return nil
	})

	// A member that leaves is "left"; one that dies without leaving is
	// "failed".
	arb.stop()
	eventually(t, 10*time.Second, func() error {
		if s := statusOf(east.m, "arbitrator"); s != "left" {
			return fmt.Errorf("arbitrator is %s", s)
		}
		return nil
	})
	west.m.serf.Shutdown()
	eventually(t, 20*time.Second, func() error {
		if s := statusOf(east.m, "west"); s != "failed" {
			return fmt.Errorf("west is %s", s)
		}
		return nil
	})
}

func TestMemberWithAnotherKeyCannotJoin(t *testing.T) {
	a, b := freeAddr(t), freeAddr(t)
	east := start(t, "east", a, nil, keyring(t, key1))
	intruder := start(t, "intruder", b, []string{a}, keyring(t, key2))
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if s := statusOf(east.m, "intruder"); s != "absent" {
			t.Fatalf("a member with another key joined: %s", s)
		}
		if n, err := intruder.m.serf.Join([]string{a}, true); n > 0 || err == nil {
			t.Fatalf("join with another key succeeded (%d)", n)
		}
	}
}

func TestKeyringErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	bad := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	cases := map[string]struct{ path, want string }{
		"missing":       {filepath.Join(dir, "nope"), "no such file"},
		"not json":      {bad("a", "hello"), "JSON list of base64 keys"},
		"empty":         {bad("b", "[]"), "no keys"},
		"bad base64":    {bad("c", `["***"]`), "key 0"},
		"wrong length":  {bad("d", `["`+base64.StdEncoding.EncodeToString([]byte("short"))+`"]`), "5 bytes, want 16, 24 or 32"},
		"second is bad": {bad("e", `["`+key1+`","AAAA"]`), "key 1 has 3 bytes"},
		// Issue 17, F11: a keyring others could read passed.
		"readable by others": {func() string {
			p := bad("f", `["`+key1+`"]`)
			os.Chmod(p, 0o644)
			return p
		}(), "readable by others (mode -rw-r--r--): chmod 600 it"},
	}
	for name, c := range cases {
		_, err := LoadKeyring(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	cfg := Default()
	if errs := cfg.Validate(); len(errs) != 1 || errs[0].Key != "keyring_file" {
		t.Fatalf("a config without keyring: %v", errs)
	}
}

func FuzzOpenEnvelope(f *testing.F) {
	env, _ := sealEnvelope("east", []byte("payload"))
	f.Add(env)
	f.Add([]byte{})
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		from, payload, err := openEnvelope(b)
		if err != nil {
			return
		}
		again, err := sealEnvelope(from, payload)
		if err != nil || string(again) != string(b) {
			t.Fatalf("envelope does not round-trip: %q → %q %q → %q (%v)", b, from, payload, again, err)
		}
	})
}

// Issue 17, F11: 20,000 garbage datagrams made 6,000 ERROR lines. Lines of
// one kind are limited per window, and the next one after the window says
// how many were left out.
func TestNetworkNoiseIsLoggedBoundedly(t *testing.T) {
	var out strings.Builder
	now := time.Unix(1000, 0)
	w := newLevelWriter(slog.New(slog.NewTextHandler(&out, nil)))
	w.now = func() time.Time { return now }
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(w, "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=198.51.100.%d:7946\n", i%250)
	}
	fmt.Fprintf(w, "[WARN] memberlist: Refuting a suspect message (from: east)\n")
	if n := strings.Count(out.String(), "Decrypt packet failed"); n != logBurst {
		t.Fatalf("%d lines for 20,000 bad datagrams in one window, want %d", n, logBurst)
	}
	if !strings.Contains(out.String(), "Refuting a suspect message") {
		t.Fatal("a line of another kind was left out")
	}
	now = now.Add(logWindow)
	fmt.Fprintf(w, "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=198.51.100.1:7946\n")
	if !strings.Contains(out.String(), fmt.Sprintf("similar_lines_left_out=%d", 20000-logBurst)) {
		t.Fatalf("the count of left-out lines is missing:\n%s", out.String()[max(0, out.Len()-400):])
	}
}
