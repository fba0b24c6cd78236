package cluster

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/replication"
)

// Issue 18: three sites and an arbitrator. East is primary; the link
// between east and south goes down, and east writes on: west holds writes
// south does not. East is killed. South comes first in the member list,
// so it wins a tie, but west holds the most recent replica: south leaves
// the ticket to west, west takes over with every acknowledged write, and
// south resyncs from it.
func TestThreeSitesTheMostRecentReplicaTakesOver(t *testing.T) {
	slow(t)
	tc.RequireTool(t, "qemu-io", "qemu-utils")
	sites := []string{"east", "south", "west"}
	repl, nbd := map[string]int{}, map[string]int{}
	for _, s := range sites {
		repl[s], nbd[s] = tc.FreePort(t), tc.FreePort(t)
	}
	// The east–south link, in both directions, through proxies.
	toSouth := newProxy(t, fmt.Sprintf("127.0.0.1:%d", repl["south"]), 0)
	toEast := newProxy(t, fmt.Sprintf("127.0.0.1:%d", repl["east"]), 0)
	dial := func(from, to string) string {
		switch {
		case from == "east" && to == "south":
			return toSouth.addr()
		case from == "south" && to == "east":
			return toEast.addr()
		}
		return fmt.Sprintf("127.0.0.1:%d", repl[to])
	}
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "south", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		Extra: func(m *tc.Member) string {
			if m.Role != "site" {
				return ""
			}
			var peers []string
			for _, o := range sites {
				if o != m.Name {
					peers = append(peers, fmt.Sprintf("{ name = %q, address = %q }", o, dial(m.Name, o)))
				}
			}
			return fmt.Sprintf(`
[[volumes]]
name = "data"
ticket = "web"
size = "16MiB"
path = "data-%s.img"
listen = "127.0.0.1:%d"
nbd_listen = "127.0.0.1:%d"
peers = [%s]
split_brain = "discard-secondary"
`, m.Name, repl[m.Name], nbd[m.Name], strings.Join(peers, ", "))
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	dc := &dataCluster{Cluster: c, nbd: map[string]string{}, dir: c.Dir}
	for _, s := range sites {
		dc.nbd[s] = fmt.Sprintf("nbd://127.0.0.1:%d/data", nbd[s])
	}
	east, south, west := c.Member("east"), c.Member("south"), c.Member("west")

	if _, errOut, code := east.Ctl("grant", "-s", "east", "web"); code != 0 {
		if !strings.Contains(errOut, "instead") {
			t.Fatalf("grant: %s", errOut)
		}
		if _, errOut, code := east.Ctl("move", "web", "east"); code != 0 {
			t.Fatalf("move web east: %s", errOut)
		}
	}
	inSyncWith := func(names ...string) func(api.Volume) bool {
		return func(st api.Volume) bool {
			if st.Role != replication.Primary {
				return false
			}
			for _, n := range names {
				found := false
				for _, p := range st.Peers {
					found = found || p.Name == n && p.State == replication.InSync && p.LagBytes == 0
				}
				if !found {
					return false
				}
			}
			return true
		}
	}
	dc.waitVolume(t, "east", 20*time.Second, "primary in sync with south and west", inSyncWith("south", "west"))
	if out, err := qemuIO(t, dc.nbd["east"], false, "write -P 0x11 0 1M"); err != nil {
		t.Fatalf("first writes at east: %v\n%s", err, out)
	}
	dc.waitVolume(t, "east", 20*time.Second, "both secondaries hold the first writes", inSyncWith("south", "west"))

	// The east–south link goes down; east writes on, and west gets it.
	toSouth.cut()
	toEast.cut()
	dc.waitVolume(t, "east", 20*time.Second, "south disconnected", func(st api.Volume) bool {
		for _, p := range st.Peers {
			if p.Name == "south" {
				return p.State == replication.Disconnected
			}
		}
		return false
	})
	if out, err := qemuIO(t, dc.nbd["east"], false, "write -P 0x22 1M 1M"); err != nil {
		t.Fatalf("writes at east with south away: %v\n%s", err, out)
	}
	dc.waitVolume(t, "east", 20*time.Second, "west holds every write", inSyncWith("west"))

	east.Kill()
	killed := time.Now()
	// South must never take the ticket; west must.
	deadline := time.Now().Add(40 * time.Second)
	for {
		if tk, err := south.Ticket("web"); err == nil && tk.HeldLocally {
			t.Fatalf("south, whose replica lacks east's last writes, took web: %+v", tk)
		}
		tk, err := west.Ticket("web")
		if err == nil && tk.HeldLocally {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("west did not take web within 40 s of east's loss: %+v %v", tk, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("west took web %v after east was killed", time.Since(killed).Round(100*time.Millisecond))
	waitOwner(t, c, "web", "west", 20*time.Second)
	dc.waitVolume(t, "west", 20*time.Second, "primary", func(s api.Volume) bool { return s.Role == replication.Primary })
	if out, err := qemuIO(t, dc.nbd["west"], true, "read -P 0x11 0 1M", "read -P 0x22 1M 1M"); err != nil {
		t.Fatalf("west lacks writes east had acknowledged: %v\n%s", err, out)
	}
	logs, _ := os.ReadFile(south.LogPath)
	if !bytes.Contains(logs, []byte("holds a more recent replica")) {
		t.Fatalf("south's log does not say why it left the ticket to west")
	}
	// South resyncs from the new primary and ends equal to it.
	dc.waitVolume(t, "west", 60*time.Second, "primary in sync with south", inSyncWith("south"))
	want := dc.exported(t, "west")
	tc.Eventually(t, 10*time.Second, func() error {
		if d := firstDifference(want, dc.image(t, "south")); d != "" {
			return fmt.Errorf("south differs from the new primary west: %s", d)
		}
		return nil
	})
}
