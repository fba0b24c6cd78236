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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

var (
	bin     = flag.String("bin", "bin", "folder with geoboothd and ticketctl")
	tickets = flag.Int("tickets", 10000, "automatic tickets")
	measure = flag.Duration("measure", 30*time.Second, "how long CPU, memory and renewals are measured")
)

type member struct {
	name, role, peer, api string
	cmd                   *exec.Cmd
}

func main() {
	flag.Parse()
	dir, err := os.MkdirTemp("", "geobooth-bench-scale-")
	must(err)
	defer os.RemoveAll(dir)
	ctl := filepath.Join(*bin, "ticketctl")
	for _, a := range [][]string{{"keygen", filepath.Join(dir, "auth.key")}, {"keygen", "-token", filepath.Join(dir, "api.token")}} {
		sh(ctl, a...)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "api.token"))
	token := strings.TrimSpace(string(tok))
	ms := []*member{{name: "site1", role: "site"}, {name: "site2", role: "site"}, {name: "site3", role: "site"}, {name: "arb1", role: "arbitrator"}, {name: "arb2", role: "arbitrator"}}
	var cl strings.Builder
	cl.WriteString("name = \"scale\"\n")
	for _, m := range ms {
		m.peer, m.api = addr(), addr()
		fmt.Fprintf(&cl, "\n[[members]]\nname = %q\nrole = %q\naddress = %q\napi = %q\n", m.name, m.role, m.peer, m.api)
	}
	cl.WriteString("\n[defaults]\nexpire = \"8s\"\nrenewal_freq = \"2s\"\ntimeout = \"300ms\"\nretries = 3\nacquire_after = \"1s\"\n")
	for i := 0; i < *tickets; i++ {
		fmt.Fprintf(&cl, "\n[tickets.t%d]\n", i)
	}
	must(os.WriteFile(filepath.Join(dir, "cluster.toml"), []byte(cl.String()), 0o600))
	for _, m := range ms {
		cfg := fmt.Sprintf("local = %q\ncluster_file = \"cluster.toml\"\nauth_key_file = \"auth.key\"\nstate_dir = \"state/%s\"\n[api]\nlisten = %q\ntoken_file = \"api.token\"\n[log]\nlevel = \"warn\"\n", m.name, m.name, m.api)
		if m.role == "site" {
			cfg += "[pacemaker]\ndriver = \"none\"\n"
		}
		must(os.WriteFile(filepath.Join(dir, m.name+".toml"), []byte(cfg), 0o600))
	}
	start := func(m *member) {
		cmd := exec.Command(filepath.Join(*bin, "geoboothd"), "-config", filepath.Join(dir, m.name+".toml"))
		log, _ := os.OpenFile(filepath.Join(dir, m.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		cmd.Stdout, cmd.Stderr = log, log
		must(cmd.Start())
		m.cmd = cmd
	}
	for _, m := range ms {
		start(m)
	}
	defer func() {
		for _, m := range ms {
			m.cmd.Process.Signal(syscall.SIGKILL)
			m.cmd.Wait()
		}
	}()
	for _, m := range ms {
		waitUntil(func() bool { _, err := http.Get("http://" + m.api + "/healthz"); return err == nil }, 60*time.Second, m.name+" up")
	}
	// Grant ticket i to site i%3, through that site's API, without waiting.
	t0 := time.Now()
	for i := 0; i < *tickets; i++ {
		site := ms[i%3]
		body := strings.NewReader(fmt.Sprintf(`{"site":%q}`, site.name))
		req, _ := http.NewRequest(http.MethodPost, "http://"+site.api+"/api/v1/tickets/t"+strconv.Itoa(i)+"/grant", body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		must(err)
		resp.Body.Close()
	}
	held := func(m *member) map[string]string {
		resp, err := http.Get("http://" + m.api + "/api/v1/tickets")
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
	waitUntil(func() bool {
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
		cpu0[m.name] = cpuSeconds(m.cmd.Process.Pid)
	}
	ren0 := renewals(ms[:3])
	time.Sleep(*measure)
	ren1 := renewals(ms[:3])
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Printf("%d automatic tickets, renewal every 2 s (expire 8 s), 5 members on loopback; all granted in %v\n", *tickets, granted.Round(100*time.Millisecond))
	fmt.Fprintln(tw, "member\tCPU (share of one core)\tresident memory")
	worst := 0.0
	for _, m := range ms {
		c := (cpuSeconds(m.cmd.Process.Pid) - cpu0[m.name]) / measure.Seconds()
		worst = max(worst, c)
		fmt.Fprintf(tw, "%s\t%.1f%%\t%.0f MiB\n", m.name, 100*c, rssMiB(m.cmd.Process.Pid))
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
	ms[0].cmd.Process.Signal(syscall.SIGKILL)
	ms[0].cmd.Wait()
	var firstAll time.Duration
	waitUntil(func() bool {
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
	start(ms[0])
}

func renewals(ms []*member) float64 {
	total := 0.0
	for _, m := range ms {
		resp, err := http.Get("http://" + m.api + "/metrics")
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

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ 100)
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

func addr() string {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			u.Close()
			return fmt.Sprintf("127.0.0.1:%d", p)
		}
	}
}

func waitUntil(f func() bool, limit time.Duration, what string, detail ...func() string) {
	t0 := time.Now()
	for !f() {
		if time.Since(t0) > limit {
			msg := ""
			for _, d := range detail {
				msg += ": " + d()
			}
			fail(fmt.Errorf("timed out waiting for %s%s", what, msg))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sh(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		fail(fmt.Errorf("%s %v: %v\n%s", name, args, err, out))
	}
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/scale:", err)
	os.Exit(1)
}
