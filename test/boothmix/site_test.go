package boothmix

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// geoboothd as a site of a Booth cluster, beside a boothd site and a
// boothd arbitrator: east is geoboothd without an authfile, and, mirrored,
// west is with one. A grant at geoboothd with the booth client; every
// member's booth list shows it; geoboothd's CIB has it; geoboothd, then
// the arbitrator, restart mid-lease and the ticket stays; a manual ticket
// is granted and revoked; geoboothd is killed and the boothd site takes
// the ticket after the lease; geoboothd comes back as a follower; the
// boothd site is killed and geoboothd takes the ticket back; a revoke
// asked at the boothd site is redirected to geoboothd; ticketctl grants
// and revokes at geoboothd (its status listener, with a token), the booth
// client at the boothd site, then ticketctl grants again; geoboothd leads
// until its before-acquire handler fails, and steps down. No two sites'
// CIBs hold the ticket at once.
func TestGeoboothdIsASiteOfABoothCluster(t *testing.T) {
	bin := daemonsTest(t)
	for _, c := range []struct {
		name string
		geo  int // the site geoboothd runs
		auth bool
	}{{"geoboothd east, no authfile", 0, false}, {"geoboothd west, authfile", 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mixedSites(t, bin, c.geo, c.auth)
		})
	}
}

