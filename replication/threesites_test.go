package replication

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
)

// trio is one volume at three sites, each peering with the two others.
type trio struct {
	t    *testing.T
	cfgs map[string]VolumeConfig
	vols map[string]*Volume
}

var trioSites = []string{"east", "west", "south"}

func newTrio(t *testing.T, size int64) *trio {
	dir := t.TempDir()
	addr := map[string]string{}
	for _, n := range trioSites {
		addr[n] = freeAddr(t)
	}
	tr := &trio{t: t, cfgs: map[string]VolumeConfig{}, vols: map[string]*Volume{}}
	for _, n := range trioSites {
		c := DefaultVolume()
		c.Name, c.Size, c.Path, c.Listen = "data", Size(size), filepath.Join(dir, n, "data.img"), addr[n]
		for _, o := range trioSites {
			if o != n {
				c.Peers = append(c.Peers, PeerConfig{Name: o, Address: addr[o]})
			}
		}
		c.PingInterval, c.Timeout = confkit.Duration(100*time.Millisecond), confkit.Duration(time.Second)
		tr.cfgs[n] = c
	}
	t.Cleanup(func() {
		for _, v := range tr.vols {
			v.Close()
		}
	})
	return tr
}

func (tr *trio) open(name string) *Volume {
	tr.t.Helper()
	v, err := Open(Options{Config: tr.cfgs[name], Self: name, Key: testKey, Log: quietLog().With("member", name)})
	must(tr.t, err)
	must(tr.t, v.Start(context.Background()))
	tr.vols[name] = v
	return v
}

func (tr *trio) close(name string) {
	tr.t.Helper()
	must(tr.t, tr.vols[name].Close())
	delete(tr.vols, name)
}

// waitInSync waits until name's volume is InSync with every other open
// site.
func (tr *trio) waitInSync(name string) {
	tr.t.Helper()
	eventually(tr.t, 20*time.Second, func() error {
		for _, ps := range tr.vols[name].Status().Peers {
			if _, open := tr.vols[ps.Name]; open && ps.State != InSync {
				return fmt.Errorf("%s: peer %s is %s", name, ps.Name, ps.State)
			}
		}
		return nil
	})
}

func (tr *trio) file(name string) []byte {
	tr.t.Helper()
	v := tr.vols[name]
	b := make([]byte, v.Size())
	_, err := v.ReadAt(b, 0)
	must(tr.t, err)
	return b
}

// Issue 18: volumes replicated to every site in peers, but no test ran
// three. The primary's writes reach both secondaries; when it is gone,
// west takes over and south follows it (reconciled by checksums first:
// west cannot know how much of east's last writes south holds); east
// comes back and catches up from the new primary; all three end equal.
func TestThreeSitesReplicateAndFollowANewPrimary(t *testing.T) {
	tr := newTrio(t, 8<<20)
	for _, n := range trioSites {
		tr.open(n)
	}
	east := tr.vols["east"]
	tr.waitInSync("east")
	must(t, east.Promote(context.Background(), false))
	first := randomData(1, 2<<20)
	must(t, east.WriteAt(first, 0, true))
	drained(t, east)
	for _, n := range []string{"west", "south"} {
		if !bytes.Equal(tr.file(n)[:2<<20], first) {
			t.Fatalf("%s does not hold the primary's writes", n)
		}
	}
	// East is lost (demoted and closed: nothing in flight).
	must(t, east.Demote(context.Background()))
	tr.close("east")
	west := tr.vols["west"]
	for _, n := range []string{"west", "south"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		must(t, tr.vols[n].peers["east"].waitState(ctx, Disconnected))
		cancel()
	}
	must(t, west.Promote(context.Background(), false))
	second := randomData(2, 1<<20)
	must(t, west.WriteAt(second, 4<<20, true))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, west.peers["south"].waitDrained(ctx))
	if got := tr.file("south")[4<<20 : 5<<20]; !bytes.Equal(got, second) {
		t.Fatal("south does not follow the new primary")
	}
	// East comes back as a secondary and catches up.
	tr.open("east")
	tr.waitInSync("west")
	drained(t, west)
	want := tr.file("west")
	for _, n := range []string{"east", "south"} {
		if !bytes.Equal(tr.file(n), want) {
			t.Fatalf("%s differs from the primary after the failover", n)
		}
	}
}
