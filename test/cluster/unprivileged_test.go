package cluster

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/kit/testenv"
)

// lowPort is a free TCP and UDP port below 1024 on 127.0.0.1.
func lowPort(t *testing.T) int {
	for p := 600; p < 1000; p++ {
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port below 1024")
	return 0
}

// Issue 17, F11: the systemd unit ran geoboothd as root. It runs as its
// own user with CAP_NET_BIND_SERVICE alone in every capability set; here
// through setpriv, as the unit's User= and AmbientCapabilities= do, with
// the DNS server on a port below 1024.
func TestDaemonRunsAsItsOwnUserWithOneCapability(t *testing.T) {
	testenv.RequireRoot(t, "running the daemon as another user")
	setpriv := tc.RequireTool(t, "setpriv", "util-linux")
	tc.RequireTool(t, "useradd", "passwd")
	dig := tc.RequireTool(t, "dig", "bind9-dnsutils")
	const name = "geobooth-test"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", name).Run() })
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	port := lowPort(t)
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		Extra: func(m *tc.Member) string {
			if m.Name != "arbitrator" {
				return ""
			}
			return fmt.Sprintf("[dns]\nlisten = \"127.0.0.1:%d\"\nzones_file = \"dns.toml\"\n", port)
		},
	})
	copyExampleZones(t, c.Dir)
	// The member's files are its user's, as /etc/geobooth after the chown
	// docs/operations.md asks for; the folders above and the binaries'
	// may be crossed by anyone, as /etc and /usr/bin.
	for _, d := range []string{filepath.Dir(c.Dir), c.Bin} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.WalkDir(c.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		m.Prefix = []string{setpriv, "--reuid", u.Uid, "--regid", u.Gid, "--clear-groups", "--no-new-privs",
			"--inh-caps", "-all,+net_bind_service", "--ambient-caps", "-all,+net_bind_service", "--bounding-set", "-all,+net_bind_service"}
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	arb := c.Member("arbitrator")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", arb.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid), "CapEff:\t0000000000000400", "CapBnd:\t0000000000000400"} {
		if !strings.Contains(string(status), want) {
			t.Fatalf("the daemon's /proc status lacks %q:\n%s", want, status)
		}
	}
	if _, errOut, code := c.Member("east").Ctl("grant", "-s", "east", "web"); code != 0 && !strings.Contains(errOut, "granted to west instead") {
		t.Fatalf("grant: %s", errOut)
	}
	tc.Eventually(t, 15*time.Second, func() error {
		out, err := exec.Command(dig, "@127.0.0.1", "-p", strconv.Itoa(port), "+short", "+time=1", "+tries=1", "www.example.test").CombinedOutput()
		if err != nil || (strings.TrimSpace(string(out)) != "127.0.0.11" && strings.TrimSpace(string(out)) != "127.0.0.12") {
			return fmt.Errorf("dig on port %d: %v %q", port, err, out)
		}
		return nil
	})
}
