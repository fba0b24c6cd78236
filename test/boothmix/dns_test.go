package boothmix

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// The failover name's answer at each site.
const (
	eastTarget = "192.0.2.10"
	westTarget = "192.0.2.20"
)

// writeZones writes a zones file whose www.example.test follows the Booth
// ticket web: east's target while the site at eastAddr holds it, west's
// while westAddr does, no data otherwise.
func writeZones(t *testing.T, dir, eastAddr, westAddr string) string {
	t.Helper()
	zone := "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 60 30 86400 5\n@ NS ns1\nns1 A 192.0.2.53\n"
	if err := os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	zones := fmt.Sprintf(`[[zones]]
origin = "example.test."
file = "example.test.zone"

[[zones.failover]]
name = "www"
type = "A"
ttl = "5s"
ticket = "web"

[zones.failover.sites."%s"]
targets = ["%s"]

[zones.failover.sites."%s"]
targets = ["%s"]
`, eastAddr, eastTarget, westAddr, westTarget)
	path := filepath.Join(dir, "zones.toml")
	if err := os.WriteFile(path, []byte(zones), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// answer is one DNS query's result, between the monotonic times it was
// sent and answered.
type answer struct {
	sent, got time.Duration
	targets   string
}

// sampleDNS asks geoboothd's DNS in namespace i for www.example.test
// every 200 ms until the test ends (at most 10 minutes); the function it
// returns stops the sampling and gives the answers.
func sampleDNS(t *testing.T, ns testenv.Namespaces, i int) func() []answer {
	t.Helper()
	testenv.RequireTool(t, "dig", "bind9-dnsutils")
	var (
		mu   sync.Mutex
		out  []answer
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for range 3000 {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			sent := testenv.Monotonic()
			got, err := askWWW(ns, i)
			if err != nil {
				continue
			}
			mu.Lock()
			out = append(out, answer{sent, testenv.Monotonic(), got})
			mu.Unlock()
		}
	}()
	var once sync.Once
	finish := func() []answer {
		once.Do(func() { close(stop); <-done })
		mu.Lock()
		defer mu.Unlock()
		return out
	}
	t.Cleanup(func() { finish() })
	return finish
}

// checkDNS fails when an answer named a site while the whole query fell
// within another site's grant, or when no answer named one of the sites
// in need; it reports how many answers named whom.
func checkDNS(t *testing.T, as []answer, ivs []interval, siteOf map[string]string, need ...string) {
	t.Helper()
	count := map[string]int{}
	for _, a := range as {
		site, ok := siteOf[a.targets]
		switch {
		case a.targets == "":
			count["no data"]++
			continue
		case !ok:
			t.Errorf("DNS answered %q", a.targets)
			continue
		}
		count[site]++
		for _, iv := range ivs {
			if iv.site != site && iv.start <= a.sent && a.got <= iv.end {
				t.Errorf("DNS answered %s (%s) while %s held the ticket (%v–%v, query %v–%v)", site, a.targets, iv.site, iv.start, iv.end, a.sent, a.got)
			}
		}
	}
	for _, s := range need {
		if count[s] == 0 {
			t.Errorf("DNS answers %v: none named %s", count, s)
		}
	}
	t.Logf("DNS answers: %v", count)
}

// dnsAnswers waits until geoboothd's DNS in namespace i answers target
// for www.example.test.
func dnsAnswers(ns testenv.Namespaces, i int, target string) func() error {
	return func() error {
		if got, err := askWWW(ns, i); err != nil || got != target {
			return fmt.Errorf("www.example.test answers %q (%v), want %s", got, err, target)
		}
		return nil
	}
}

// askWWW asks geoboothd's DNS in namespace i for www.example.test's
// addresses (dig +short: "" for no data).
func askWWW(ns testenv.Namespaces, i int) (string, error) {
	host, port, _ := strings.Cut(dnsAddr, ":")
	b, err := ns.Exec(i, "dig", "+short", "+time=1", "+tries=1", "@"+host, "-p", port, "www.example.test", "A").Output()
	return strings.TrimSpace(string(b)), err
}
