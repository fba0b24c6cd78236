// Command dns measures geobooth's DNS server against NSD and Knot on the
// same machine, in the same run: the same zone (one failover name and
// 1,000 static names) served by each, loaded by dnsperf over loopback with
// the same query file. First each server is pinned to one core with one
// worker and dnsperf to the other core; then everything runs unpinned with
// two workers. Rounds are interleaved (a server at a time, in turn) and the
// medians reported, with geobooth's ratio to the best of the two, and
// the same zone signed online (DNSSEC, asked with DO) against unsigned.
//
// Each server's CPU time during the run is read from /proc as well. On
// this 2-core machine dnsperf on its one core is often the limit, and a
// server then answers all it is sent without using its whole core: the
// queries per CPU-second (QPS over the server's share of a core) is what
// the server could answer on one core of its own, and its ratio compares
// the servers' cost per query where QPS only compares the client's.
//
//	go run ./bench/dns [-secs 10] [-rounds 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/geobooth/geobooth/dnsfail/dnskey"

	bk "github.com/geobooth/geobooth/bench/internal/benchkit"
	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/kit/confkit"
)

const hosts = 1000

func main() {
	secs := flag.Int("secs", 10, "seconds per dnsperf run")
	rounds := flag.Int("rounds", 3, "interleaved rounds per setting (the median is reported)")
	serve := flag.String("serve", "", "internal: serve the zone in DIR on -listen (geobooth's DNS server)")
	listen := flag.String("listen", "", "internal: address for -serve")
	signed := flag.Bool("signed", false, "internal: with -serve, sign the zone (DNSSEC)")
	flag.Parse()
	bk.Name = "bench/dns"
	if *serve != "" {
		serveGeobooth(*serve, *listen, *signed)
		return
	}
	for _, tool := range []string{"dnsperf", "nsd", "knotd", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail(fmt.Errorf("%s not found: apt-get install dnsperf nsd knot util-linux", tool))
		}
	}
	dir, err := os.MkdirTemp("", "geobooth-bench-dns-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	writeZone(dir)
	self, _ := os.Executable()
	type result struct{ qps, lat, cpu []float64 }
	settings := []struct {
		name    string
		workers int
		pin     bool
	}{{"1 core (server on CPU 1, dnsperf on CPU 0)", 1, true}, {"2 cores, unpinned, 2 workers", 2, false}}
	if runtime.NumCPU() < 2 {
		fail(fmt.Errorf("needs at least 2 CPUs"))
	}
	// geobooth signed: the same zone signed online, asked with DO (its
	// target: >= 0.9 x geobooth unsigned).
	servers := []string{"NSD", "Knot", "geobooth", "geobooth signed"}
	res := map[string]map[string]*result{}
	for _, st := range settings {
		res[st.name] = map[string]*result{}
		for _, srv := range servers {
			res[st.name][srv] = &result{}
		}
		for r := 0; r < *rounds; r++ {
			for _, srv := range servers {
				port := bk.FreePort()
				addr := fmt.Sprintf("127.0.0.1:%d", port)
				var cmd *exec.Cmd
				switch srv {
				case "NSD":
					cmd = nsd(dir, port, st.workers)
				case "Knot":
					cmd = knot(dir, port, st.workers)
				default:
					cmd = exec.Command(self, "-serve", dir, "-listen", addr, fmt.Sprintf("-signed=%v", srv == "geobooth signed"))
					cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", st.workers))
				}
				if st.pin {
					cmd = exec.Command("taskset", append([]string{"-c", "1", cmd.Path}, cmd.Args[1:]...)...)
					cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", st.workers))
				}
				cmd.Dir = dir
				cmd.Stdout, cmd.Stderr = nil, nil
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := cmd.Start(); err != nil {
					fail(fmt.Errorf("start %s: %w", srv, err))
				}
				if err := waitAnswer(addr, 10*time.Second); err != nil {
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					cmd.Wait()
					fail(fmt.Errorf("%s does not answer: %w", srv, err))
				}
				c0, t0 := bk.GroupCPUSeconds(cmd.Process.Pid), time.Now()
				qps, lat := dnsperf(addr, filepath.Join(dir, "queries.txt"), *secs, st.pin, srv == "geobooth signed")
				cpu := (bk.GroupCPUSeconds(cmd.Process.Pid) - c0) / time.Since(t0).Seconds()
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				cmd.Wait()
				r0 := res[st.name][srv]
				r0.qps, r0.lat, r0.cpu = append(r0.qps, qps), append(r0.lat, lat), append(r0.cpu, cpu)
				fmt.Fprintf(os.Stderr, "%s, round %d: %s %.0f QPS, %.2f ms, server CPU %.0f%%\n", st.name, r+1, srv, qps, lat*1000, cpu*100)
			}
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("DNS queries per second, %d-second dnsperf runs, %d interleaved rounds, medians (%s, %d CPUs)\n", *secs, *rounds, host, runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "setting\tserver\tQPS\tavg latency\tserver CPU\tqueries per CPU-second\truns (QPS)")
	for _, st := range settings {
		best, bestPerCPU := 0.0, 0.0
		for _, srv := range servers[:2] {
			best = max(best, median(res[st.name][srv].qps))
			bestPerCPU = max(bestPerCPU, median(perCPU(res[st.name][srv].qps, res[st.name][srv].cpu)))
		}
		for _, srv := range servers {
			r := res[st.name][srv]
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f ms\t%.0f%%\t%.0f\t%v\n", st.name, srv, median(r.qps), median(r.lat)*1000,
				median(r.cpu)*100, median(perCPU(r.qps, r.cpu)), ints(r.qps))
		}
		g, gs := res[st.name]["geobooth"], res[st.name]["geobooth signed"]
		fmt.Fprintf(tw, "%s\tgeobooth / best of NSD and Knot\t%.2f\t\t\t%.2f\t(target >= 1.00 on one core)\n", st.name,
			median(g.qps)/best, median(perCPU(g.qps, g.cpu))/bestPerCPU)
		fmt.Fprintf(tw, "%s\tgeobooth signed / geobooth\t%.2f\t\t\t%.2f\t(target >= 0.90)\n", st.name,
			median(gs.qps)/median(g.qps), median(perCPU(gs.qps, gs.cpu))/median(perCPU(g.qps, g.cpu)))
	}
	tw.Flush()
}

func writeZone(dir string) {
	var z strings.Builder
	z.WriteString("$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 60 30 86400 5\n@ NS ns1\nns1 A 127.0.0.1\n")
	var q strings.Builder
	for i := 0; i < hosts; i++ {
		fmt.Fprintf(&z, "host%d A 10.%d.%d.%d\n", i, i>>16&255, i>>8&255, i&255)
		fmt.Fprintf(&q, "host%d.example.test A\n", i)
		if i%10 == 0 {
			q.WriteString("www.example.test A\n")
		}
	}
	// NSD and Knot serve www as a plain record with the same answer.
	static := z.String() + "www 5 A 127.0.0.11\n"
	must(os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(static), 0o644))
	must(os.WriteFile(filepath.Join(dir, "geobooth.zone"), []byte(z.String()), 0o644))
	must(os.WriteFile(filepath.Join(dir, "queries.txt"), []byte(q.String()), 0o644))
}

