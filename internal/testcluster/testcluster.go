// Package testcluster runs real geoboothd processes on loopback for tests:
// it builds the binaries once, writes a cluster's configuration with free
// ports into a temporary folder, starts, kills and restarts members, and
// reads their API. Every wait is on a condition with a deadline.
package testcluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/geobooth/geobooth/kit/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds geoboothd and ticketctl once per test process and returns
// their folder.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		top := filepath.Join(filepath.Dir(file), "..", "..")
		binDir, buildErr = os.MkdirTemp("", "geobooth-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + string(os.PathSeparator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/...")...)
		cmd.Dir = top
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// FreePort returns a loopback port that was free a moment ago, below the
// ephemeral range (see testenv.FreePort).
func FreePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t)
}

// Spec describes a cluster to write.
type Spec struct {
	// Members: name → role ("site" or "arbitrator"), in order.
	Members []MemberSpec
	// Tickets is the TOML of the [tickets.*] and [defaults] tables.
	Tickets string
	// Extra is appended to every member's file; %s is replaced by the
	// member's name.
	Extra func(m *Member) string
	// TLS makes a CA and every member's certificate (ticketctl tls) and
	// serves the API over HTTPS.
	TLS bool
	// API is added to every member's [api] section (e.g. read_token).
	API string
}

// MemberSpec is one member to write.
type MemberSpec struct{ Name, Role string }

// Cluster is a running test cluster.
type Cluster struct {
	t       testing.TB
	Dir     string
	Bin     string
	Members []*Member
	Token   string
	// CA is the cluster CA's certificate file when the cluster runs TLS.
	CA       string
	httpOnce sync.Once
	http     *http.Client
}

// Member is one geoboothd.
type Member struct {
	Name, Role string
	Config     string
	API, Peer  string
	Serf       string
	LogPath    string
	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	cluster    *Cluster
	ExtraPorts map[string]int
	// Prefix runs the daemon through another command (e.g. ip netns exec
	// NS); Env is added to its environment.
	Prefix, Env []string
	// Bin, when set, is the folder of the geoboothd this member runs
	// instead of the cluster's (an earlier release, in an upgrade).
	Bin string
}

// Adopt makes a cluster of members whose configuration files are written
// already (Name, Role, Config, API and LogPath set); it does not start
// them. They are stopped when the test ends.
func Adopt(t testing.TB, dir string, members ...*Member) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Dir: dir, Bin: Binaries(t), Members: members}
	for _, m := range members {
		m.cluster = c
		if m.ExtraPorts == nil {
			m.ExtraPorts = map[string]int{}
		}
	}
	t.Cleanup(func() {
		c.StopAll()
		c.checkRaces()
	})
	return c
}

// New writes a cluster's configuration (not started).
func New(t testing.TB, spec Spec) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Dir: t.TempDir(), Bin: Binaries(t)}
	if spec.TLS {
		c.run("", "tls", "ca", "-dir", c.Dir)
		c.CA = filepath.Join(c.Dir, "ca.pem")
	}
	key := filepath.Join(c.Dir, "auth.key")
	tok := filepath.Join(c.Dir, "api.token")
	c.run("", "keygen", key)
	c.run("", "keygen", "-token", tok)
	c.run("", "keygen", "-serf", filepath.Join(c.Dir, "serf.keyring"))
	b, _ := os.ReadFile(tok)
	c.Token = strings.TrimSpace(string(b))
	var cl strings.Builder
	cl.WriteString("name = \"test\"\n")
	for _, ms := range spec.Members {
		m := &Member{Name: ms.Name, Role: ms.Role, cluster: c, ExtraPorts: map[string]int{},
			API:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			Peer: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			Serf: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
		m.Config = filepath.Join(c.Dir, m.Name+".toml")
		m.LogPath = filepath.Join(c.Dir, m.Name+".log")
		c.Members = append(c.Members, m)
		fmt.Fprintf(&cl, "\n[[members]]\nname = %q\nrole = %q\naddress = %q\nserf = %q\napi = %q\n", m.Name, m.Role, m.Peer, m.Serf, m.API)
	}
	cl.WriteString("\n" + spec.Tickets + "\n")
	if err := os.WriteFile(filepath.Join(c.Dir, "cluster.toml"), []byte(cl.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		cfg := fmt.Sprintf("local = %q\ncluster_file = \"cluster.toml\"\nauth_key_file = \"auth.key\"\nstate_dir = \"state/%s\"\n\n[api]\nlisten = %q\ntoken_file = \"api.token\"\n%s\n[serf]\nkeyring_file = \"serf.keyring\"\nprofile = \"local\"\n\n[log]\nlevel = \"debug\"\n",
			m.Name, m.Name, m.API, spec.API)
		extra := ""
		if spec.Extra != nil {
			extra = spec.Extra(m)
		}
		if spec.TLS {
			c.run("", "tls", "cert", "-dir", c.Dir, "-ca", c.CA, "-ca-key", filepath.Join(c.Dir, "ca-key.pem"), "-host", "127.0.0.1", m.Name)
			extra += fmt.Sprintf("\n[tls]\nca_file = \"ca.pem\"\ncert_file = \"%s.pem\"\nkey_file = \"%s-key.pem\"\n", m.Name, m.Name)
		}
		if m.Role == "site" && !strings.Contains(extra, "[pacemaker]") {
			// Test machines may have crm_ticket but run no cluster.
			extra += "\n[pacemaker]\ndriver = \"none\"\n"
		}
		cfg += "\n" + extra
		if err := os.WriteFile(m.Config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c.StopAll()
		c.checkRaces()
	})
	return c
}

// checkRaces fails the test if a daemon built with -race reported one.
func (c *Cluster) checkRaces() {
	for _, m := range c.Members {
		b, _ := os.ReadFile(m.LogPath)
		if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
			end := i + 3000
			if end > len(b) {
				end = len(b)
			}
			c.t.Errorf("%s reported a data race:\n%s", m.Name, b[i:end])
		}
	}
}

