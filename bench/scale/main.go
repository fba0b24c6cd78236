// Command scale runs one geobooth cluster of five members (three sites,
// two arbitrators) on loopback with many automatic tickets renewed every
// 2 s, spread over the sites, and reports per member the CPU (share of one
// core) and resident memory while they renew, the renewal success rate,
// and how long it takes until every ticket of a killed site is held by
// another site. It prints one table.
//
//	bench/scale/run [-tickets 10000] [-measure 30s]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	bk "github.com/geobooth/geobooth/bench/internal/benchkit"
)

var (
	bin     = flag.String("bin", "bin", "folder with geoboothd and ticketctl")
	tickets = flag.Int("tickets", 10000, "automatic tickets")
	measure = flag.Duration("measure", 30*time.Second, "how long CPU, memory and renewals are measured")
	procs   = flag.Int("gomaxprocs", 0, "GOMAXPROCS of each daemon (0: Go's default), to imitate a slower machine")
	nice    = flag.Int("nice", 0, "niceness of each daemon")
)

func main() {
	flag.Parse()
	bk.Name, bk.Every = "bench/scale", 200*time.Millisecond
	if *procs > 0 {
		bk.Env = append(bk.Env, fmt.Sprintf("GOMAXPROCS=%d", *procs))
	}
	bk.Nice = *nice
	dir, err := os.MkdirTemp("", "geobooth-bench-scale-")
	bk.Must(err)
	defer os.RemoveAll(dir)
	bk.Keys(filepath.Join(*bin, "ticketctl"), dir, false)
	tok, _ := os.ReadFile(filepath.Join(dir, "api.token"))
	token := strings.TrimSpace(string(tok))
	ms := []*bk.Member{{Name: "site1", Role: "site"}, {Name: "site2", Role: "site"}, {Name: "site3", Role: "site"}, {Name: "arb1", Role: "arbitrator"}, {Name: "arb2", Role: "arbitrator"}}
	var cl strings.Builder
	cl.WriteString("name = \"scale\"\n")
	for _, m := range ms {
		m.Peer, m.API = bk.FreeAddr(), bk.FreeAddr()
		fmt.Fprintf(&cl, "\n[[members]]\nname = %q\nrole = %q\naddress = %q\napi = %q\n", m.Name, m.Role, m.Peer, m.API)
	}
	cl.WriteString("\n[defaults]\nexpire = \"8s\"\nrenewal_freq = \"2s\"\ntimeout = \"300ms\"\nretries = 3\nacquire_after = \"1s\"\n")
	for i := 0; i < *tickets; i++ {
		fmt.Fprintf(&cl, "\n[tickets.t%d]\n", i)
	}
	bk.Must(os.WriteFile(filepath.Join(dir, "cluster.toml"), []byte(cl.String()), 0o600))
	for _, m := range ms {
		m.WriteConfig(dir, "[log]\nlevel = \"warn\"\n")
		m.Start(*bin, dir)
	}
	defer func() {
		for _, m := range ms {
			m.Kill()
		}
	}()
	for _, m := range ms {
		bk.WaitUntil(func() bool { _, err := http.Get("http://" + m.API + "/healthz"); return err == nil }, 60*time.Second, m.Name+" up")
	}
	// Grant ticket i to site i%3, through that site's API, without waiting.
	t0 := time.Now()
	for i := 0; i < *tickets; i++ {
		site := ms[i%3]
		body := strings.NewReader(fmt.Sprintf(`{"site":%q}`, site.Name))
		req, _ := http.NewRequest(http.MethodPost, "http://"+site.API+"/api/v1/tickets/t"+strconv.Itoa(i)+"/grant", body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		bk.Must(err)
		resp.Body.Close()
	}
	held := func(m *bk.Member) map[string]string {
		resp, err := http.Get("http://" + m.API + "/api/v1/tickets")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var ts []struct {
			Name  string `json:"name"`
			Owner string `json:"owner"`
		}
		json.NewDecoder(resp.Body).Decode(&ts)
		out := map[string]string{}
		for _, t := range ts {
			out[t.Name] = t.Owner
		}
		return out
	}
	bk.WaitUntil(func() bool {
		n := 0
		for _, o := range held(ms[3]) {
			if o != "" {
				n++
			}
		}
		return n == *tickets
	}, 5*time.Minute, "every ticket granted")
	granted := time.Since(t0)

	// Steady state: CPU, memory, renewals.
	cpu0 := map[string]float64{}
	for _, m := range ms {
		cpu0[m.Name] = bk.CPUSeconds(m.Cmd.Process.Pid)
	}
	ren0 := renewals(ms[:3])
	time.Sleep(*measure)
	ren1 := renewals(ms[:3])
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Printf("%d automatic tickets, renewal every 2 s (expire 8 s), 5 members on loopback (GOMAXPROCS %d, nice %d); all granted in %v\n",
		*tickets, *procs, *nice, granted.Round(100*time.Millisecond))
	fmt.Fprintln(tw, "member\tCPU (share of one core)\tresident memory")
	worst := 0.0
	for _, m := range ms {
		c := (bk.CPUSeconds(m.Cmd.Process.Pid) - cpu0[m.Name]) / measure.Seconds()
		worst = max(worst, c)
		fmt.Fprintf(tw, "%s\t%.1f%%\t%.0f MiB\n", m.Name, 100*c, rssMiB(m.Cmd.Process.Pid))
	}
	tw.Flush()
	expected := float64(*tickets) * measure.Seconds() / 2
	fmt.Printf("renewals: %.0f in %v, %.1f%% of one per ticket every 2 s\n", ren1-ren0, *measure, 100*(ren1-ren0)/expected)
	fmt.Printf("worst member CPU %.1f%% of one core (target < 25%%)\n", 100*worst)

	// Kill site1: every ticket it held must move.
	before := held(ms[3])
	var its []string
	for t, o := range before {
		if o == "site1" {
			its = append(its, t)
		}
	}
	killed := time.Now()
	ms[0].Kill()
	var firstAll time.Duration
	bk.WaitUntil(func() bool {
		now := held(ms[3])
		for _, t := range its {
			if o := now[t]; o == "" || o == "site1" {
				return false
			}
		}
		firstAll = time.Since(killed)
		return true
	}, 3*time.Minute, "site1's tickets moved", func() string {
		now := held(ms[3])
		left := 0
		for _, t := range its {
			if o := now[t]; o == "" || o == "site1" {
				left++
			}
		}
		return fmt.Sprintf("%d of %d still without a live owner", left, len(its))
	})
	fmt.Printf("site1 killed holding %d tickets: all held by another site after %.1fs (expire 8 s + acquire_after 1 s)\n", len(its), firstAll.Seconds())
}

func renewals(ms []*bk.Member) float64 {
	total := 0.0
	for _, m := range ms {
		resp, err := http.Get("http://" + m.API + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "geobooth_ticket_renewals_total{") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += v
			}
		}
		resp.Body.Close()
	}
	return total
}

func rssMiB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