func mixedSites(t *testing.T, bin string, geo int, auth bool) {
	c := newBoothCluster(t, fmt.Sprintf("s%d", geo), []string{"10.81.0.", "10.82.0."}[geo], auth)
	addrs := c.addrs
	// The handler fails at a site once a file names it.
	handler := filepath.Join(c.dir, "handler")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\ntest ! -e "+c.dir+"/fail-$BOOTH_LOCAL\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, c.conf, "    before-acquire-handler = "+handler+"\nticket = \"db\"\n    mode = manual\n")
	// ticketctl at geoboothd's status listener, with a token.
	ctl := buildTicketctl(t, c.dir)
	token := filepath.Join(c.dir, "api.token")
	if out, err := exec.Command(ctl, "keygen", "-token", token).CombinedOutput(); err != nil {
		t.Fatalf("ticketctl keygen -token: %v\n%s", err, out)
	}
	ticketctl := func(args ...string) (string, error) {
		out, err := c.ns.Exec(geo, append([]string{ctl, "-addr", "127.0.0.1:7809", "-token-file", token}, args...)...).CombinedOutput()
		return string(out), err
	}
	members := make([]*member, 3)
	for i := range 3 {
		if i == geo {
			members[i] = c.run(c.geoboothd(i, bin, "-booth-http", "127.0.0.1:7809", "-booth-token", token))
		} else {
			members[i] = c.run(c.boothd(i))
		}
	}
	other := 1 - geo

	c.grant(geo)
	for i := range members {
		testenv.Eventually(t, 20*time.Second, c.leaderAt(i, addrs[geo]))
	}
	testenv.Eventually(t, 2*expire, granted(t, c.events, names[geo]))

	// geoboothd restarts mid-lease: it finds the grant in its CIB and
	// takes the ticket back before the lease ends; nobody else holds it.
	// The same for the boothd arbitrator, and for the boothd site, which
	// learns of the lease at its start.
	for _, i := range []int{geo, 2, other} {
		members[i].stop(syscall.SIGTERM)
		members[i].start(t)
		testenv.Eventually(t, 20*time.Second, c.leaderAt(i, addrs[geo]))
		for j := range members {
			if err := c.leaderAt(j, addrs[geo])(); err != nil {
				t.Fatalf("after %s's restart mid-lease: %v", members[i].name, err)
			}
		}
	}

	// A manual ticket: granted at geoboothd at once, without expiry, then
	// revoked.
	if out, err := c.booth(geo, "grant", "db"); err != nil {
		t.Fatalf("booth grant db (manual) at geoboothd: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		out, err := c.booth(other, "list")
		if err != nil || !strings.Contains(out, "ticket: db, leader: "+addrs[geo]+", expires: INF [manual mode]") {
			return fmt.Errorf("booth list at %s: %v %q", names[other], err, out)
		}
		return nil
	})
	if out, err := c.booth(geo, "revoke", "db"); err != nil {
		t.Fatalf("booth revoke db at geoboothd: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		cmd := exec.Command("crm_ticket", "-t", "db", "-q")
		cmd.Env = append(os.Environ(), "CIB_file="+c.cib(geo))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `granted="false"`) {
			return fmt.Errorf("db in geoboothd's CIB: %v %s", err, out)
		}
		return nil
	})

	// Geostore attributes at geoboothd, with Booth's geostore client: kept
	// there and in its CIB.
	geostore := func(args ...string) (string, error) {
		out, err := c.ns.Exec(geo, append([]string{"geostore", args[0], "-c", c.conf, "-s", addrs[geo], "-t", "web"}, args[1:]...)...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			out = append(out, ee.Stderr...)
		}
		return string(out), err
	}
	if out, err := geostore("set", "sr_status", "ACTIVE"); err != nil {
		t.Fatalf("geostore set: %v\n%s", err, out)
	}
	if out, err := geostore("get", "sr_status"); err != nil || strings.TrimSpace(out) != "ACTIVE" {
		t.Fatalf("geostore get: %v %q", err, out)
	}
	if out, err := geostore("list"); err != nil || !strings.Contains(out, "sr_status ACTIVE") {
		t.Fatalf("geostore list: %v %q", err, out)
	}
	cmd := exec.Command("crm_ticket", "-t", "web", "-G", "sr_status")
	cmd.Env = append(os.Environ(), "CIB_file="+c.cib(geo))
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ACTIVE" {
		t.Fatalf("sr_status in geoboothd's CIB: %v %q", err, out)
	}
	if out, err := geostore("delete", "sr_status"); err != nil {
		t.Fatalf("geostore delete: %v\n%s", err, out)
	}
	if out, err := geostore("get", "sr_status"); err == nil {
		t.Fatalf("geostore get after the delete: %q", out)
	}

	// geoboothd dies: the boothd site takes the ticket after the lease;
	// geoboothd comes back as a follower; then the boothd site dies and
	// geoboothd takes the ticket.
	killed := c.failover(members[geo], other)
	members[geo].start(t)
	testenv.Eventually(t, 20*time.Second, c.leaderAt(geo, addrs[other]))
	killedOther := c.failover(members[other], geo)

	// The boothd site comes back; a revoke asked there goes to geoboothd.
	members[other].start(t)
	testenv.Eventually(t, 20*time.Second, c.leaderAt(other, addrs[geo]))
	if out, err := c.booth(other, "revoke", "web"); err != nil {
		t.Fatalf("booth revoke at %s (redirected to geoboothd): %v\n%s", names[other], err, out)
	}
	for i := range members {
		testenv.Eventually(t, 10*time.Second, c.leaderAt(i, "none"))
	}

	// ticketctl at geoboothd: a grant, waited for; a revoke. Each shows
	// at the boothd site. Then the booth client at the boothd site: a
	// grant and a revoke, seen at geoboothd. Then ticketctl's grant again.
	for _, step := range []struct{ cmd, leader string }{{"grant", addrs[geo]}, {"revoke", "none"}} {
		if out, err := ticketctl(step.cmd, "web"); err != nil {
			t.Fatalf("ticketctl %s web at geoboothd: %v\n%s", step.cmd, err, out)
		}
		testenv.Eventually(t, 20*time.Second, c.leaderAt(other, step.leader))
	}
	c.grant(other)
	testenv.Eventually(t, 20*time.Second, c.leaderAt(geo, addrs[other]))
	testenv.Eventually(t, 2*expire, granted(t, c.events, names[other]))
	if out, err := c.booth(other, "revoke", "web"); err != nil {
		t.Fatalf("booth revoke at %s: %v\n%s", names[other], err, out)
	}
	testenv.Eventually(t, 20*time.Second, c.leaderAt(geo, "none"))
	if out, err := ticketctl("grant", "web"); err != nil {
		t.Fatalf("ticketctl grant web at geoboothd: %v\n%s", err, out)
	}
	testenv.Eventually(t, 20*time.Second, c.leaderAt(other, addrs[geo]))
	if out, err := ticketctl("grant", "-s", addrs[other], "web"); err == nil || !strings.Contains(out, "grants a ticket to itself only") {
		t.Fatalf("ticketctl grant -s %s at geoboothd: %v\n%s", names[other], err, out)
	}

	// geoboothd leads; its before-acquire handler starts failing: it
	// steps down at its next renewal and the boothd site takes over.
	if err := os.WriteFile(filepath.Join(c.dir, "fail-"+addrs[geo]), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := testenv.Monotonic()
	testenv.Eventually(t, expire+acquireAfter+20*timeout, c.leaderAt(other, addrs[other]))
	t.Logf("%s (boothd) leads %v after geoboothd's handler began to fail", names[other], (testenv.Monotonic() - failed).Round(100*time.Millisecond))
	ivs := grants(t, c.events, map[string]time.Duration{names[geo]: killed, names[other]: killedOther})
	checkNoOverlap(t, ivs)
	for _, iv := range ivs {
		t.Logf("%s held web for %v", iv.site, (iv.end - iv.start).Round(100*time.Millisecond))
	}
}