// Member returns the named member.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	c.t.Fatalf("no member %q", name)
	return nil
}

func (c *Cluster) run(dir string, args ...string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.Bin, "ticketctl"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("ticketctl %v: %v\n%s", args, err, out)
	}
}

// StartAll starts every member and waits until each answers.
func (c *Cluster) StartAll() {
	for _, m := range c.Members {
		m.Start()
	}
	for _, m := range c.Members {
		m.WaitUp(15 * time.Second)
	}
}

// StopAll stops every running member (SIGTERM, then SIGKILL).
func (c *Cluster) StopAll() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// DumpLogs writes every member's log to the test log (on failure).
func (c *Cluster) DumpLogs() {
	for _, m := range c.Members {
		b, _ := os.ReadFile(m.LogPath)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		c.t.Logf("---- %s log (last lines) ----\n%s", m.Name, strings.Join(lines, "\n"))
	}
}

// Start starts the member's daemon.
func (m *Member) Start() {
	t := m.cluster.t
	t.Helper()
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := m.cluster.Bin
	if m.Bin != "" {
		bin = m.Bin
	}
	args := append(append([]string(nil), m.Prefix...), filepath.Join(bin, "geoboothd"), "-config", m.Config)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), m.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
}

func (m *Member) proc() (*exec.Cmd, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd, m.exited
}

// PID is the daemon's process id (0 when it never started).
func (m *Member) PID() int {
	if cmd, _ := m.proc(); cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Running reports whether the daemon process is alive.
func (m *Member) Running() bool {
	cmd, exited := m.proc()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// WaitUp waits until the member's API answers.
func (m *Member) WaitUp(timeout time.Duration) {
	t := m.cluster.t
	t.Helper()
	Eventually(t, timeout, func() error {
		if !m.Running() {
			b, _ := os.ReadFile(m.LogPath)
			t.Fatalf("%s exited while starting:\n%s", m.Name, b)
		}
		resp, err := m.cluster.client().Get(m.URL("/healthz"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// Kill kills the daemon with SIGKILL and waits for it to be gone.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Stop stops the daemon with SIGTERM (SIGKILL after 10 s).
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

// Pause stops (SIGSTOP) or resumes (SIGCONT) the process.
func (m *Member) Pause(on bool) {
	sig := syscall.SIGCONT
	if on {
		sig = syscall.SIGSTOP
	}
	if cmd, _ := m.proc(); m.Running() {
		cmd.Process.Signal(sig)
	}
}

func (m *Member) signal(sig syscall.Signal) {
	if !m.Running() {
		return
	}
	cmd, exited := m.proc()
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// Tickets reads the member's ticket list.
func (m *Member) Tickets() ([]api.Ticket, error) {
	var ts []api.Ticket
	err := m.getJSON("/api/v1/tickets", &ts)
	return ts, err
}

// Ticket reads one ticket.
func (m *Member) Ticket(name string) (api.Ticket, error) {
	var t api.Ticket
	err := m.getJSON("/api/v1/tickets/"+name, &t)
	return t, err
}

// URL is the address of path on the member's API (https when the
// cluster runs TLS).
func (m *Member) URL(path string) string {
	if m.cluster.CA != "" {
		return "https://" + m.API + path
	}
	return "http://" + m.API + path
}

// client is the HTTP client of the cluster's APIs: it trusts the
// cluster's CA when there is one.
func (c *Cluster) client() *http.Client {
	c.httpOnce.Do(func() {
		c.http = &http.Client{Timeout: 3 * time.Second}
		if c.CA == "" {
			return
		}
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(c.CA); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}
	})
	return c.http
}

func (m *Member) getJSON(path string, v any) error {
	resp, err := m.cluster.client().Get(m.URL(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Get fetches a path from the member's API and returns the body.
func (m *Member) Get(path string) (string, error) {
	resp, err := m.cluster.client().Get(m.URL(path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Ctl runs ticketctl against this member and returns stdout, stderr and the
// exit status.
func (m *Member) Ctl(args ...string) (string, string, int) {
	cmd := exec.Command(filepath.Join(m.cluster.Bin, "ticketctl"), append([]string{"-config", m.Config}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		m.cluster.t.Fatalf("ticketctl: %v", err)
	}
	return out.String(), errb.String(), code
}

// Eventually retries f until it returns nil or the timeout passes (see
// testenv.Eventually).
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, f)
}

// RequireTool finds a program a test needs (see testenv.RequireTool).
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	return testenv.RequireTool(t, name, pkg)
}
