package boothmix

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/testenv"
)

// A replicated volume under a Booth ticket: two geoboothd sites, each with
// a replica of "data" (mutual TLS between them, each named by its
// booth.conf address), and a boothd arbitrator. Granted at east with the
// booth client, east's replica is primary and exported over NBD, west's
// secondary and not exported. A write at east, once west has it, survives
// east's kill -9: west takes the ticket, is primary and reads it back.
// East comes back as a secondary and catches up with west's writes; a
// revoke at west right after a write drains it to east and demotes west,
// and a grant at east makes east primary with every write. No two sites' CIBs hold the ticket
// at once.
func TestReplicatedVolumesFollowABoothTicket(t *testing.T) {
	bin := daemonsTest(t)
	testenv.RequireTool(t, "qemu-io", "qemu-utils")
	c := newBoothCluster(t, "rv", "10.85.0.", true)
	addrs := c.addrs
	vols := writeVolumes(t, c, buildTicketctl(t, c.dir))
	site := func(i int) *member {
		return c.geoboothd(i, bin, "-booth-http", "127.0.0.1:7809", "-state-dir", filepath.Join(c.dir, names[i]+"-state"), "-booth-volumes", vols[i])
	}
	members := []*member{c.run(site(0)), c.run(site(1)), c.run(c.boothd(2))}

	c.grant(0)
	testenv.Eventually(t, 2*expire, granted(t, c.events, "east"))
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 0, "primary", api.PeerState("InSync")))
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 1, "secondary", api.PeerState("InSync")))
	if out, err := qemuIO(c, 1, "read 0 4k"); err == nil {
		t.Fatalf("west, a secondary, serves its replica over NBD:\n%s", out)
	}
	if out, err := qemuIO(c, 0, "write -P 0x5a 0 1M"); err != nil {
		t.Fatalf("write at east: %v\n%s", err, out)
	}
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 0, "primary", api.PeerState("InSync")))

	killed := c.failover(members[0], 1)
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 1, "primary", ""))
	if out, err := qemuIO(c, 1, "read -P 0x5a 0 1M"); err != nil {
		t.Fatalf("east's write, read at west after the failover: %v\n%s", err, out)
	}

	// East back: a secondary that follows west, with west's new writes.
	members[0].start(t)
	testenv.Eventually(t, 20*time.Second, c.leaderAt(0, addrs[1]))
	if out, err := qemuIO(c, 1, "write -P 0x77 1M 1M"); err != nil {
		t.Fatalf("write at west: %v\n%s", err, out)
	}
	testenv.Eventually(t, 30*time.Second, replicaAt(c, 0, "secondary", api.PeerState("InSync")))
	testenv.Eventually(t, 30*time.Second, replicaAt(c, 1, "primary", api.PeerState("InSync")))

	// A write at west, then at once a revoke there: west drains it to
	// east and demotes; a grant at east makes east primary, with every
	// write.
	if out, err := qemuIO(c, 1, "write -P 0x33 2M 4M"); err != nil {
		t.Fatalf("write at west: %v\n%s", err, out)
	}
	if out, err := c.booth(1, "revoke", "web"); err != nil {
		t.Fatalf("booth revoke at west: %v\n%s", err, out)
	}
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 1, "secondary", ""))
	if b, _ := os.ReadFile(members[1].log); !strings.Contains(string(b), "handed over: every peer acknowledged every write") {
		t.Fatal("west's revoke demoted its volume without draining it to east")
	}
	c.grant(0)
	testenv.Eventually(t, 2*expire, granted(t, c.events, "east"))
	testenv.Eventually(t, 20*time.Second, replicaAt(c, 0, "primary", ""))
	if out, err := qemuIO(c, 0, "read -P 0x5a 0 1M", "read -P 0x77 1M 1M", "read -P 0x33 2M 4M"); err != nil {
		t.Fatalf("every write, read at east: %v\n%s", err, out)
	}
	checkNoOverlap(t, grants(t, c.events, map[string]time.Duration{"east": killed}))
	members[0].stop(syscall.SIGTERM)
	members[1].stop(syscall.SIGTERM)
}

// writeVolumes writes each site's volumes file: a 16 MiB replica of
// "data" under web, exported over NBD on the site's loopback, replicated
// with mutual TLS (certificates for the sites' addresses, from ticketctl).
func writeVolumes(t *testing.T, c *boothCluster, ctl string) []string {
	t.Helper()
	run := func(args ...string) {
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("ticketctl %v: %v\n%s", args, err, out)
		}
	}
	tlsDir := filepath.Join(c.dir, "tls")
	key := filepath.Join(c.dir, "replication.key")
	run("keygen", key)
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	run("tls", "ca", "-dir", tlsDir)
	var paths []string
	for i := range 2 {
		self, peer := c.addrs[i], c.addrs[1-i]
		run("tls", "cert", "-dir", tlsDir, "-ca", filepath.Join(tlsDir, "ca.pem"), "-ca-key", filepath.Join(tlsDir, "ca-key.pem"), "-host", self, self)
		text := fmt.Sprintf(`auth_key_file = %q

[tls]
ca_file = %q
cert_file = %q
key_file = %q

[[volumes]]
name = "data"
ticket = "web"
size = "16MiB"
path = "data.img"
listen = "%s:7788"
peers = [{ name = %q, address = "%s:7788" }]
nbd_listen = "127.0.0.1:10809"
`, key, filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, self+".pem"), filepath.Join(tlsDir, self+"-key.pem"), self, peer, peer)
		p := filepath.Join(c.dir, names[i]+"-volumes.toml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// replicaAt: site i's replica of data has role, and, unless peer is
// empty, that state with the other site.
func replicaAt(c *boothCluster, i int, role api.Role, peer api.PeerState) func() error {
	return func() error {
		out, err := c.ns.Exec(i, "curl", "-sf", "http://127.0.0.1:7809/api/v1/replication/data").Output()
		if err != nil {
			return fmt.Errorf("replication status at %s: %v", names[i], err)
		}
		var v api.Volume
		if err := json.Unmarshal(out, &v); err != nil {
			return fmt.Errorf("replication status at %s: %v", names[i], err)
		}
		if v.Role != role || (peer != "" && (len(v.Peers) != 1 || v.Peers[0].State != peer || v.Peers[0].LagBytes != 0)) {
			return fmt.Errorf("data at %s: %s, want %s with the peer %s and no lag", names[i], out, role, peer)
		}
		return nil
	}
}

// qemuIO runs qemu-io commands against site i's NBD export, in its
// namespace; a command that fails fails it.
func qemuIO(c *boothCluster, i int, cmds ...string) (string, error) {
	args := []string{"qemu-io", "-f", "raw"}
	for _, cmd := range cmds {
		args = append(args, "-c", cmd)
	}
	out, err := c.ns.Exec(i, append(args, "nbd://127.0.0.1:10809/data")...).CombinedOutput()
	if err == nil && (strings.Contains(string(out), "failed") || strings.Contains(string(out), "Pattern verification")) {
		err = fmt.Errorf("qemu-io reported a failure")
	}
	return string(out), err
}
