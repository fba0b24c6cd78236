package replication

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

// Issue 18: growing a volume meant stopping it. With the backing storage
// grown at every site (a file here; an LV after lvextend), Resize at the
// primary grows the volume online: both replicas, their bitmaps and
// metadata, and the NBD export that new clients open (qemu-img reads the
// new size). Writes past the old end replicate; a restart with the
// configuration's old size keeps the grown size. Shrinking, and growing
// with a peer away, are refused.
func TestResizeGrowsTheVolumeOnline(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	nbdAddr := freeAddr(t)
	p := newPair(t, 4<<20, func(c *VolumeConfig) {
		if strings.Contains(c.Path, "east") {
			c.NBDListen = nbdAddr
		}
	})
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(1, 4<<20), 0, true))
	url := "nbd://" + nbdAddr + "/data"
	if info := tool(t, "qemu-img", "info", "-f", "raw", url); !strings.Contains(info, "(4194304 bytes)") {
		t.Fatalf("before: %s", info)
	}
	if err := east.Resize(context.Background(), 2<<20); err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Fatalf("shrink: %v", err)
	}
	must(t, east.Resize(context.Background(), 12<<20))
	for name, v := range map[string]*Volume{"east": east, "west": west} {
		if s := v.Status().Size; s != 12<<20 {
			t.Fatalf("%s after the resize: %d bytes", name, s)
		}
	}
	if info := tool(t, "qemu-img", "info", "-f", "raw", url); !strings.Contains(info, "(12582912 bytes)") {
		t.Fatalf("qemu-img does not see the new size through NBD:\n%s", info)
	}
	tail := randomData(2, 1<<20)
	must(t, east.WriteAt(tail, 11<<20, true))
	drained(t, east)
	p.assertEqual()
	if w := p.file("west"); len(w) != 12<<20 || !bytes.Equal(w[11<<20:], tail) {
		t.Fatalf("west's copy after the resize: %d bytes", len(w))
	}
	// A restart with the configuration's old size keeps the grown volume.
	must(t, east.Demote(context.Background()))
	p.close("east")
	east = p.open("east")
	if s := east.Status().Size; s != 12<<20 {
		t.Fatalf("east after a restart: %d bytes", s)
	}
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	// A peer away: refused (it would be refused at the next handshake).
	p.close("west")
	p.waitState("east", Disconnected)
	if err := east.Resize(context.Background(), 16<<20); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("resize with the peer away: %v", err)
	}
	if s := east.Status().Size; s != 12<<20 {
		t.Fatal(fmt.Sprint("a refused resize changed the size to ", s))
	}
}
