package cluster

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// TestManyTicketsFailOverTogether: east holds (most of) 600 automatic
// tickets and is killed. West paces the elections of its own (at most
// max_elections, here 16, at once): the rest queue, and every ticket
// still reaches west soon after the leases end. (bench/scale/run shows the
// point at 10,000 tickets: without pacing the election storm fails them
// all.) The arbitrator is held (SIGSTOP) from the kill until west queues
// elections, as an overloaded voter would be: otherwise whether more than
// 16 of west's elections overlap depends on how fast this machine makes
// votes durable (a CI run once saw none queue).
func TestManyTicketsFailOverTogether(t *testing.T) {
	slow(t)
	const n = 600
	var tickets strings.Builder
	tickets.WriteString("[defaults]\nexpire = \"8s\"\nrenewal_freq = \"2s\"\ntimeout = \"300ms\"\nretries = 3\nacquire_after = \"1s\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&tickets, "\n[tickets.t%d]\n", i)
	}
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: tickets.String(),
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	for _, m := range c.Members {
		b, err := os.ReadFile(m.Config)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(m.Config, append([]byte("max_elections = 16\n"), b...), 0o600)
	}
	c.StartAll()
	east, west := c.Member("east"), c.Member("west")
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+east.API+"/api/v1/tickets/t"+strconv.Itoa(i)+"/grant", strings.NewReader(`{"site":"east"}`))
		req.Header.Set("Authorization", "Bearer "+c.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	heldBy := func(m *tc.Member, owner string) int {
		ts, err := m.Tickets()
		if err != nil {
			return -1
		}
		k := 0
		for _, tk := range ts {
			if tk.Owner == owner {
				k++
			}
		}
		return k
	}
	// Every ticket gets an owner; while the members' first restart
	// windows end, west may win a few of them automatically.
	tc.Eventually(t, 60*time.Second, func() error {
		if k := heldBy(west, "east") + heldBy(west, "west"); k != n {
			return fmt.Errorf("west sees %d of %d tickets held", k, n)
		}
		return nil
	})
	atEast := heldBy(west, "east")
	if atEast < n/2 {
		t.Fatalf("only %d of %d tickets went to east, to which they were granted", atEast, n)
	}
	arb := c.Member("arbitrator")
	east.Kill()
	arb.Pause(true)
	t.Cleanup(func() { arb.Pause(false) })
	killed := time.Now()
	deferred := regexp.MustCompile(`(?m)^geobooth_ticket_elections_deferred_total (\d+)`)
	queued := regexp.MustCompile(`(?m)^geobooth_ticket_elections_queued (\d+)`)
	maxQueued, nDeferred := 0, 0
	watch := func() {
		if m, err := west.Get("/metrics"); err == nil {
			if g := queued.FindStringSubmatch(m); g != nil {
				q, _ := strconv.Atoi(g[1])
				maxQueued = max(maxQueued, q)
			}
			if g := deferred.FindStringSubmatch(m); g != nil {
				nDeferred, _ = strconv.Atoi(g[1])
			}
		}
	}
	// The leases end 8 s after east's last renewals, then acquire-after.
	tc.Eventually(t, 30*time.Second, func() error {
		if watch(); nDeferred == 0 {
			return fmt.Errorf("west deferred no election (at most %d queued)", maxQueued)
		}
		return nil
	})
	arb.Pause(false)
	tc.Eventually(t, 45*time.Second, func() error {
		watch()
		if k := heldBy(west, "west"); k != n {
			return fmt.Errorf("west holds %d of %d tickets", k, n)
		}
		return nil
	})
	t.Logf("all %d tickets at west %v after east was killed with %d; %d elections deferred, at most %d seen queued at once",
		n, time.Since(killed).Round(100*time.Millisecond), atEast, nDeferred, maxQueued)
}
