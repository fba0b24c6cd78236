// Package local tests the example cluster as a user runs it: the same
// configuration files, the same fixed ports.
package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// artifacts is where tests leave screenshots (git-ignored).
func artifacts(t *testing.T) string {
	dir := os.Getenv("GEOBOOTH_ARTIFACTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "test", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startExample(t *testing.T) *tc.Cluster {
	c := tc.FromExample(t, "local", "east", "west", "arbitrator")
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	return c
}

// metric returns the value of one series from a member's /metrics.
func metric(t *testing.T, m *tc.Member, series string) float64 {
	t.Helper()
	body, err := m.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
			return v
		}
	}
	return -1
}

func TestDashboardAndMetricsFollowAFailover(t *testing.T) {
	c := startExample(t)
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}

	// Metrics: renewals grow at the owner.
	renewals := `geobooth_ticket_renewals_total{ticket="web"}`
	r0 := metric(t, east, renewals)
	tc.Eventually(t, 15*time.Second, func() error {
		if r := metric(t, east, renewals); r <= r0 {
			return fmt.Errorf("renewals stayed at %v", r)
		}
		return nil
	})
	for _, s := range []string{`geobooth_ticket_held{ticket="web"}`, `geobooth_ticket_term{ticket="web"}`,
		`geobooth_ticket_lease_remaining_seconds{ticket="web"}`, `geobooth_ticket_packets_received_total{result="ok"}`} {
		if metric(t, east, s) < 0 {
			t.Errorf("series %s missing", s)
		}
	}
	failovers := `geobooth_ticket_failovers_total{ticket="web"}`
	f0 := metric(t, arb, failovers)

	b := tc.NewBrowser(t, 1280, 800, true)
	b.Open("http://" + west.API + "/")
	owner := `#tickets tr[data-ticket="web"] td.owner`
	countdown := `#tickets tr[data-ticket="web"] .countdown`
	tc.Eventually(t, 10*time.Second, func() error {
		if got := b.Texts(owner); len(got) != 1 || got[0] != "east" {
			return fmt.Errorf("owner cell = %q", got)
		}
		if got := b.Texts("#members td.name"); strings.Join(got, ",") != "east,west,arbitrator" {
			return fmt.Errorf("members = %q", got)
		}
		return nil
	})
	num := regexp.MustCompile(`^(\d+\.\d)s$`)
	first := b.Texts(countdown)[0]
	tc.Eventually(t, 5*time.Second, func() error {
		now := b.Texts(countdown)[0]
		if !num.MatchString(now) || now == first {
			return fmt.Errorf("countdown %q then %q: not counting", first, now)
		}
		return nil
	})
	// Replication, as west sees it: west secondary, east primary, in sync.
	volumeRow := `#volumes tr[data-volume="data"][data-peer="east"] td`
	tc.Eventually(t, 10*time.Second, func() error {
		cells := b.Texts(volumeRow)
		if len(cells) != 9 || cells[2] != "secondary · UpToDate" || cells[4] != "InSync" || cells[5] != "primary · UpToDate" {
			return fmt.Errorf("replication row = %q", cells)
		}
		return nil
	})
	// An online verify, run in the background, shows in the volume's row.
	if out, errOut, code := west.Ctl("repl", "verify", "data", "east"); code != 0 || !strings.Contains(out, "0 different") {
		t.Fatalf("repl verify at west: exit %d, %s%s", code, out, errOut)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if cells := b.Texts(volumeRow); len(cells) < 3 || !strings.Contains(cells[2], "verify vs east: 0 different") {
			return fmt.Errorf("replication row after a verify = %q", cells)
		}
		return nil
	})
	b.Screenshot(filepath.Join(artifacts(t), "dashboard-1280x800.png"))

	// Mark the page, fail east over, and see west appear in the same page.
	b.Script(`window.notReloaded = true; return true;`, nil)
	east.Kill()
	tc.Eventually(t, 20*time.Second, func() error {
		if got := b.Texts(owner); len(got) != 1 || got[0] != "west" {
			return fmt.Errorf("owner cell = %q", got)
		}
		return nil
	})
	tc.Eventually(t, 10*time.Second, func() error {
		cells := b.Texts(volumeRow)
		if len(cells) != 9 || !strings.HasPrefix(cells[2], "primary · UpToDate") || cells[4] == "InSync" {
			return fmt.Errorf("replication row after the failover = %q", cells)
		}
		return nil
	})
	var marked struct {
		Value bool `json:"value"`
	}
	b.Script(`return window.notReloaded === true;`, &marked)
	if !marked.Value {
		t.Fatal("the page was reloaded")
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if got := b.Texts(`#dns-names tr[data-name="www.example.test."] td.answer`); len(got) != 1 || got[0] != "127.0.0.12" {
			return fmt.Errorf("DNS answer cell = %q", got)
		}
		if got := b.Texts(`#dns-health tr[data-target="127.0.0.11"] td`); len(got) < 3 || got[2] != "down" {
			return fmt.Errorf("east's health row = %q", got)
		}
		return nil
	})
	b.Screenshot(filepath.Join(artifacts(t), "dashboard-after-failover.png"))
	if f := metric(t, arb, failovers); f <= f0 {
		t.Fatalf("failover counter %v, was %v", f, f0)
	}
	if m := metric(t, arb, "geobooth_ticket_config_mismatch_members"); m != 0 {
		t.Fatalf("config mismatches %v", m)
	}
	if h := metric(t, arb, `geobooth_ticket_peer_last_heard_seconds{member="west"}`); h < 0 || h > 5 {
		t.Fatalf("west last heard %v s ago by the arbitrator", h)
	}
	if h := metric(t, arb, `geobooth_ticket_peer_last_heard_seconds{member="east"}`); h < 5 {
		t.Fatalf("killed east last heard %v s ago by the arbitrator", h)
	}

	// ticketctl watch prints the same summary, refreshed.
	out, errOut, code := west.Ctl("watch", "--interval", "200ms", "--count", "2")
	if code != 0 || strings.Count(out, "geobooth at ") != 2 || !strings.Contains(out, "www.example.test.") || !strings.Contains(out, "VOLUME") {
		t.Fatalf("ticketctl watch: exit %d\n%s%s", code, out, errOut)
	}

	// Without JavaScript the server-rendered page says the same.
	nojs := tc.NewBrowser(t, 1280, 800, false)
	nojs.Open("http://" + arb.API + "/")
	if got := nojs.Texts(owner); len(got) != 1 || got[0] != "west" {
		t.Fatalf("no-JS owner cell = %q", got)
	}
	if got := nojs.Texts("#members td.name"); len(got) != 3 {
		t.Fatalf("no-JS members = %q", got)
	}

	// A phone-width viewport: nothing wider than the screen, owner visible.
	phone := tc.NewBrowser(t, 390, 844, true)
	phone.Open("http://" + arb.API + "/")
	tc.Eventually(t, 10*time.Second, func() error {
		if got := phone.Texts(owner); len(got) != 1 || got[0] != "west" {
			return fmt.Errorf("owner cell = %q", got)
		}
		return nil
	})
	var overflow struct {
		Value bool `json:"value"`
	}
	phone.Script(`return document.documentElement.scrollWidth > window.innerWidth + 1;`, &overflow)
	if overflow.Value {
		t.Error("the page is wider than a phone screen")
	}
	phone.Screenshot(filepath.Join(artifacts(t), "dashboard-phone.png"))
}

