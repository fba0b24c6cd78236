package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// The release a rolling upgrade starts from: its tag, and the commit the
// test builds (a checkout need not carry tags, only the history). Move
// both to the newest release when one is tagged (docs/operations.md,
// "Releasing").
const (
	previousRelease = "v0.1.0"
	previousCommit  = "e225f1bf9855867540f4194591c14aa38e3d2d4e"
)

// buildRelease builds the previous release's geoboothd from the history
// and returns its folder.
func buildRelease(t *testing.T) string {
	t.Helper()
	top, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", top, "cat-file", "-e", previousCommit+"^{commit}").Run(); err != nil {
		msg := fmt.Sprintf("release %s (commit %s) is not in this checkout: the upgrade test builds it from the history (clone in full, or git fetch --unshallow)", previousRelease, previousCommit)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	src, bin := t.TempDir(), t.TempDir()
	archive := exec.Command("git", "-C", top, "archive", "--format=tar", previousCommit)
	extract := exec.Command("tar", "-x", "-C", src)
	var errb bytes.Buffer
	archive.Stderr, extract.Stderr = &errb, &errb
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	extract.Stdin = pipe
	if err := extract.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", previousCommit, err, errb.String())
	}
	if err := extract.Wait(); err != nil {
		t.Fatalf("tar: %v\n%s", err, errb.String())
	}
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator),
		"-ldflags", "-X github.com/geobooth/geobooth/kit/buildinfo.Version="+previousRelease, "./cmd/geoboothd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", previousRelease, err, out)
	}
	return bin
}

// Issue 19: a cluster running the previous release is upgraded to this
// tree one member at a time (arbitrator, west, then east, which holds
// web), each stopped as systemd stops it (SIGTERM) and started on the new
// binary with its state folder. Throughout, no member but east ever
// holds web, no member's DNS names any other site, and at every moment
// some member's DNS answers east; peers shows each member's version as it
// changes.
func TestRollingUpgradeFromThePreviousRelease(t *testing.T) {
	slow(t)
	old := buildRelease(t)
	c, ports := dnsMembers(t, func(string) string { return "dns.toml" })
	copyExampleZones(t, c.Dir)
	for _, m := range c.Members {
		m.Bin = old
	}
	c.StartAll()
	east, arb := c.Member("east"), c.Member("arbitrator")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	tc.Eventually(t, 20*time.Second, func() error {
		if tk, err := east.Ticket("web"); err != nil || !tk.HeldLocally {
			return fmt.Errorf("east does not hold web: %+v %v", tk, err)
		}
		return nil
	})

	// The watch: every 100 ms, each member's ticket and DNS answer.
	var (
		mu       sync.Mutex
		bad      []string
		silent   time.Duration // longest time no member answered east
		since    time.Time     // when the current silence began (zero: none)
		polls    int
		answered = map[string]int{}
	)
	stop := every(100*time.Millisecond, func() {
		now, someone := time.Now(), false
		for _, m := range c.Members {
			if tk, err := m.Ticket("web"); err == nil && tk.HeldLocally && m.Name != "east" {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s holds web (term %d)", m.Name, tk.Term))
				mu.Unlock()
			}
			a, err := wwwA(fmt.Sprintf("127.0.0.1:%d", ports[m.Name]), 300*time.Millisecond)
			switch {
			case err != nil || a == "": // restarting, or no owner known yet
			case a == "127.0.0.11":
				someone = true
				mu.Lock()
				answered[m.Name]++
				mu.Unlock()
			default:
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s's DNS answers %s", m.Name, a))
				mu.Unlock()
			}
		}
		mu.Lock()
		polls++
		switch {
		case someone && !since.IsZero():
			silent, since = max(silent, now.Sub(since)), time.Time{}
		case !someone && since.IsZero():
			since = now
		}
		mu.Unlock()
	})
	defer stop()

	peers := func() string {
		out, errOut, code := east.Ctl("peers")
		if code != 0 {
			return "peers: " + errOut
		}
		return out
	}
	row := func(out, name string) string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				return line
			}
		}
		return ""
	}
	// renewed waits until a renewal of web reached every member: each
	// shows a lease end other than the one it showed first.
	renewed := func(why string) {
		t.Helper()
		first := map[string]time.Time{}
		tc.Eventually(t, 20*time.Second, func() error {
			for _, m := range c.Members {
				tk, err := m.Ticket("web")
				if err != nil || tk.Expires == nil {
					return fmt.Errorf("%s: %s shows no lease: %+v %v", why, m.Name, tk, err)
				}
				if f, ok := first[m.Name]; !ok {
					first[m.Name] = *tk.Expires
					return fmt.Errorf("%s: %s has not seen a renewal yet", why, m.Name)
				} else if tk.Expires.Equal(f) {
					return fmt.Errorf("%s: %s has not seen a renewal yet", why, m.Name)
				}
			}
			return nil
		})
	}
	renewed("on the previous release")
	for _, name := range []string{"arbitrator", "west", "east"} {
		m := c.Member(name)
		m.Stop()
		m.Bin = ""
		m.Start()
		m.WaitUp(20 * time.Second)
		tc.Eventually(t, 30*time.Second, func() error {
			out := peers()
			if r := row(out, name); r == "" || strings.Contains(r, previousRelease) {
				return fmt.Errorf("%s after its upgrade:\n%s", name, out)
			}
			return nil
		})
		tc.Eventually(t, 20*time.Second, func() error {
			if tk, err := east.Ticket("web"); err != nil || !tk.HeldLocally {
				return fmt.Errorf("after %s's upgrade east does not hold web: %+v %v", name, tk, err)
			}
			return nil
		})
		renewed("after " + name + "'s upgrade")
		t.Logf("%s upgraded:\n%s", name, peers())
	}
	stop()

	mu.Lock()
	defer mu.Unlock()
	if !since.IsZero() {
		silent = max(silent, time.Since(since))
	}
	t.Logf("%d polls; answers naming east by member %v; longest time no member answered east: %v", polls, answered, silent.Round(100*time.Millisecond))
	if len(bad) > 0 {
		t.Fatalf("during the upgrade:\n%s", strings.Join(bad, "\n"))
	}
	// Members answer an owner only while they may trust it: with all three
	// up at every step but one restarting, someone always knows east.
	if silent > time.Second {
		t.Errorf("for %v no member's DNS answered east", silent.Round(100*time.Millisecond))
	}
}
