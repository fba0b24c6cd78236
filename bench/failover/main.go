// Command failover measures how long a geo cluster takes to move a ticket
// to the surviving site after its owner dies: geobooth against Booth, with
// the same settings (expire 10 s, acquire-after 2 s, timeout 1 s, retries
// 3, renewal every 5 s), kills at the same offsets after an acquisition,
// both polled every 50 ms; Booth's sites with geoboothd -booth-config as
// their arbitrator, and geoboothd -booth-config as every member, which
// should both fail over exactly as Booth does. It also reports geobooth's
// time until DNS answers the new site. It prints one table.
//
// Booth runs in three network namespaces on a bridge (boothd finds itself
// by its interface address); geobooth on loopback. Booth 1.0 in Debian 12
// hangs at start on kernels from 6.9 (ClusterLabs/booth#139) when a
// namespace has IPv6 addresses, so the namespaces run IPv4 only.
//
//	bench/failover/run [-runs 5]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	bk "github.com/geobooth/geobooth/bench/internal/benchkit"
)

var (
	runs   = flag.Int("runs", 5, "failovers per system (medians are reported)")
	bin    = flag.String("bin", "bin", "folder with geoboothd and ticketctl")
	offset []time.Duration
)

const (
	expire       = 10 * time.Second
	acquireAfter = 2 * time.Second
)

func main() {
	flag.Parse()
	bk.Name = "bench/failover"
	if os.Geteuid() != 0 {
		fail(fmt.Errorf("run as root (network namespaces for Booth)"))
	}
	for _, t := range []string{"boothd", "booth", "ip", "crm_ticket", "cibadmin"} {
		if _, err := exec.LookPath(t); err != nil {
			fail(fmt.Errorf("%s not found: apt-get install booth pacemaker-cli-utils iproute2", t))
		}
	}
	dir, err := os.MkdirTemp("", "geobooth-bench-failover-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < *runs; i++ {
		// Somewhere in the first renewal period after an acquisition.
		offset = append(offset, 500*time.Millisecond+time.Duration(rnd.Int63n(int64(4*time.Second))))
	}
	boothTimes := measureBooth(filepath.Join(dir, "booth"), [3]bool{})
	mixedTimes := measureBooth(filepath.Join(dir, "mixed"), [3]bool{false, false, true})
	allTimes := measureBooth(filepath.Join(dir, "all"), [3]bool{true, true, true})
	gbTimes, dnsTimes := measureGeobooth(filepath.Join(dir, "geobooth"))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Printf("Failover after the owner is killed: expire %v, acquire_after %v, timeout 1s, retries 3, renewal 5s; %d runs, kills %v after an acquisition\n",
		expire, acquireAfter, *runs, round(offset))
	fmt.Fprintln(tw, "system\tmedian\tmin\tmax\truns")
	row := func(name string, xs []time.Duration) {
		fmt.Fprintf(tw, "%s\t%.2fs\t%.2fs\t%.2fs\t%v\n", name, median(xs).Seconds(), minD(xs).Seconds(), maxD(xs).Seconds(), round(xs))
	}
	row("Booth 1.0 (booth list shows the other site)", boothTimes)
	row("Booth 1.0 sites, geoboothd -booth-config arbitrator", mixedTimes)
	row("geoboothd -booth-config everywhere (Booth's protocol)", allTimes)
	row("geobooth (ticketctl list shows the other site)", gbTimes)
	row("geobooth, until DNS answers the other site", dnsTimes)
	tw.Flush()
	fmt.Printf("ratio geobooth / Booth (median): %.2f (target <= 1.00)\n", median(gbTimes).Seconds()/median(boothTimes).Seconds())
	fmt.Printf("ratio Booth with geoboothd as arbitrator / Booth (median): %.2f (target 1.00: the same protocol)\n", median(mixedTimes).Seconds()/median(boothTimes).Seconds())
	fmt.Printf("ratio geoboothd -booth-config everywhere / Booth (median): %.2f (target 1.00: the same protocol)\n", median(allTimes).Seconds()/median(boothTimes).Seconds())
}

// Booth.

var boothNS = []string{"gbb-east", "gbb-west", "gbb-arb"}

func boothAddr(i int) string { return fmt.Sprintf("10.77.%d.%d", 99, i+1) }

