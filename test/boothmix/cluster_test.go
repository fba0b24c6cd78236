package boothmix

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

var names = []string{"east", "west", "arbitrator"}

// daemonsTest begins a test that runs the daemons as processes, in
// namespaces of its own (beside the others): skipped in the race pass,
// which has nothing to find there; it returns geoboothd's binary.
func daemonsTest(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the daemons run as their own processes: the race pass has nothing to find here")
	}
	t.Parallel()
	requirePeers(t)
	return buildGeoboothd(t, t.TempDir())
}

// boothCluster is a booth.conf's two sites and arbitrator in network
// namespaces of their own (IPv4 only), with the sites' crm_ticket
// wrappers logging to one events file.
type boothCluster struct {
	t      *testing.T
	dir    string
	conf   string
	addrs  []string
	ns     testenv.Namespaces
	events string
	// env is each member's environment: a site's crm_ticket wrapper and
	// CIB, which boothd and geoboothd use alike.
	env [][]string
	// all is every process started, stopped (and its log shown on a
	// failure) at the end.
	all []*member
}

// newBoothCluster sets up the members at net+"1", "2", "3" (namespaces
// tagged tag) and their booth.conf, with an authfile when auth.
func newBoothCluster(t *testing.T, tag, net string, auth bool) *boothCluster {
	t.Helper()
	c := &boothCluster{t: t, dir: shortDir(t), addrs: []string{net + "1", net + "2", net + "3"}}
	c.conf = writeBoothConf(t, c.dir, c.addrs, auth)
	c.ns = testenv.IPv4Namespaces(t, tag, c.addrs...)
	c.events = filepath.Join(c.dir, "events.jsonl")
	if err := os.WriteFile(c.events, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c.events, 0o666); err != nil {
		t.Fatal(err)
	}
	c.env = make([][]string, 3)
	for i := range 3 {
		c.env[i] = []string{"env"}
		if i < 2 {
			emptyCIB(t, c.cib(i))
			c.env[i] = append(c.env[i], "PATH="+wrapper(t, c.dir, names[i], c.events)+":"+os.Getenv("PATH"), "CIB_file="+c.cib(i))
		}
	}
	t.Cleanup(func() {
		for _, m := range c.all {
			m.stop(syscall.SIGKILL)
		}
		if t.Failed() {
			for _, m := range c.all {
				b, _ := os.ReadFile(m.log)
				t.Logf("%s log:\n%s", m.name, tail(string(b), 60))
			}
		}
	})
	return c
}

// cib is site i's CIB file.
func (c *boothCluster) cib(i int) string { return filepath.Join(c.dir, names[i]+"-cib.xml") }

// boothd is member i as boothd.
func (c *boothCluster) boothd(i int) *member {
	args := append(append(c.ns.Exec(i).Args, c.env[i]...), "boothd", "daemon", "-S", "-D", "-c", c.conf, "-l", filepath.Join(c.dir, names[i]+".pid"))
	return &member{name: names[i] + " (boothd)", log: filepath.Join(c.dir, names[i]+"-boothd.log"), args: args}
}

// geoboothd is member i as geoboothd in the Booth mode, with extra flags.
func (c *boothCluster) geoboothd(i int, bin string, extra ...string) *member {
	args := append(append(append(c.ns.Exec(i).Args, c.env[i]...), bin, "-booth-config", c.conf), extra...)
	return &member{name: names[i] + " (geoboothd)", log: filepath.Join(c.dir, names[i]+"-geoboothd.log"), args: args}
}

// run starts m and returns it.
func (c *boothCluster) run(m *member) *member {
	m.start(c.t)
	c.all = append(c.all, m)
	return m
}

// booth runs the booth client at member i, against it.
func (c *boothCluster) booth(i int, args ...string) (string, error) {
	out, err := c.ns.Exec(i, append([]string{"booth", args[0], "-c", c.conf, "-s", c.addrs[i]}, args[1:]...)...).CombinedOutput()
	return string(out), err
}

// leaderAt: member i's booth list shows want as web's leader (an
// address, "none" or "NONE").
func (c *boothCluster) leaderAt(i int, want string) func() error {
	return func() error {
		out, err := c.booth(i, "list")
		if err != nil || !strings.Contains(out, "ticket: web, leader: "+want) {
			return fmt.Errorf("booth list at %s: %v %q, want leader %s", names[i], err, out, want)
		}
		return nil
	}
}

// grant asks for web at member i with the booth client until it is
// accepted (the members may still be starting).
func (c *boothCluster) grant(i int) {
	c.t.Helper()
	testenv.Eventually(c.t, 30*time.Second, func() error {
		if out, err := c.booth(i, "grant", "web"); err != nil {
			return fmt.Errorf("booth grant at %s: %v %s", names[i], err, out)
		}
		return nil
	})
}

// failover kills member dead and waits until site next leads, with its
// CIB granted; it returns when dead was killed.
func (c *boothCluster) failover(dead *member, next int) time.Duration {
	c.t.Helper()
	killed := testenv.Monotonic()
	dead.stop(syscall.SIGKILL)
	testenv.Eventually(c.t, expire+acquireAfter+20*timeout, c.leaderAt(2, c.addrs[next]))
	c.t.Logf("%s leads %v after %s was killed", names[next], (testenv.Monotonic() - killed).Round(100*time.Millisecond), dead.name)
	testenv.Eventually(c.t, 2*expire, granted(c.t, c.events, names[next]))
	return killed
}

// granted: site's CIB was last written with the ticket granted.
func granted(t *testing.T, events, site string) func() error {
	return func() error {
		b, err := os.ReadFile(events)
		if err != nil {
			return err
		}
		last := ""
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.Contains(l, `"site":"`+site+`"`) {
				last = l
			}
		}
		if !strings.Contains(last, `"op":"grant"`) || !strings.Contains(last, `"rc":0`) {
			return fmt.Errorf("%s's last CIB write of web: %q, want a grant", site, last)
		}
		return nil
	}
}

// writeBoothConf writes the cluster's booth.conf (and its authfile).
func writeBoothConf(t *testing.T, dir string, addrs []string, auth bool) string {
	t.Helper()
	conf := "transport = UDP\nport = 9929\n"
	if auth {
		key := filepath.Join(dir, "authkey")
		if err := os.WriteFile(key, []byte("a shared booth key for the mixed test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += "authfile = " + key + "\n"
	}
	conf += fmt.Sprintf("site = %s\nsite = %s\narbitrator = %s\nticket = \"web\"\n    expire = %d\n    timeout = %d\n    retries = 3\n    renewal-freq = 5\n    acquire-after = %d\n",
		addrs[0], addrs[1], addrs[2], int(expire.Seconds()), int(timeout.Seconds()), int(acquireAfter.Seconds()))
	path := filepath.Join(dir, "booth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
