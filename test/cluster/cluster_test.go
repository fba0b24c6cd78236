// Package cluster holds the multi-process tests of geoboothd and ticketctl:
// real binaries, real sockets on loopback.
package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// The example's timings (expire 10 s, renewal 5 s, acquire_after 2 s,
// timeout 1 s, retries 3) and a manual ticket.
const exampleTickets = `
[defaults]
timeout = "1s"
retries = 3

[tickets.web]
expire = "10s"
renewal_freq = "5s"
acquire_after = "2s"

[tickets.batch]
mode = "manual"
expire = "10s"
renewal_freq = "5s"
`

func threeMembers(t *testing.T, tickets string) *tc.Cluster {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: tickets,
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	return c
}

// watcher polls every member's tickets in the background and records any
// moment at which two members claimed to hold the same ticket.
type watcher struct {
	mu        sync.Mutex
	violation string
	stop      chan struct{}
	done      chan struct{}
}

func watch(c *tc.Cluster, names ...string) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			holders := map[string][]string{}
			for _, m := range c.Members {
				if !m.Running() {
					continue
				}
				ts, err := m.Tickets()
				if err != nil {
					continue
				}
				for _, t := range ts {
					if t.HeldLocally {
						holders[t.Name] = append(holders[t.Name], m.Name)
					}
				}
			}
			for _, n := range names {
				if len(holders[n]) > 1 {
					w.mu.Lock()
					if w.violation == "" {
						w.violation = fmt.Sprintf("%s held by %v at once", n, holders[n])
					}
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

func (w *watcher) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.violation != "" {
		t.Fatal(w.violation)
	}
}

// waitOwner waits until every running member reports owner for the ticket.
func waitOwner(t *testing.T, c *tc.Cluster, name, owner string, timeout time.Duration) {
	t.Helper()
	tc.Eventually(t, timeout, func() error {
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			if err := reportsOwner(m, name, owner); err != nil {
				return err
			}
		}
		return nil
	})
}

// reportsOwner checks one member's view of the ticket's owner.
func reportsOwner(m *tc.Member, name, owner string) error {
	tk, err := m.Ticket(name)
	if err != nil {
		return err
	}
	if tk.Owner != owner {
		return fmt.Errorf("%s reports owner %q of %s, want %q", m.Name, tk.Owner, name, owner)
	}
	return nil
}