func nsd(dir string, port, workers int) *exec.Cmd {
	d := filepath.Join(dir, fmt.Sprintf("nsd-%d", port))
	must(os.MkdirAll(d, 0o755))
	conf := fmt.Sprintf(`server:
    ip-address: 127.0.0.1@%d
    port: %d
    server-count: %d
    username: ""
    chroot: ""
    zonesdir: "%s"
    database: ""
    pidfile: "%s/nsd.pid"
    xfrdfile: "%s/xfrd.state"
    zonelistfile: "%s/zone.list"
    logfile: "%s/nsd.log"
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "example.test"
    zonefile: "example.test.zone"
`, port, port, workers, dir, d, d, d, d)
	must(os.WriteFile(filepath.Join(d, "nsd.conf"), []byte(conf), 0o644))
	return exec.Command("nsd", "-d", "-c", filepath.Join(d, "nsd.conf"))
}

func knot(dir string, port, workers int) *exec.Cmd {
	d := filepath.Join(dir, fmt.Sprintf("knot-%d", port))
	must(os.MkdirAll(filepath.Join(d, "db"), 0o755))
	conf := fmt.Sprintf(`server:
    listen: 127.0.0.1@%d
    rundir: %s
    user: root:root
    udp-workers: %d
    tcp-workers: 1
    background-workers: 1
database:
    storage: %s/db
log:
  - target: stderr
    any: error
template:
  - id: default
    storage: %s
zone:
  - domain: example.test
    file: example.test.zone
`, port, d, workers, d, dir)
	must(os.WriteFile(filepath.Join(d, "knot.conf"), []byte(conf), 0o644))
	return exec.Command("knotd", "-c", filepath.Join(d, "knot.conf"))
}

