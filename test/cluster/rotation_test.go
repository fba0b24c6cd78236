package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// TestKeyRotationWithoutDowntime rotates the peer key, the API token and
// the serf key the way docs/operations.md says, restarting one member at
// a time in three rounds (new key accepted, new key used, old key gone)
// while east holds web. The ticket never moves, no member refuses a
// datagram, every member sees every other alive in serf and hears its
// ticket datagrams after each restart, and the API takes the new token as
// soon as the first round is through and refuses the old one at the end.
func TestKeyRotationWithoutDowntime(t *testing.T) {
	slow(t)
	c := threeMembers(t, exampleTickets)
	arb := c.Member("arbitrator")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	waitOwner(t, c, "web", "east", 10*time.Second)
	before, err := c.Member("east").Ticket("web")
	if err != nil {
		t.Fatal(err)
	}

	ctl := filepath.Join(c.Bin, "ticketctl")
	file := func(name string) string { return filepath.Join(c.Dir, name) }
	for _, args := range [][]string{{"keygen", file("auth-new.key")}, {"keygen", "-token", file("api-new.token")}, {"keygen", "-serf", file("serf-new.keyring")}} {
		if out, errOut, code := runCmd(ctl, args...); code != 0 {
			t.Fatalf("ticketctl %v: %s%s", args, out, errOut)
		}
	}
	var oldRing, newRing []string
	for p, ring := range map[string]*[]string{file("serf.keyring"): &oldRing, file("serf-new.keyring"): &newRing} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, ring); err != nil {
			t.Fatal(err)
		}
	}
	writeRing := func(name string, keys ...string) {
		b, _ := json.Marshal(keys)
		if err := os.WriteFile(file(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRing("ring-1.json", oldRing[0], newRing[0])
	writeRing("ring-2.json", newRing[0], oldRing[0])
	writeRing("ring-3.json", newRing[0])
	newToken, _ := os.ReadFile(file("api-new.token"))

	// A watcher: no member sees another owner than east, or an older
	// term (a restarted owner reasserts its lease in a higher term; that
	// is no move). A member that has just restarted shows no owner until
	// it has a proof of east's lease.
	stop := make(chan struct{})
	var mu sync.Mutex
	var moved []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, m := range c.Members {
				if tk, err := m.Ticket("web"); err == nil && tk.Owner != "" && (tk.Owner != "east" || tk.Term < before.Term) {
					mu.Lock()
					moved = append(moved, fmt.Sprintf("%s sees owner %s term %d", m.Name, tk.Owner, tk.Term))
					mu.Unlock()
				}
			}
		}
	}()

	original := map[string]string{}
	for _, m := range c.Members {
		b, _ := os.ReadFile(m.Config)
		original[m.Name] = string(b)
	}
	rounds := []struct{ key, nextKey, token, nextToken, ring string }{
		{"auth.key", "auth-new.key", "api.token", "api-new.token", "ring-1.json"},
		{"auth-new.key", "auth.key", "api-new.token", "api.token", "ring-2.json"},
		{"auth-new.key", "", "api-new.token", "", "ring-3.json"},
	}
	for i, r := range rounds {
		for _, m := range c.Members {
			cfg := strings.Replace(original[m.Name], `auth_key_file = "auth.key"`, fmt.Sprintf("auth_key_file = %q", r.key), 1)
			if r.nextKey != "" {
				cfg = strings.Replace(cfg, "\n[api]", fmt.Sprintf("next_auth_key_file = %q\n\n[api]", r.nextKey), 1)
			}
			tok := fmt.Sprintf("token_file = %q", r.token)
			if r.nextToken != "" {
				tok += fmt.Sprintf("\nnext_token_file = %q", r.nextToken)
			}
			cfg = strings.Replace(cfg, `token_file = "api.token"`, tok, 1)
			cfg = strings.Replace(cfg, `keyring_file = "serf.keyring"`, fmt.Sprintf("keyring_file = %q", r.ring), 1)
			if err := os.WriteFile(m.Config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			m.Stop()
			restarted := time.Now()
			m.Start()
			m.WaitUp(15 * time.Second)
			for _, o := range c.Members {
				waitHears(t, o, restarted, o == m)
				if n := refusedForAuth(t, o); n != 0 {
					t.Fatalf("round %d, after restarting %s: %s refused %d datagrams for their key", i+1, m.Name, o.Name, n)
				}
			}
		}
		if i == 0 {
			if code := deleteAttr(t, arb, strings.TrimSpace(string(newToken))); code == http.StatusUnauthorized {
				t.Fatalf("the new API token is refused after the first round")
			}
		}
	}
	if code := deleteAttr(t, arb, c.Token); code != http.StatusUnauthorized {
		t.Fatalf("the old API token still works after the rotation: %d", code)
	}
	if _, errOut, code := arb.Ctl("list"); code != 0 {
		t.Fatalf("ticketctl with the new token: %s", errOut)
	}
	close(stop)
	wg.Wait()
	if len(moved) > 0 {
		t.Fatalf("web moved during the rotation: %v", moved)
	}
	waitOwner(t, c, "web", "east", 10*time.Second)
}

// waitHears waits until m sees every other member in serf (alive, when
// strict: m has just restarted and joined with the new keys) and has a
// ticket datagram sent after since from each member it talks to: east,
// the owner, from everyone (acknowledgements), the others from east
// (renewals).
func waitHears(t *testing.T, m *tc.Member, since time.Time, strict bool) {
	t.Helper()
	tc.Eventually(t, 15*time.Second, func() error {
		body, err := m.Get("/api/v1/peers")
		if err != nil {
			return err
		}
		var peers []api.Peer
		if err := json.Unmarshal([]byte(body), &peers); err != nil {
			return fmt.Errorf("peers of %s: %v: %s", m.Name, err, body)
		}
		for _, p := range peers {
			if p.Name == m.Name {
				continue
			}
			// Another member that restarted quickly may stay "leaving"
			// in serf's view: its old leave intent, still gossiped,
			// outranks its new join (serf's Lamport clocks). The
			// restarted member itself must see everyone alive.
			if p.Status != "alive" && (strict || p.Status != "leaving") {
				return fmt.Errorf("%s sees %s %s in serf", m.Name, p.Name, p.Status)
			}
			if m.Name != "east" && p.Name != "east" {
				continue
			}
			if p.LastHeard == nil || p.LastHeard.Before(since) {
				return fmt.Errorf("%s has heard no ticket datagram from %s since %v (last %v)", m.Name, p.Name, since, p.LastHeard)
			}
		}
		return nil
	})
}

var authRefusals = regexp.MustCompile(`(?m)^geobooth_ticket_packets_received_total\{result="auth"\} (\d+)`)

// refusedForAuth reads how many datagrams m refused for their key.
func refusedForAuth(t *testing.T, m *tc.Member) int {
	t.Helper()
	body, err := m.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if g := authRefusals.FindStringSubmatch(body); g != nil {
		fmt.Sscan(g[1], &n)
	}
	return n
}

// deleteAttr makes an authorised request with a token and returns its
// status.
func deleteAttr(t *testing.T, m *tc.Member, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+m.API+"/api/v1/tickets/batch/attrs/rotation", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
