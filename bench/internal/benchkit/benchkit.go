// Package benchkit holds what the benchmark programs share: free loopback
// ports, waiting on a condition, failing with the program's name, and
// running geoboothd members from generated configurations.
package benchkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Name prefixes error messages ("bench/dns").
var Name = "bench"

// Every is how often WaitUntil polls.
var Every = 50 * time.Millisecond

// Env is added to every daemon's environment (GOMAXPROCS=1 to imitate a
// slower machine); Nice is the niceness it runs at (0: as the bench).
var (
	Env  []string
	Nice int
)

// Fail prints err and exits non-zero.
func Fail(err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
	for _, m := range started {
		m.Kill()
	}
	os.Exit(1)
}

// started are the members this run started, killed when it fails (a
// failed bench must not leave daemons loading the machine).
var started []*Member

// Must fails on a non-nil error.
func Must(err error) {
	if err != nil {
		Fail(err)
	}
}

// Run runs a command and fails with its output if it fails.
func Run(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		Fail(fmt.Errorf("%s %v: %v\n%s", name, args, err, out))
	}
}

// FreePort returns a loopback port free for TCP and UDP a moment ago.
func FreePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Must(err)
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			u.Close()
			return p
		}
	}
}

// FreeAddr returns 127.0.0.1:FreePort().
func FreeAddr() string { return fmt.Sprintf("127.0.0.1:%d", FreePort()) }

// WaitUntil polls f (every Every) and fails after limit, with what (and the
// details, if any) in the message.
func WaitUntil(f func() bool, limit time.Duration, what string, details ...func() string) {
	t0 := time.Now()
	for !f() {
		if time.Since(t0) > limit {
			msg := ""
			for _, d := range details {
				msg += ": " + d()
			}
			Fail(fmt.Errorf("timed out waiting for %s%s", what, msg))
		}
		time.Sleep(Every)
	}
}

// Keys writes the cluster key, an API token and, with serf, a keyring into
// dir.
func Keys(ticketctl, dir string, serf bool) {
	Run(ticketctl, "keygen", filepath.Join(dir, "auth.key"))
	Run(ticketctl, "keygen", "-token", filepath.Join(dir, "api.token"))
	if serf {
		Run(ticketctl, "keygen", "-serf", filepath.Join(dir, "serf.keyring"))
	}
}

// Member is one geoboothd of a benchmark cluster.
type Member struct {
	Name, Role string
	Peer, API  string
	Cmd        *exec.Cmd
}

// WriteConfig writes dir/NAME.toml: the shared cluster file, the key and
// token made by Keys, state under dir/state, extra appended (sites get no
// Pacemaker).
func (m *Member) WriteConfig(dir, extra string) {
	cfg := fmt.Sprintf("local = %q\ncluster_file = \"cluster.toml\"\nauth_key_file = \"auth.key\"\nstate_dir = \"state/%s\"\n[api]\nlisten = %q\ntoken_file = \"api.token\"\n%s",
		m.Name, m.Name, m.API, extra)
	if m.Role == "site" {
		cfg += "[pacemaker]\ndriver = \"none\"\n"
	}
	Must(os.WriteFile(filepath.Join(dir, m.Name+".toml"), []byte(cfg), 0o600))
}

// Start runs geoboothd from bin for the member, logging to dir/NAME.log.
func (m *Member) Start(bin, dir string) {
	args := []string{filepath.Join(bin, "geoboothd"), "-config", filepath.Join(dir, m.Name+".toml")}
	if Nice != 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(Nice)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), Env...)
	log, err := os.OpenFile(filepath.Join(dir, m.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	Must(err)
	cmd.Stdout, cmd.Stderr = log, log
	Must(cmd.Start())
	m.Cmd = cmd
	started = append(started, m)
}

// Kill kills the member's daemon (SIGKILL) and waits for it.
func (m *Member) Kill() {
	if m.Cmd != nil {
		m.Cmd.Process.Signal(syscall.SIGKILL)
		m.Cmd.Wait()
	}
}