var (
	qpsRe = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	latRe = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
)

func dnsperf(addr, queries string, secs int, pin, do bool) (float64, float64) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-s", host, "-p", port, "-d", queries, "-l", strconv.Itoa(secs), "-c", "4", "-T", "1", "-q", "200"}
	if do {
		args = append(args, "-D") // the DO bit: signed answers
	}
	var cmd *exec.Cmd
	if pin {
		cmd = exec.Command("taskset", append([]string{"-c", "0", "dnsperf"}, args...)...)
	} else {
		cmd = exec.Command("dnsperf", args...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail(fmt.Errorf("dnsperf: %v\n%s", err, out))
	}
	q, l := qpsRe.FindSubmatch(out), latRe.FindSubmatch(out)
	if q == nil || l == nil {
		fail(fmt.Errorf("dnsperf output not understood:\n%s", out))
	}
	qps, _ := strconv.ParseFloat(string(q[1]), 64)
	lat, _ := strconv.ParseFloat(string(l[1]), 64)
	return qps, lat
}

func waitAnswer(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("dig", "@"+strings.Split(addr, ":")[0], "-p", strings.Split(addr, ":")[1], "+short", "+tries=1", "+time=1", "www.example.test").Output()
		if err == nil && strings.TrimSpace(string(out)) == "127.0.0.11" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer for www.example.test (%v %q)", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// perCPU divides each run's QPS by the server's CPU share in that run.
func perCPU(qps, cpu []float64) []float64 {
	out := make([]float64, len(qps))
	for i := range qps {
		if cpu[i] > 0 {
			out[i] = qps[i] / cpu[i]
		}
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func ints(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

// serveGeobooth runs geobooth's DNS server on the zone, with www following
// a ticket that east holds (a lease renewed forever); signed, with a key
// of its own.
func serveGeobooth(dir, listen string, signed bool) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	www := dnsfail.DefaultFailover()
	www.Name, www.Type, www.TTL, www.Ticket = "www", "A", confkit.Duration(5*time.Second), "web"
	www.Sites = map[string]dnsfail.SiteTargets{"east": {Targets: []string{"127.0.0.11"}}, "west": {Targets: []string{"127.0.0.12"}}}
	zc := dnsfail.ZoneConfig{Origin: "example.test.", File: filepath.Join(dir, "geobooth.zone"), Failover: []dnsfail.FailoverConfig{www}}
	if signed {
		key, err := dnskey.New("example.test.")
		if err != nil {
			fail(err)
		}
		file := filepath.Join(dir, "key-"+strings.ReplaceAll(listen, ":", "-"))
		must(os.WriteFile(file, []byte(key), 0o600))
		zc.DNSSECKeys = []string{file}
	}
	cfg, err := dnsfail.Prepare(listen, []dnsfail.ZoneConfig{zc}, []string{"east", "west"})
	if err != nil {
		fail(err)
	}
	s, err := dnsfail.New(dnsfail.Options{Config: cfg, Self: "east", StateDir: filepath.Join(dir, "state-"+strings.ReplaceAll(listen, ":", "-")),
		Owners: func(string) (string, time.Time) { return "east", time.Now().Add(time.Hour) }})
	if err != nil {
		fail(err)
	}
	if err := s.Run(ctx); err != nil {
		fail(err)
	}
}

var (
	must = bk.Must
	fail = bk.Fail
)
