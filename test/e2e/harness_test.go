// Package e2e runs the geo cluster of examples/geo as it is deployed:
// east, west and the arbitrator each in its own network namespace with its
// own address, a client in a fourth, joined by veth links on a bridge.
// Every site drives its own CIB file through the real crm_ticket, and the
// scheduler (crm_simulate) decides after every change whether the site's
// service runs. Partitions are nft drop rules inside the namespaces. The
// tests need root; everything they create is removed at the end, also when
// a test fails.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/kit/testenv"
	"github.com/geobooth/geobooth/replication"
)

// The addresses of examples/geo, and the test's own on the bridge (the
// operators' management network).
var addr = map[string]string{
	"east": "203.0.113.11", "west": "203.0.113.12", "arbitrator": "203.0.113.13", "client": "203.0.113.100",
}

const (
	mgmtAddr = "203.0.113.254"
	bridge   = "gbe2e0"
	nftTable = "geobooth_e2e"
	// guardInterval is the ticket-guard's monitor interval at each site:
	// a site whose geoboothd died has its service stopped by then.
	guardInterval = 2 * time.Second
)

var hosts = []string{"east", "west", "arbitrator", "client"}

func ns(host string) string { return "geobooth-" + host }

// TestMain doubles as the sites' crm_ticket: the daemons find a wrapper
// first on their PATH that runs this binary with GEOBOOTH_E2E_SITE set.
func TestMain(m *testing.M) {
	if site := os.Getenv("GEOBOOTH_E2E_SITE"); site != "" {
		os.Exit(crmTicket(site))
	}
	os.Exit(m.Run())
}

