package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// onDevices puts each side's replica on its device in devs, its
// metadata in a folder of meta.
func onDevices(devs map[string]string, meta string) func(*VolumeConfig) {
	return func(c *VolumeConfig) {
		name := "east"
		if strings.Contains(c.Path, "west") {
			name = "west"
		}
		c.Path, c.MetaDir = devs[name], filepath.Join(meta, name)
	}
}

// Issue 18: a block device as path failed ("has 0 bytes": its Stat size
// is 0), and its metadata would have gone to /dev. On loop devices, with
// the metadata in a folder of its own: the volume replicates, keeps its
// metadata across a restart, and a device too small or in use is refused.
func TestVolumeOnBlockDevices(t *testing.T) {
	devs := map[string]string{"east": testenv.LoopDevice(t, 16<<20), "west": testenv.LoopDevice(t, 20<<20)}
	meta := t.TempDir()
	p := newPair(t, 16<<20, onDevices(devs, meta))
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	// Devices hold whatever they held: new replicas on them are
	// Inconsistent, and the first primary is the operator's choice.
	if err := east.Promote(context.Background(), false); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("promotion of a new replica on a device: %v", err)
	}
	must(t, east.Promote(context.Background(), true))
	p.waitState("east", SyncSource, InSync)
	data := randomData(11, 1<<20)
	must(t, east.WriteAt(data, 3<<20, true))
	drained(t, east)
	west, err := os.ReadFile(devs["west"])
	must(t, err)
	if !bytes.Equal(west[3<<20:4<<20], data) {
		t.Fatal("west's device does not hold the write")
	}
	for _, f := range []string{"east/" + filepath.Base(devs["east"]) + ".meta", "east/" + filepath.Base(devs["east"]) + ".bitmap-west"} {
		if _, err := os.Stat(filepath.Join(meta, f)); err != nil {
			t.Fatalf("metadata not in meta_dir: %v", err)
		}
	}
	gen := east.Status().Generation
	// In use: a second open of east's device is refused while it is open.
	c := p.cfgs["east"]
	c.MetaDir = t.TempDir()
	if _, err := Open(Options{Config: c, Self: "east", Key: testKey, Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a device in use was opened: %v", err)
	}
	// A restart keeps the metadata (the same generation, no full resync).
	must(t, east.Demote(context.Background()))
	p.close("east")
	east = p.open("east")
	if g := east.Status().Generation; g != gen {
		t.Fatalf("generation after a restart %s, before %s", g, gen)
	}
	// Too small: a 16 MiB device for a 20 MiB volume.
	small := p.cfgs["east"]
	small.Size = 20 << 20
	small.MetaDir = t.TempDir()
	p.close("east")
	if _, err := Open(Options{Config: small, Self: "east", Key: testKey, Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "has 16777216 bytes") {
		t.Fatalf("a device too small was opened: %v", err)
	}
}

// A device path that does not exist (an LV not yet created) is refused,
// not created as a file in /dev, which vanishes at reboot.
func TestAMissingDeviceIsNotCreatedAsAFile(t *testing.T) {
	c := DefaultVolume()
	c.Name, c.Size, c.Path, c.Listen, c.MetaDir = "data", 1<<20, "/dev/geobooth-test-vg/web", "127.0.0.1:0", t.TempDir()
	c.Peers = []PeerConfig{{Name: "west", Address: "127.0.0.1:1"}}
	_, err := Open(Options{Config: c, Self: "east", Key: testKey, Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("a missing device: %v", err)
	}
	if _, err := os.Stat("/dev/geobooth-test-vg"); err == nil {
		t.Fatal("a folder was made in /dev")
	}
}

// Issue 18: online grow on block devices: refused until every site's
// device is large enough (as after lvextend at one site only), then the
// volume grows without stopping.
func TestResizeOnBlockDevices(t *testing.T) {
	devs, backing := map[string]string{}, map[string]string{}
	for _, n := range []string{"east", "west"} {
		devs[n], backing[n] = testenv.LoopDeviceOver(t, 16<<20)
	}
	p := newPair(t, 16<<20, onDevices(devs, t.TempDir()))
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	must(t, east.SkipInitialSync())
	eventually(t, 10*time.Second, func() error {
		if d := west.Status().Disk; d != UpToDate {
			return fmt.Errorf("west is %s", d)
		}
		return nil
	})
	must(t, east.Promote(context.Background(), false))
	grow := func(name string) {
		must(t, os.Truncate(backing[name], 24<<20))
		if out, err := exec.Command("losetup", "-c", devs[name]).CombinedOutput(); err != nil {
			t.Fatalf("losetup -c: %v\n%s", err, out)
		}
	}
	if err := east.Resize(context.Background(), 24<<20); err == nil || !strings.Contains(err.Error(), "grow it first") {
		t.Fatalf("resize before any device grew: %v", err)
	}
	grow("east")
	if err := east.Resize(context.Background(), 24<<20); err == nil || !strings.Contains(err.Error(), "peer west") {
		t.Fatalf("resize with west's device not grown: %v", err)
	}
	grow("west")
	must(t, east.Resize(context.Background(), 24<<20))
	data := randomData(12, 1<<20)
	must(t, east.WriteAt(data, 23<<20, true))
	drained(t, east)
	w, err := os.ReadFile(devs["west"])
	must(t, err)
	if !bytes.Equal(w[23<<20:24<<20], data) {
		t.Fatal("west's device does not hold the write past the old end")
	}
}
