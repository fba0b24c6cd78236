package boothmix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/testenv"
)

// Two boothd sites and geoboothd as their arbitrator, with and without an
// authfile: a grant with the booth client, every member's booth list
// (geoboothd's included) shows the leader, geoboothd restarts mid-lease
// without the ticket moving, the leader's boothd is killed and the other
// site takes the ticket, a revoke goes through the redirect. Each site's
// crm_ticket logs its grants; no two sites hold at once.
func TestGeoboothdArbitratesABoothCluster(t *testing.T) {
	bin := daemonsTest(t)
	ctl := buildTicketctl(t, t.TempDir())
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "no authfile", true: "authfile"}[auth], func(t *testing.T) {
			arbitrate(t, bin, ctl, auth)
		})
	}
}

// geoboothd's status and DNS listeners, inside its namespace.
const (
	statusAddr = "127.0.0.1:7809"
	dnsAddr    = "127.0.0.1:5300"
)

const (
	expire       = 10 * time.Second
	acquireAfter = 2 * time.Second
	timeout      = time.Second
)

func arbitrate(t *testing.T, bin, ctl string, auth bool) {
	c := newBoothCluster(t, map[bool]string{false: "mn", true: "ma"}[auth], "10.79.0.", auth)
	addrs := c.addrs
	// An alert hook that logs each event's kind and owner.
	hook, alertLog := filepath.Join(c.dir, "hook"), filepath.Join(c.dir, "alerts.log")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$GEOBOOTH_EVENT $GEOBOOTH_OWNER\" >>"+alertLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(c.dir, "alerts.toml")
	if err := os.WriteFile(hooks, []byte("[[alerts]]\nname = \"log\"\nprogram = \""+hook+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	members := []*member{c.run(c.boothd(0)), c.run(c.boothd(1)),
		c.run(c.geoboothd(2, bin, "-booth-http", statusAddr, "-booth-dns", dnsAddr, "-booth-zones", writeZones(t, c.dir, addrs[0], addrs[1]),
			"-state-dir", filepath.Join(c.dir, "state"), "-booth-alerts", hooks))}

	answers := sampleDNS(t, c.ns, 2)
	c.grant(0)
	for i := range members {
		testenv.Eventually(t, 20*time.Second, c.leaderAt(i, addrs[0]))
	}
	testenv.Eventually(t, 10*time.Second, dnsAnswers(c.ns, 2, eastTarget))
	out, err := c.booth(2, "peers")
	if err != nil || !strings.Contains(out, "site         "+addrs[0]) || !strings.Contains(out, "Recv pkts:") {
		t.Fatalf("booth peers at geoboothd: %v\n%s", err, out)
	}
	checkStatus(t, c.ns, ctl, addrs[0])

	// geoboothd restarts mid-lease: it learns the lease from the sites'
	// status answers, and the ticket stays at east.
	members[2].stop(syscall.SIGTERM)
	members[2].start(t)
	testenv.Eventually(t, 10*time.Second, c.leaderAt(2, addrs[0]))
	if err := c.leaderAt(1, addrs[0])(); err != nil {
		t.Fatalf("after geoboothd's restart: %v", err)
	}

	// The leader's boothd dies: west takes the ticket once east's lease
	// and acquire-after have passed.
	killed := c.failover(members[0], 1)
	testenv.Eventually(t, 10*time.Second, dnsAnswers(c.ns, 2, westTarget))

	// East comes back as a follower; a revoke asked at east is redirected
	// to west.
	members[0].start(t)
	testenv.Eventually(t, 20*time.Second, c.leaderAt(0, addrs[1]))
	if out, err := c.booth(0, "revoke", "web"); err != nil {
		t.Fatalf("booth revoke at east (redirected to west): %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, c.leaderAt(2, "none"))
	checkEvents(t, c.ns, ctl, addrs[1])
	// The alert hook got the same events, in order (the restart of
	// geoboothd mid-lease adds a grant of east first).
	testenv.Eventually(t, 10*time.Second, func() error {
		b, _ := os.ReadFile(alertLog)
		if got := strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ", "); !strings.HasSuffix(got, "lost , granted "+addrs[1]+", revoked") {
			return fmt.Errorf("alert hook got: %s", got)
		}
		return nil
	})

	ivs := grants(t, c.events, map[string]time.Duration{"east": killed})
	if len(ivs) < 2 {
		t.Fatalf("grant intervals %+v: want east's and west's", ivs)
	}
	checkNoOverlap(t, ivs)
	checkDNS(t, answers(), ivs, map[string]string{eastTarget: "east", westTarget: "west"}, "east", "west")
	for _, iv := range ivs {
		t.Logf("%s held web for %v", iv.site, (iv.end - iv.start).Round(100*time.Millisecond))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shortDir is a temporary directory with a short path: boothd refuses a
// lock file path and booth.conf an authfile path of more than 63
// characters, and t.TempDir's are longer. Everyone may read it: boothd
// runs crm_ticket as the user it drops to.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "bm")
	if err != nil {
		t.Fatal(err)
	}
	// boothd runs crm_ticket as the user it drops to.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// checkStatus reads geoboothd's status as ticketctl and Prometheus do:
// the ticket's owner is leader, both sites are alive, and the metrics
// count Booth's messages.
func checkStatus(t *testing.T, ns testenv.Namespaces, ctl, leader string) {
	t.Helper()
	out, err := ns.Exec(2, ctl, "-addr", statusAddr, "list", "--json").CombinedOutput()
	var tickets []api.Ticket
	if err != nil || json.Unmarshal(out, &tickets) != nil || len(tickets) != 1 || tickets[0].Owner != leader || tickets[0].SafeUntil == nil {
		t.Fatalf("ticketctl list at geoboothd: %v\n%s", err, out)
	}
	out, err = ns.Exec(2, ctl, "-addr", statusAddr, "peers", "--json").CombinedOutput()
	var peers []api.Peer
	if err != nil || json.Unmarshal(out, &peers) != nil || len(peers) != 3 {
		t.Fatalf("ticketctl peers at geoboothd: %v\n%s", err, out)
	}
	// The leader renews through the arbitrator; the other site sends it
	// nothing unless asked, so it may be alive or unknown.
	for _, p := range peers {
		want := map[string]bool{"self": p.Role == "arbitrator", "alive": p.Role == "site", "unknown": p.Role == "site" && p.Name != leader}
		if !want[p.Status] {
			t.Fatalf("peer %s (%s) is %s", p.Name, p.Role, p.Status)
		}
	}
	out, err = ns.Exec(2, "curl", "-sf", "http://"+statusAddr+"/metrics").CombinedOutput()
	for _, want := range []string{
		`geobooth_booth_ticket_leader_info{leader="` + leader + `",ticket="web"} 1`,
		`geobooth_booth_messages_received_total{cmd="HrtB"}`,
		`geobooth_booth_client_requests_total{cmd="CLst",result="0"}`,
	} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("metrics lack %s: %v\n%s", want, err, out)
		}
	}
	if strings.Contains(string(out), "geobooth_booth_peer_time_unit_mismatch{") {
		t.Fatalf("a time unit mismatch between members of one booth.conf:\n%s", out)
	}
}

// checkEvents reads geoboothd's events as ticketctl does, and its status
// page: east's lease ran out, west was granted the ticket, then revoked.
func checkEvents(t *testing.T, ns testenv.Namespaces, ctl, west string) {
	t.Helper()
	out, err := ns.Exec(2, ctl, "-addr", statusAddr, "events", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("ticketctl events at geoboothd: %v\n%s", err, out)
	}
	// One event per line, oldest first.
	var kinds []string
	for dec := json.NewDecoder(bytes.NewReader(out)); dec.More(); {
		var e api.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("ticketctl events at geoboothd: %v\n%s", err, out)
		}
		kinds = append(kinds, e.Kind+" "+e.Owner)
	}
	got := strings.Join(kinds, ", ")
	if !strings.Contains(got, "lost , granted "+west+", revoked ") {
		t.Fatalf("events, oldest first: %s", got)
	}
	page, err := ns.Exec(2, "curl", "-sf", "http://"+statusAddr+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(page), "web") || !strings.Contains(string(page), "revoked") {
		t.Fatalf("status page: %v\n%s", err, page)
	}
	if out, err := ns.Exec(2, ctl, "-addr", statusAddr, "dns").CombinedOutput(); err != nil || !strings.Contains(string(out), "www.example.test") {
		t.Fatalf("ticketctl dns at geoboothd: %v\n%s", err, out)
	}
}