func TestFailoverRestartManualTicketAndRevoke(t *testing.T) {
	c := threeMembers(t, exampleTickets)
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	w := watch(c, "web", "batch")

	out, errOut, code := arb.Ctl("grant", "-s", "east", "web")
	if code != 0 {
		t.Fatalf("grant: exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "waiting") {
		t.Errorf("a grant that must wait should say so; stderr: %q", errOut)
	}
	waitOwner(t, c, "web", "east", 5*time.Second)
	if _, errOut, code := west.Ctl("grant", "-s", "west", "web"); code == 0 || !strings.Contains(errOut, "use move") {
		t.Fatalf("grant to west while east holds: exit %d, %q", code, errOut)
	}
	if _, _, code := east.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant to the current owner: exit %d", code)
	}
	// Issue 19: a move to the holder said "moved"; an arbitrator's repl
	// and a member without DNS answered "404 Not Found".
	if out, errOut, code := west.Ctl("move", "web", "east"); code != 0 || strings.Contains(out, "moved") || !strings.Contains(out, "nothing to move") {
		t.Fatalf("move to the holder: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := arb.Ctl("repl"); code != 0 || !strings.Contains(out, "no replicated volumes") {
		t.Fatalf("repl at the arbitrator: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := arb.Ctl("dns"); code != 1 || !strings.Contains(errOut, "no [dns] section") {
		t.Fatalf("dns at a member without DNS: exit %d, %q", code, errOut)
	}
	if _, errOut, code := east.Ctl("grant", "-s", "east", "batch"); code != 0 {
		t.Fatalf("grant batch: %s", errOut)
	}
	waitOwner(t, c, "batch", "east", 5*time.Second)

	// Kill the owner: west takes web within expire + acquire_after + 3×timeout.
	east.Kill()
	killed := time.Now()
	waitOwner(t, c, "web", "west", 10*time.Second+2*time.Second+3*time.Second)
	t.Logf("west owns web %v after east was killed", time.Since(killed).Round(10*time.Millisecond))
	// The manual ticket stays where it was.
	if tk, _ := west.Ticket("batch"); tk.Owner != "east" {
		t.Fatalf("manual ticket batch moved by itself: owner %q", tk.Owner)
	}

	// East comes back, learns that west owns web and does not reclaim it.
	east.Start()
	east.WaitUp(10 * time.Second)
	deadline := time.Now().Add(8 * time.Second)
	tc.Eventually(t, 8*time.Second, func() error {
		tk, err := east.Ticket("web")
		if err != nil {
			return err
		}
		if tk.Owner != "west" {
			return fmt.Errorf("east reports owner %q", tk.Owner)
		}
		return nil
	})
	for time.Now().Before(deadline) {
		if tk, err := east.Ticket("web"); err == nil && (tk.HeldLocally || tk.Owner != "west") {
			t.Fatalf("restarted east reports %+v", tk)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// batch: east's restart keeps it (a majority confirms), and a forced
	// grant moves it to west.
	east.Kill()
	if _, errOut, code := west.Ctl("grant", "-F", "-s", "west", "batch"); code != 0 {
		t.Fatalf("grant -F -s west batch: %s", errOut)
	}
	east.Start()
	east.WaitUp(10 * time.Second)
	waitOwner(t, c, "batch", "west", 10*time.Second)

	// revoke web clears it everywhere.
	if _, errOut, code := arb.Ctl("revoke", "web"); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	waitOwner(t, c, "web", "", 5*time.Second)
	for _, m := range c.Members {
		tk, err := m.Ticket("web")
		if err != nil || tk.Managed || tk.State != "revoked" {
			t.Errorf("%s after revoke: %+v %v", m.Name, tk, err)
		}
	}
	w.check(t)
}

// Fast timings so elections come quickly.
const fastTickets = `
[tickets.web]
expire = "2s"
renewal_freq = "1s"
timeout = "200ms"
retries = 3
`

func TestArbitratorRestartedMidElectionNeverAllowsTwoOwners(t *testing.T) {
	if testing.Short() {
		t.Skip("20 rounds of elections")
	}
	c := threeMembers(t, fastTickets)
	arb := c.Member("arbitrator")
	w := watch(c, "web")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	target := "west"
	for round := 0; round < 20; round++ {
		if _, errOut, code := arb.Ctl("move", "--timeout", "100ms", "web", target); code != 0 && !strings.Contains(errOut, "did not complete") {
			t.Fatalf("round %d: move: %s", round, errOut)
		}
		// Kill the arbitrator while the election runs, restart it at once.
		time.Sleep(time.Duration(round%5) * 40 * time.Millisecond)
		arb.Kill()
		arb.Start()
		arb.WaitUp(10 * time.Second)
		var owner string
		tc.Eventually(t, 15*time.Second, func() error {
			tk, err := arb.Ticket("web")
			if err != nil {
				return err
			}
			if tk.Owner == "" {
				return fmt.Errorf("round %d: no owner yet (%s)", round, tk.State)
			}
			owner = tk.Owner
			return nil
		})
		if owner == "east" {
			target = "west"
		} else {
			target = "east"
		}
	}
	w.check(t)
}

func TestBadDatagramsAreRefusedAndCounted(t *testing.T) {
	c := threeMembers(t, exampleTickets)
	east := c.Member("east")
	sendGarbage(t, c, east)
	tc.Eventually(t, 5*time.Second, func() error {
		m, err := east.Get("/metrics")
		if err != nil {
			return err
		}
		for _, r := range []string{"auth", "malformed", "replay", "digest"} {
			if !strings.Contains(m, `geobooth_ticket_packets_received_total{result="`+r+`"}`) {
				return fmt.Errorf("no %s refusal counted", r)
			}
		}
		return nil
	})
	// The daemon keeps working.
	if _, errOut, code := east.Ctl("grant", "web"); code != 0 {
		t.Fatalf("grant after garbage: %s", errOut)
	}
	waitOwner(t, c, "web", "east", 5*time.Second)
}

func TestTicketctlErrorPaths(t *testing.T) {
	c := threeMembers(t, exampleTickets)
	east := c.Member("east")
	if _, errOut, code := east.Ctl("grant", "nosuch"); code == 0 || !strings.Contains(errOut, "unknown ticket") {
		t.Fatalf("unknown ticket: exit %d, %q", code, errOut)
	}
	bin := c.Bin + "/ticketctl"
	out, errOut, code := runCmd(bin, "-addr", east.API, "-token-file", c.Dir+"/auth.key", "revoke", "web")
	if code == 0 || !strings.Contains(errOut, "wrong bearer token") {
		t.Fatalf("wrong token: exit %d, %q %q", code, out, errOut)
	}
	if tk, _ := east.Ticket("web"); tk.State != "never granted" && tk.State != "restarting" {
		t.Fatalf("a refused request changed the ticket: %+v", tk)
	}
	_, errOut, code = runCmd(bin, "-addr", east.API, "grant", "web")
	if code == 0 || !strings.Contains(errOut, "wrong bearer token") {
		t.Fatalf("missing token: exit %d, %q", code, errOut)
	}
	east.Kill()
	if _, errOut, code := east.Ctl("list"); code == 0 || !strings.Contains(errOut, "cannot reach geoboothd") {
		t.Fatalf("daemon down: exit %d, %q", code, errOut)
	}
	if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 {
		t.Fatalf("reason is not one line: %q", errOut)
	}
}

func TestListJSONHasTheContractFields(t *testing.T) {
	c := threeMembers(t, exampleTickets)
	out, errOut, code := c.Member("west").Ctl("list", "--json")
	if code != 0 {
		t.Fatal(errOut)
	}
	var raw []map[string]any
	if err := jsonUnmarshal(out, &raw); err != nil {
		t.Fatalf("list --json is not a JSON array: %v\n%s", err, out)
	}
	if len(raw) != 2 {
		t.Fatalf("%d tickets, want 2", len(raw))
	}
	for _, k := range []string{"name", "owner", "term", "mode", "state", "lease_remaining_s"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("list --json lacks %q", k)
		}
	}
	out, _, _ = c.Member("west").Ctl("peers", "--json")
	var peers []map[string]any
	if err := jsonUnmarshal(out, &peers); err != nil || len(peers) != 3 {
		t.Fatalf("peers --json: %v %s", err, out)
	}
	for _, k := range []string{"name", "role", "status"} {
		if _, ok := peers[0][k]; !ok {
			t.Errorf("peers --json lacks %q", k)
		}
	}
	// serf tells each member's status: alive, then failed once killed.
	west := c.Member("west")
	status := func(name string) string {
		out, _, _ := west.Ctl("peers", "--json")
		var ps []map[string]any
		jsonUnmarshal(out, &ps)
		for _, p := range ps {
			if p["name"] == name {
				return fmt.Sprint(p["status"])
			}
		}
		return ""
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if s := status("east") + "," + status("arbitrator"); s != "alive,alive" {
			return fmt.Errorf("statuses %s", s)
		}
		return nil
	})
	c.Member("east").Kill()
	tc.Eventually(t, 15*time.Second, func() error {
		if s := status("east"); s != "failed" {
			return fmt.Errorf("east is %s", s)
		}
		return nil
	})
}

func TestAttributesThroughTicketctlReachEveryMember(t *testing.T) {
	c := threeMembers(t, exampleTickets)
	east, arb := c.Member("east"), c.Member("arbitrator")
	if _, errOut, code := east.Ctl("attr", "set", "web", "repl_state", "ACTIVE"); code != 0 {
		t.Fatalf("attr set: %s", errOut)
	}
	tc.Eventually(t, 5*time.Second, func() error {
		out, errOut, code := arb.Ctl("attr", "get", "web", "repl_state")
		if code != 0 || strings.TrimSpace(out) != "ACTIVE" {
			return fmt.Errorf("arbitrator: %q %q", out, errOut)
		}
		return nil
	})
	if out, _, _ := arb.Ctl("attr", "list", "web"); strings.TrimSpace(out) != "repl_state=ACTIVE" {
		t.Fatalf("attr list: %q", out)
	}
	if _, errOut, code := arb.Ctl("attr", "delete", "web", "repl_state"); code != 0 {
		t.Fatalf("attr delete: %s", errOut)
	}
	tc.Eventually(t, 5*time.Second, func() error {
		if _, _, code := east.Ctl("attr", "get", "web", "repl_state"); code == 0 {
			return fmt.Errorf("east still has repl_state")
		}
		return nil
	})
	if _, errOut, code := east.Ctl("attr", "set", "web", "bad name", "x"); code == 0 || !strings.Contains(errOut, "invalid attribute") {
		t.Fatalf("invalid name: %d %q", code, errOut)
	}
}