// dnsAnswer asks a member's DNS server for www.example.test A.
func dnsAnswer(addr string) (ip string, ttl uint32, err error) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(q, addr)
	if err != nil {
		return "", 0, err
	}
	if !r.Authoritative || r.Rcode != dns.RcodeSuccess {
		return "", 0, fmt.Errorf("answer not authoritative or %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), a.Hdr.Ttl, nil
		}
	}
	return "", 0, nil
}

// TestDNSFollowsTheTicketOnEveryMember: every member answers east's
// address while east holds web; after east is killed no member answers it
// once east's lease can have ended, nor with a TTL reaching past it, and
// every member answers west's once west holds web.
func TestDNSFollowsTheTicketOnEveryMember(t *testing.T) {
	tc.RequireTool(t, "dig", "bind9-dnsutils")
	c := startExample(t)
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	dnsAddr := map[string]string{"east": "127.0.0.1:5301", "west": "127.0.0.1:5302", "arbitrator": "127.0.0.1:5303"}
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	for name, addr := range dnsAddr {
		tc.Eventually(t, 5*time.Second, func() error {
			ip, ttl, err := dnsAnswer(addr)
			if err != nil || ip != "127.0.0.11" || ttl > 5 {
				return fmt.Errorf("%s answers %q TTL %d (%v)", name, ip, ttl, err)
			}
			return nil
		})
	}
	out, _, _ := runDig("127.0.0.1", "5302", "www.example.test", "+short")
	if out != "127.0.0.11\n" {
		t.Fatalf("dig @west: %q", out)
	}
	// East's lease lasts at most expire·(1−d)/(1+d) = 9.8 s from its last
	// renewal, which came before the kill.
	east.Kill()
	killed := time.Now()
	leaseEnd := killed.Add(9800 * time.Millisecond)
	deadline := time.Now().Add(25 * time.Second)
	westEverywhere := false
	for time.Now().Before(deadline) && !westEverywhere {
		westEverywhere = true
		for _, m := range []*tc.Member{west, arb} {
			asked := time.Now()
			ip, ttl, err := dnsAnswer(dnsAddr[m.Name])
			if err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
			if ip == "127.0.0.11" {
				if asked.After(leaseEnd) {
					t.Fatalf("%s answered east's address %v after the kill, past east's lease", m.Name, asked.Sub(killed))
				}
				if asked.Add(time.Duration(ttl) * time.Second).After(leaseEnd.Add(100 * time.Millisecond)) {
					t.Fatalf("%s answered east's address with TTL %d at %v: cached past east's lease", m.Name, ttl, asked.Sub(killed))
				}
			}
			if ip != "127.0.0.12" {
				westEverywhere = false
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !westEverywhere {
		t.Fatal("west's address not answered by every member within 25 s of the kill")
	}
	tk, _ := west.Ticket("web")
	if tk.Owner != "west" {
		t.Fatalf("DNS answers west but web is %+v", tk)
	}
	t.Logf("every member answers west %v after east was killed", time.Since(killed).Round(100*time.Millisecond))
	body, err := west.Get("/api/v1/dns")
	if err != nil || !strings.Contains(body, `"owner": "west"`) || !strings.Contains(body, `"127.0.0.12"`) {
		t.Fatalf("/api/v1/dns: %v\n%s", err, body)
	}
	out, errOut, code := west.Ctl("dns")
	if code != 0 || !strings.Contains(out, "www.example.test.") || !strings.Contains(out, "127.0.0.12") {
		t.Fatalf("ticketctl dns: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("ticketctl dns at west:\n%s", out)
}

func runDig(host, port string, args ...string) (string, string, error) {
	cmd := exec.Command("dig", append([]string{"@" + host, "-p", port}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}
