package replication

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/internal/testenv"
)

// Issue 18: a block device as path failed ("has 0 bytes": its Stat size
// is 0), and its metadata would have gone to /dev. On loop devices, with
// the metadata in a folder of its own: the volume replicates, keeps its
// metadata across a restart, and a device too small or in use is refused.
func TestVolumeOnBlockDevices(t *testing.T) {
	devs := map[string]string{"east": testenv.LoopDevice(t, 16<<20), "west": testenv.LoopDevice(t, 20<<20)}
	meta := t.TempDir()
	p := newPair(t, 16<<20, func(c *VolumeConfig) {
		name := "east"
		if strings.Contains(c.Path, "west") {
			name = "west"
		}
		c.Path, c.MetaDir = devs[name], filepath.Join(meta, name)
	})
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
