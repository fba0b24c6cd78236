package replication

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Issue 18: only protocol A existed. With protocol C a write completes
// only once the peer holds it durably: read back from west's file the
// moment each WriteAt returns, every write is there. (Under protocol A the
// same check fails within a few writes: the write is only queued.)
func TestProtocolCCompletesAWriteOnlyOnceThePeerHasIt(t *testing.T) {
	p := newPair(t, 4<<20, func(c *VolumeConfig) { c.Protocol = "C" })
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	f, err := os.Open(p.cfgs["west"].Path)
	must(t, err)
	defer f.Close()
	got := make([]byte, BlockSize)
	for i := 0; i < 300; i++ {
		data := randomData(int64(i), BlockSize)
		off := int64(i%64) * BlockSize
		must(t, east.WriteAt(data, off, false))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("write %d completed at east before west had it", i)
		}
	}
}

// A peer that is away does not hold protocol C writes: they complete and
// go into its bitmap; when it is back it resyncs.
func TestProtocolCWritesGoOnWithoutThePeer(t *testing.T) {
	p, px := proxied(t, 4<<20, func(c *VolumeConfig) { c.Protocol = "C" })
	east := p.vols["east"]
	px.set(func(px *proxy) { px.cut = true })
	px.drop()
	p.waitState("east", Disconnected)
	for i := 0; i < 8; i++ {
		must(t, east.WriteAt(randomData(int64(i), BlockSize), int64(i)*BlockSize, false))
	}
	if d := east.Status().Peers[0].DirtyBlocks; d != 8 {
		t.Fatalf("the peer's bitmap has %d blocks, want 8", d)
	}
	px.set(func(px *proxy) { px.cut = false })
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
}

func TestProtocolIsAOrC(t *testing.T) {
	c := DefaultVolume()
	c.Name, c.Size, c.Path, c.Listen = "data", 1<<20, "data.img", "127.0.0.1:7789"
	c.Peers = []PeerConfig{{Name: "west", Address: "127.0.0.1:7790"}}
	for _, p := range []string{"A", "C"} {
		c.Protocol = p
		if errs := c.Validate(); len(errs) != 0 {
			t.Fatalf("protocol %s: %v", p, errs)
		}
	}
	c.Protocol = "B"
	if errs := c.Validate(); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs), "protocol") {
		t.Fatalf("protocol B: %v", errs)
	}
}