// event is one change a site's crm_ticket made to its CIB, with the
// scheduler's answer after it.
type event struct {
	Site  string        `json:"site"`
	Op    string        `json:"op"`
	Args  []string      `json:"args"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Code  int           `json:"rc"`
	// Svc is "running" or "stopped" after the change.
	Svc string `json:"svc"`
}

// crmTicket runs the real crm_ticket for a daemon. After a call that
// changes the ticket it lets the scheduler act on the CIB (crm_simulate
// -S -X: one transition written back) and logs the change, timed on the
// monotonic clock, with where the service runs now.
func crmTicket(site string) int {
	start := testenv.Monotonic()
	cmd := exec.Command(os.Getenv("GEOBOOTH_E2E_CRM_TICKET"), os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	op := ""
	for _, a := range os.Args[1:] {
		switch a {
		case "-g", "--grant":
			op = "grant"
		case "-r", "--revoke":
			op = "revoke"
		case "-s", "--standby":
			op = "standby"
		case "-a", "--activate":
			op = "activate"
		}
	}
	if op == "" {
		return code
	}
	ev := event{Site: site, Op: op, Args: os.Args[1:], Start: start, Code: code, Svc: "stopped"}
	cib := os.Getenv("CIB_file")
	exec.Command("crm_simulate", "-x", cib, "-S", "-X", "-Q").Run()
	where, _ := exec.Command("crm_resource", "--locate", "-r", "svc").CombinedOutput()
	if bytes.Contains(where, []byte("is running on")) {
		ev.Svc = "running"
	}
	ev.End = testenv.Monotonic()
	line, _ := json.Marshal(ev)
	f, err := os.OpenFile(os.Getenv("GEOBOOTH_E2E_EVENTS"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		f.Write(append(line, '\n'))
		f.Close()
	}
	return code
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command in a host's namespace and returns its output.
func inNS(host string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns(host)}, args...)...).CombinedOutput()
	return string(out), err
}

// network is the four namespaces on the bridge.
type network struct{ t testing.TB }

func teardown() {
	for _, h := range hosts {
		if out, err := exec.Command("ip", "netns", "pids", ns(h)).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				exec.Command("kill", "-9", p).Run()
			}
		}
		exec.Command("ip", "netns", "del", ns(h)).Run()
		// A namespace is destroyed only once nothing holds it; deleting
		// our end of its veth frees the name at once.
		exec.Command("ip", "link", "del", "gbe-"+h).Run()
	}
	exec.Command("ip", "link", "del", bridge).Run()
}

// setupNetwork creates the namespaces (removing any left by an earlier
// run that was killed); they are removed when the test ends.
func setupNetwork(t *testing.T) *network {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the end-to-end tests need root (network namespaces): CI must run them as root")
		}
		t.Skip("the end-to-end tests need root (network namespaces, nft): run go test as root")
	}
	for _, tool := range [][2]string{{"ip", "iproute2"}, {"nft", "nftables"}, {"crm_ticket", "pacemaker-cli-utils"},
		{"crm_simulate", "pacemaker-cli-utils"}, {"dig", "bind9-dnsutils"}, {"qemu-io", "qemu-utils"}, {"qemu-img", "qemu-utils"}} {
		tc.RequireTool(t, tool[0], tool[1])
	}
	teardown()
	// The example's addresses must not be this machine's own network.
	out, _ := exec.Command("ip", "-4", "route", "show", "match", addr["east"]).Output()
	for _, r := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if r != "" && !strings.HasPrefix(r, "default") {
			t.Fatalf("this machine has a route to %s already (%s): the example's network would clash with it", addr["east"], r)
		}
	}
	t.Cleanup(teardown)
	sh(t, "ip", "link", "add", bridge, "type", "bridge")
	sh(t, "ip", "addr", "add", mgmtAddr+"/24", "dev", bridge)
	sh(t, "ip", "link", "set", bridge, "up")
	for _, h := range hosts {
		sh(t, "ip", "netns", "add", ns(h))
		veth := "gbe-" + h
		sh(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns(h))
		sh(t, "ip", "link", "set", veth, "master", bridge, "up")
		sh(t, "ip", "netns", "exec", ns(h), "ip", "addr", "add", addr[h]+"/24", "dev", "eth0")
		sh(t, "ip", "netns", "exec", ns(h), "ip", "link", "set", "eth0", "up")
		sh(t, "ip", "netns", "exec", ns(h), "ip", "link", "set", "lo", "up")
	}
	return &network{t: t}
}

// isolate cuts host off from the others named (both directions), with
// nft drop rules inside host's namespace; no others heals host.
func (n *network) isolate(host string, from ...string) {
	n.t.Helper()
	exec.Command("ip", "netns", "exec", ns(host), "nft", "delete", "table", "inet", nftTable).Run()
	if len(from) == 0 {
		return
	}
	var set []string
	for _, f := range from {
		set = append(set, addr[f])
	}
	s := strings.Join(set, ", ")
	rules := fmt.Sprintf(`table inet %s {
	chain input { type filter hook input priority 0; policy accept; ip saddr { %s } drop; }
	chain output { type filter hook output priority 0; policy accept; ip daddr { %s } drop; }
}
`, nftTable, s, s)
	cmd := exec.Command("ip", "netns", "exec", ns(host), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft in %s: %v\n%s", host, err, out)
	}
}

// healAll removes every partition.
func (n *network) healAll() {
	for _, h := range hosts {
		n.isolate(h)
	}
}

// geo is one fresh deployment of examples/geo on the network: a folder
// per host (its /etc/geobooth) with the shared keys, a CIB file per site,
// a loop device per site for the volume.
type geo struct {
	*tc.Cluster
	t      *testing.T
	net    *network
	host   map[string]string
	cib    map[string]string
	dev    map[string]string
	events string

	synced bool // the initial sync was skipped

	mu     sync.Mutex
	killed map[string][]time.Duration
}

func newGeo(t *testing.T, n *network) *geo {
	t.Helper()
	bin := tc.Binaries(t)
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	top := filepath.Join(filepath.Dir(file), "..", "..")
	example := filepath.Join(top, "examples", "geo")
	secrets := filepath.Join(dir, "secrets")
	os.MkdirAll(secrets, 0o700)
	sh(t, filepath.Join(bin, "ticketctl"), "keygen", filepath.Join(secrets, "auth.key"))
	sh(t, filepath.Join(bin, "ticketctl"), "keygen", "-token", filepath.Join(secrets, "api.token"))
	sh(t, filepath.Join(bin, "ticketctl"), "keygen", "-serf", filepath.Join(secrets, "serf.keyring"))
	// The CA key stays out of the members' folders, as docs/security.md says.
	caDir := filepath.Join(dir, "ca")
	os.MkdirAll(caDir, 0o700)
	sh(t, filepath.Join(bin, "ticketctl"), "tls", "ca", "-dir", caDir)
	for _, name := range []string{"east", "west", "arbitrator"} {
		sh(t, filepath.Join(bin, "ticketctl"), "tls", "cert", "-dir", secrets, "-ca", filepath.Join(caDir, "ca.pem"),
			"-ca-key", filepath.Join(caDir, "ca-key.pem"), "-host", addr[name], name)
	}
	if b, err := os.ReadFile(filepath.Join(caDir, "ca.pem")); err != nil || os.WriteFile(filepath.Join(secrets, "ca.pem"), b, 0o644) != nil {
		t.Fatalf("copy the CA certificate: %v", err)
	}
	// The NBD client's folder, as qemu's tls-creds-x509 reads it.
	clientCreds = filepath.Join(dir, "client-tls")
	os.MkdirAll(clientCreds, 0o700)
	sh(t, filepath.Join(bin, "ticketctl"), "tls", "cert", "-dir", clientCreds, "-ca", filepath.Join(caDir, "ca.pem"),
		"-ca-key", filepath.Join(caDir, "ca-key.pem"), "-host", addr["client"], "client")
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clientCreds, "ca-cert.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(clientCreds, "client.pem"), filepath.Join(clientCreds, "client-cert.pem")); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	realCrm := tc.RequireTool(t, "crm_ticket", "pacemaker-cli-utils")
	wrapDir := filepath.Join(dir, "wrap")
	os.MkdirAll(wrapDir, 0o755)
	os.WriteFile(filepath.Join(wrapDir, "crm_ticket"), []byte(fmt.Sprintf("#!/bin/sh\nexec %q \"$@\"\n", self)), 0o755)
	cibSrc, err := os.ReadFile(filepath.Join(top, "pacemaker", "testdata", "stop.xml"))
	if err != nil {
		t.Fatal(err)
	}
	g := &geo{t: t, net: n, host: map[string]string{}, cib: map[string]string{}, dev: map[string]string{}, events: filepath.Join(dir, "events.jsonl"), killed: map[string][]time.Duration{}}
	var members []*tc.Member
	for _, name := range []string{"east", "west", "arbitrator"} {
		h := filepath.Join(dir, name)
		copyFiles(t, example, h)
		copyFiles(t, secrets, h)
		g.host[name] = h
		m := &tc.Member{Name: name, Role: "site", Config: filepath.Join(h, name+".toml"), API: addr[name] + ":7800",
			LogPath: filepath.Join(dir, name+".log"), Prefix: []string{"ip", "netns", "exec", ns(name)}}
		if name == "arbitrator" {
			m.Role = "arbitrator"
		} else {
			// The example's logical volume is a loop device here.
			g.dev[name] = testenv.LoopDevice(t, 64<<20)
			cfg, err := os.ReadFile(m.Config)
			if err != nil {
				t.Fatal(err)
			}
			cfg = bytes.Replace(cfg, []byte(`path = "/dev/vg0/web"`), []byte(fmt.Sprintf("path = %q", g.dev[name])), 1)
			if !bytes.Contains(cfg, []byte(g.dev[name])) {
				t.Fatalf("%s: the volume's path is not /dev/vg0/web", m.Config)
			}
			if err := os.WriteFile(m.Config, cfg, 0o600); err != nil {
				t.Fatal(err)
			}
			g.cib[name] = filepath.Join(dir, name+"-cib.xml")
			os.WriteFile(g.cib[name], cibSrc, 0o600)
			m.Env = []string{"CIB_file=" + g.cib[name], "PATH=" + wrapDir + ":" + os.Getenv("PATH"),
				"GEOBOOTH_E2E_SITE=" + name, "GEOBOOTH_E2E_EVENTS=" + g.events, "GEOBOOTH_E2E_CRM_TICKET=" + realCrm}
		}
		members = append(members, m)
	}
	g.Cluster = tc.Adopt(t, dir, members...)
	g.Cluster.CA = filepath.Join(secrets, "ca.pem")
	t.Cleanup(func() {
		if t.Failed() {
			g.DumpLogs()
			for _, e := range g.siteEvents() {
				t.Logf("CIB event %+v", e)
			}
		}
		n.healAll()
	})
	return g
}

func copyFiles(t testing.TB, from, to string) {
	t.Helper()
	os.MkdirAll(to, 0o700)
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// start starts every member and waits until each answers.
// start starts every member; the first time, the volumes' initial sync is
// skipped as examples/geo/README.md says for blank devices.
func (g *geo) start() {
	g.t.Helper()
	g.StartAll()
	if g.synced {
		return
	}
	g.synced = true
	// Both sites' replicas must be connected (and new) for the skip.
	tc.Eventually(g.t, 20*time.Second, func() error {
		out, errOut, code := g.Member("east").Ctl("repl", "skip-initial-sync", "data")
		if code != 0 {
			return fmt.Errorf("repl skip-initial-sync: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	for _, site := range []string{"east", "west"} {
		g.waitVolume(site, 10*time.Second, "UpToDate", func(st api.Volume) bool { return st.Disk == replication.UpToDate })
	}
}

// kill kills a member's daemon and notes when.
func (g *geo) kill(name string) time.Duration {
	at := testenv.Monotonic()
	g.Member(name).Kill()
	g.mu.Lock()
	g.killed[name] = append(g.killed[name], at)
	g.mu.Unlock()
	return at
}

// grant grants web to a site and waits until its volume is primary and in
// sync with the other site's.
func (g *geo) grant(site string) {
	g.t.Helper()
	// web is automatic: on a loaded machine the other site may take it
	// first, when the members' first lease window ends; then move it.
	if out, errOut, code := g.Member("arbitrator").Ctl("grant", "-s", site, "web"); code != 0 {
		if !strings.Contains(errOut, "instead") {
			g.t.Fatalf("grant web to %s: exit %d: %s%s", site, code, out, errOut)
		}
		g.t.Logf("%s: moving web to %s", strings.TrimSpace(errOut), site)
		if out, errOut, code := g.Member("arbitrator").Ctl("move", "web", site); code != 0 {
			g.t.Fatalf("move web to %s: exit %d: %s%s", site, code, out, errOut)
		}
	}
	g.waitVolume(site, 20*time.Second, "primary in sync", primaryInSync)
}

func primaryInSync(st api.Volume) bool {
	return st.Role == replication.Primary && len(st.Peers) == 1 && st.Peers[0].State == replication.InSync && st.Peers[0].LagBytes == 0
}

func (g *geo) volume(site string) (api.Volume, error) {
	var st api.Volume
	body, err := g.Member(site).Get("/api/v1/replication/data")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("replication status of %s: %v: %s", site, err, body)
	}
	return st, nil
}

func (g *geo) waitVolume(site string, timeout time.Duration, what string, ok func(api.Volume) bool) api.Volume {
	g.t.Helper()
	var st api.Volume
	tc.Eventually(g.t, timeout, func() error {
		var err error
		if st, err = g.volume(site); err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("%s's volume not %s: %+v", site, what, st)
		}
		return nil
	})
	return st
}

func (g *geo) ticket(name string) (api.Ticket, error) { return g.Member(name).Ticket("web") }

// waitHolder waits until site holds web in its own view, and returns the
// time from since until it did.
func (g *geo) waitHolder(site string, since time.Time, timeout time.Duration) time.Duration {
	g.t.Helper()
	tc.Eventually(g.t, timeout, func() error {
		tk, err := g.ticket(site)
		if err != nil {
			return err
		}
		if !tk.HeldLocally {
			return fmt.Errorf("%s does not hold web: %+v", site, tk)
		}
		return nil
	})
	return time.Since(since)
}

// dig asks a member's DNS server from the client's namespace; it returns
// the addresses answered ("" for no data).
func dig(server string) (string, error) {
	out, err := inNS("client", "dig", "+short", "+time=1", "+tries=2", "@"+addr[server], "www.example.test", "A")
	s := strings.TrimSpace(out)
	if err != nil || strings.HasPrefix(s, ";;") {
		return "", fmt.Errorf("dig @%s: %v: %s", server, err, s)
	}
	return s, nil
}

// waitDNS waits until every named member answers want from the client.
func (g *geo) waitDNS(want string, timeout time.Duration, members ...string) {
	g.t.Helper()
	tc.Eventually(g.t, timeout, func() error {
		for _, m := range members {
			got, err := dig(m)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s answers %q for www.example.test, want %q", m, got, want)
			}
		}
		return nil
	})
}

// cibState reads a site's ticket state from its CIB with crm_ticket.
func (g *geo) cibState(site string) string {
	var out []byte
	for i := 0; i < 20; i++ {
		cmd := exec.Command("crm_ticket", "-t", "web", "-q")
		cmd.Env = append(os.Environ(), "CIB_file="+g.cib[site])
		var err error
		if out, err = cmd.CombinedOutput(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return string(out)
}

// siteEvents reads every site's CIB changes so far, in time order.
func (g *geo) siteEvents() []event {
	f, err := os.Open(g.events)
	if err != nil {
		return nil
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			evs = append(evs, e)
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Start < evs[j].Start })
	return evs
}

// lastEvent is a site's latest CIB change (zero when none).
func (g *geo) lastEvent(site string) event {
	var last event
	for _, e := range g.siteEvents() {
		if e.Site == site {
			last = e
		}
	}
	return last
}

// waitService waits until a site's last CIB change left its service
// running (or stopped) and returns that change.
func (g *geo) waitService(site, state string, timeout time.Duration) event {
	g.t.Helper()
	var e event
	tc.Eventually(g.t, timeout, func() error {
		if e = g.lastEvent(site); e.Svc != state || e.Code != 0 {
			return fmt.Errorf("%s's service not %s after its last CIB change %+v", site, state, e)
		}
		return nil
	})
	return e
}

// interval is a span of time on the monotonic clock.
type interval struct {
	site       string
	start, end time.Duration
}

// serviceIntervals are the spans in which each site's service may have
// run: from the start of the CIB change that started it to the end of the
// one that stopped it. A site whose daemon was killed has its service
// stopped by the ticket-guard's monitor (guardInterval later); it stays
// stopped until its CIB starts it again.
func (g *geo) serviceIntervals(now time.Duration) []interval {
	g.mu.Lock()
	killed := map[string][]time.Duration{}
	for k, v := range g.killed {
		killed[k] = append([]time.Duration(nil), v...)
	}
	g.mu.Unlock()
	var out []interval
	open := map[string]*interval{}
	closeAt := func(site string, at time.Duration) {
		if iv := open[site]; iv != nil {
			iv.end = at
			out = append(out, *iv)
			open[site] = nil
		}
	}
	lastKill := map[string]time.Duration{}
	for _, e := range g.siteEvents() {
		for len(killed[e.Site]) > 0 && killed[e.Site][0] < e.Start {
			closeAt(e.Site, killed[e.Site][0]+guardInterval)
			lastKill[e.Site] = killed[e.Site][0]
			killed[e.Site] = killed[e.Site][1:]
		}
		// A crm_ticket the killed daemon had just started (SIGKILL lands
		// a moment after the harness notes the kill) runs on; the guard
		// stops the service by kill+guardInterval all the same.
		dying := false
		if k, ok := lastKill[e.Site]; ok && e.Start < k+guardInterval {
			dying = true
		}
		switch {
		case e.Svc == "running" && open[e.Site] == nil && !dying:
			open[e.Site] = &interval{site: e.Site, start: e.Start}
		case e.Svc == "stopped":
			closeAt(e.Site, e.End)
		}
	}
	for site, ks := range killed {
		if len(ks) > 0 {
			closeAt(site, ks[0]+guardInterval)
		}
	}
	for site := range open {
		closeAt(site, now)
	}
	return out
}

// overlaps lists the instants the service may have run at both sites.
func (g *geo) overlaps() []string {
	var out []string
	ivs := g.serviceIntervals(testenv.Monotonic())
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			if a.site != b.site && a.start < b.end && b.start < a.end {
				out = append(out, fmt.Sprintf("the service ran at %s [%v, %v] and at %s [%v, %v] at once", a.site, a.start, a.end, b.site, b.start, b.end))
			}
		}
	}
	return out
}

// checkOneService fails the test if the service may have run at both
// sites at any instant.
func (g *geo) checkOneService() {
	g.t.Helper()
	for _, o := range g.overlaps() {
		g.t.Error(o)
	}
}