func setupNamespaces() func() {
	cleanup := func() {
		exec.Command("pkill", "-9", "-f", "boothd daemon -S -c /tmp/geobooth-bench-failover-").Run()
		for _, n := range boothNS {
			exec.Command("ip", "netns", "del", n).Run()
		}
		exec.Command("ip", "link", "del", "gbbbr0").Run()
	}
	cleanup()
	sh("ip", "link", "add", "gbbbr0", "type", "bridge")
	sh("ip", "link", "set", "gbbbr0", "up")
	for i, n := range boothNS {
		sh("ip", "netns", "add", n)
		veth := fmt.Sprintf("gbbv%d", i)
		sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n)
		sh("ip", "link", "set", veth, "master", "gbbbr0", "up")
		for _, k := range []string{"all", "default", "lo", "eth0"} {
			sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1")
		}
		sh("ip", "netns", "exec", n, "ip", "addr", "add", boothAddr(i)+"/24", "dev", "eth0")
		sh("ip", "netns", "exec", n, "ip", "link", "set", "eth0", "up")
		sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
	}
	return cleanup
}

// measureBooth runs Booth's failovers; the members geo names run geoboothd
// -booth-config instead of boothd.
func measureBooth(dir string, geo [3]bool) []time.Duration {
	must(os.MkdirAll(dir, 0o755))
	cleanup := setupNamespaces()
	defer cleanup()
	conf := filepath.Join(dir, "booth.conf")
	must(os.WriteFile(conf, []byte(fmt.Sprintf(`transport = UDP
port = 9929
site = %s
site = %s
arbitrator = %s
ticket = "web"
    expire = %d
    acquire-after = %d
    timeout = 1
    retries = 3
    renewal-freq = 5
`, boothAddr(0), boothAddr(1), boothAddr(2), int(expire.Seconds()), int(acquireAfter.Seconds()))), 0o644))
	procs := make([]*exec.Cmd, 3)
	start := func(i int) {
		cib := filepath.Join(dir, boothNS[i]+".xml")
		out, err := exec.Command("cibadmin", "--empty").Output()
		must(err)
		must(os.WriteFile(cib, out, 0o644))
		cmd := exec.Command("ip", "netns", "exec", boothNS[i], "env", "CIB_file="+cib, "boothd", "daemon", "-S", "-c", conf)
		if geo[i] {
			cmd = exec.Command("ip", "netns", "exec", boothNS[i], "env", "CIB_file="+cib, filepath.Join(*bin, "geoboothd"), "-booth-config", conf)
		}
		log, _ := os.Create(filepath.Join(dir, boothNS[i]+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		must(cmd.Start())
		procs[i] = cmd
	}
	for i := range boothNS {
		start(i)
	}
	leader := func(from int) string {
		out, _ := exec.Command("ip", "netns", "exec", boothNS[from], "booth", "list", "-c", conf).CombinedOutput()
		s := string(out)
		if i := strings.Index(s, "leader: "); i >= 0 {
			rest := s[i+8:]
			if j := strings.IndexAny(rest, ", \n"); j >= 0 {
				return rest[:j]
			}
			return rest
		}
		return ""
	}
	waitFor := func(from int, want string, limit time.Duration) (time.Duration, error) {
		t0 := time.Now()
		for time.Since(t0) < limit {
			if leader(from) == want {
				return time.Since(t0), nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return 0, fmt.Errorf("booth: %s not leader after %v (seen from %s: %q)", want, limit, boothNS[from], leader(from))
	}
	time.Sleep(time.Second)
	sh("ip", "netns", "exec", boothNS[0], "booth", "grant", "-c", conf, "-s", boothAddr(0), "web")
	if _, err := waitFor(1, boothAddr(0), 10*time.Second); err != nil {
		fail(err)
	}
	owner := 0
	acquired := time.Now()
	var times []time.Duration
	for r := 0; r < *runs; r++ {
		time.Sleep(time.Until(acquired.Add(offset[r])))
		other := 1 - owner
		procs[owner].Process.Signal(syscall.SIGKILL)
		procs[owner].Wait()
		d, err := waitFor(other, boothAddr(other), 60*time.Second)
		if err != nil {
			fail(err)
		}
		acquired = time.Now()
		times = append(times, d)
		fmt.Fprintf(os.Stderr, "Booth run %d (geoboothd at %v): %v\n", r+1, geo, d.Round(10*time.Millisecond))
		start(owner)
		// The restarted site learns the leader before it is killed in turn.
		if _, err := waitFor(owner, boothAddr(other), 20*time.Second); err != nil {
			fail(err)
		}
		owner = other
	}
	for _, p := range procs {
		p.Process.Signal(syscall.SIGKILL)
		p.Wait()
	}
	return times
}

// geobooth.

// member is a geoboothd with its serf and DNS addresses.
type member struct {
	bk.Member
	serf, dnsLn string
}

func measureGeobooth(dir string) ([]time.Duration, []time.Duration) {
	must(os.MkdirAll(dir, 0o700))
	ctl := filepath.Join(*bin, "ticketctl")
	bk.Keys(ctl, dir, true)
	ms := []*member{{Member: bk.Member{Name: "east", Role: "site"}}, {Member: bk.Member{Name: "west", Role: "site"}}, {Member: bk.Member{Name: "arbitrator", Role: "arbitrator"}}}
	var cl strings.Builder
	cl.WriteString("name = \"bench\"\n")
	for _, m := range ms {
		m.Peer, m.serf, m.API, m.dnsLn = bk.FreeAddr(), bk.FreeAddr(), bk.FreeAddr(), bk.FreeAddr()
		fmt.Fprintf(&cl, "\n[[members]]\nname = %q\nrole = %q\naddress = %q\nserf = %q\napi = %q\n", m.Name, m.Role, m.Peer, m.serf, m.API)
	}
	fmt.Fprintf(&cl, "\n[defaults]\ntimeout = \"1s\"\nretries = 3\n\n[tickets.web]\nexpire = %q\nrenewal_freq = \"5s\"\nacquire_after = %q\n", expire.String(), acquireAfter.String())
	must(os.WriteFile(filepath.Join(dir, "cluster.toml"), []byte(cl.String()), 0o600))
	must(os.WriteFile(filepath.Join(dir, "zone"), []byte("$ORIGIN example.test.\n@ 300 SOA ns1 hostmaster 1 60 30 86400 5\n@ 300 NS ns1\nns1 300 A 127.0.0.1\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "dns.toml"), []byte(`[[zones]]
origin = "example.test."
file = "zone"
[[zones.failover]]
name = "www"
type = "A"
ttl = "5s"
ticket = "web"
[zones.failover.sites.east]
targets = ["127.0.0.11"]
[zones.failover.sites.west]
targets = ["127.0.0.12"]
`), 0o600))
	for _, m := range ms {
		m.WriteConfig(dir, fmt.Sprintf("[serf]\nkeyring_file = \"serf.keyring\"\nprofile = \"local\"\n[dns]\nlisten = %q\nzones_file = \"dns.toml\"\n", m.dnsLn))
		m.Start(*bin, dir)
	}
	defer func() {
		for _, m := range ms {
			m.Kill()
		}
	}()
	owner := func(m *member) string {
		resp, err := http.Get("http://" + m.API + "/api/v1/tickets/web")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var t struct {
			Owner string `json:"owner"`
		}
		json.NewDecoder(resp.Body).Decode(&t)
		return t.Owner
	}
	answer := func(m *member) string {
		q := new(dns.Msg)
		q.SetQuestion("www.example.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, m.dnsLn)
		if err != nil || len(r.Answer) == 0 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	for _, m := range ms {
		bk.WaitUntil(func() bool { _, err := http.Get("http://" + m.API + "/healthz"); return err == nil }, 10*time.Second, m.Name+" up")
	}
	sh(ctl, "-config", filepath.Join(dir, "east.toml"), "grant", "-s", "east", "web")
	owned := 0
	acquired := time.Now()
	target := map[int]string{0: "127.0.0.11", 1: "127.0.0.12"}
	var times, dnsTimes []time.Duration
	for r := 0; r < *runs; r++ {
		time.Sleep(time.Until(acquired.Add(offset[r])))
		other := 1 - owned
		killed := time.Now()
		ms[owned].Kill()
		var got, gotDNS time.Duration
		for got == 0 || gotDNS == 0 {
			if time.Since(killed) > time.Minute {
				fail(fmt.Errorf("geobooth: %s not owner a minute after the kill", ms[other].Name))
			}
			if got == 0 && owner(ms[other]) == ms[other].Name {
				got = time.Since(killed)
				acquired = time.Now()
			}
			if gotDNS == 0 && answer(ms[2]) == target[other] && answer(ms[other]) == target[other] {
				gotDNS = time.Since(killed)
			}
			time.Sleep(50 * time.Millisecond)
		}
		times, dnsTimes = append(times, got), append(dnsTimes, gotDNS)
		fmt.Fprintf(os.Stderr, "geobooth run %d: %v (DNS %v)\n", r+1, got.Round(10*time.Millisecond), gotDNS.Round(10*time.Millisecond))
		ms[owned].Start(*bin, dir)
		m := ms[owned]
		bk.WaitUntil(func() bool { return owner(m) == ms[other].Name }, 20*time.Second, m.Name+" follows")
		owned = other
	}
	return times, dnsTimes
}

func median(xs []time.Duration) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minD(xs []time.Duration) time.Duration {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxD(xs []time.Duration) time.Duration {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func round(xs []time.Duration) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%.1fs", x.Seconds())
	}
	return out
}

var (
	must = bk.Must
	fail = bk.Fail
	sh   = bk.Run
)
