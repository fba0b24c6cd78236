package dnsfail

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/testenv"
)

const testZone = `$ORIGIN example.test.
$TTL 300
@       SOA   ns1.example.test. hostmaster.example.test. 7 60 30 86400 20
@       NS    ns1
ns1     A     127.0.0.1
@       MX    10 mail
mail    A     127.0.0.25
app     CNAME www
outside CNAME www.example.org.
loop1   CNAME loop2
loop2   CNAME loop1
dangling CNAME nothing
db.internal A 127.0.0.30
sub     NS    ns.sub
ns.sub  A     127.0.0.53
`

// bigZone adds an RRset too large for 1232 bytes (100 addresses).
func bigZone() string {
	var b strings.Builder
	b.WriteString(testZone)
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&b, "big A 10.0.0.%d\n", i)
	}
	return b.String()
}

// owners is a settable ticket view.
type owners struct {
	mu    sync.Mutex
	owner string
	end   time.Time
}

func (o *owners) set(owner string, end time.Time) {
	o.mu.Lock()
	o.owner, o.end = owner, end
	o.mu.Unlock()
}

func (o *owners) get(string) (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owner, o.end
}

func freePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t)
}

// testConfig is a zone with www following ticket web (east 127.0.0.11,
// west 127.0.0.12), checked with the given checks per site.
func testConfig(t testing.TB, zoneText string, checks map[string]string, tweak func(*ZoneConfig)) Config {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(zoneText), 0o644); err != nil {
		t.Fatal(err)
	}
	www := DefaultFailover()
	www.Name, www.Type, www.TTL, www.Ticket = "www", "A", confkit.Duration(30*time.Second), "web"
	www.Sites = map[string]SiteTargets{
		"east": {Targets: []string{"127.0.0.11"}, Check: checks["east"]},
		"west": {Targets: []string{"127.0.0.12"}, Check: checks["west"]},
	}
	www.Health.Interval, www.Health.Timeout = confkit.Duration(100*time.Millisecond), confkit.Duration(80*time.Millisecond)
	z := ZoneConfig{Origin: "example.test.", File: filepath.Join(dir, "example.test.zone"), AllowTransfer: []string{"127.0.0.1"},
		Failover: []FailoverConfig{www}}
	if tweak != nil {
		tweak(&z)
	}
	z.dir = dir
	if z.keys == nil {
		z.keys = map[string]KeyConfig{}
	}
	if errs := z.check(map[string]bool{"east": true, "west": true}); len(errs) > 0 {
		t.Fatalf("test zone config: %v", errs)
	}
	return Config{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Zones: []ZoneConfig{z}}
}

// runServer runs a server with o until stop (or the end of the test).
func runServer(t testing.TB, o Options) (*Server, func()) {
	t.Helper()
	if o.Members == nil {
		o.Members = []string{"east", "west", "arbitrator"}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 5*time.Second, func() error {
		if len(s.Addrs()) == 0 {
			return fmt.Errorf("not listening yet")
		}
		return nil
	})
	return s, stop
}

// startServer runs a server until the test ends.
func startServer(t testing.TB, cfg Config, o *owners, self string, broadcast func(string, []byte) error) *Server {
	s, _ := runServer(t, Options{Config: cfg, Self: self, StateDir: filepath.Join(t.TempDir(), "dns"), Owners: o.get, Broadcast: broadcast})
	return s
}

// dig runs dig against the server and returns its output.
func dig(t testing.TB, addr string, args ...string) string {
	t.Helper()
	testenv.RequireTool(t, "dig", "bind9-dnsutils")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+tries=1", "+time=2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// kdig runs kdig against the server.
func kdig(t testing.TB, addr string, args ...string) string {
	t.Helper()
	testenv.RequireTool(t, "kdig", "knot-dnsutils")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("kdig", append([]string{"@" + host, "-p", port, "+retry=0", "+timeout=2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kdig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// httpServer answers /ok with "ready", /notready with "starting", /fail
// with 503.
func httpServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ready") })
	mux.HandleFunc("/notready", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "starting") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// smtpServer sends banner, then answers the EHLO with ehlo.
func smtpServer(t testing.TB, banner, ehlo string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, banner)
				rd := bufio.NewReader(c)
				if _, err := rd.ReadString('\n'); err == nil && ehlo != "" {
					io.WriteString(c, ehlo)
					rd.ReadString('\n')
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func nilRegistry() prometheus.Registerer { return prometheus.NewRegistry() }
