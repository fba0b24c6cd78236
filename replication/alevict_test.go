package replication

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A primary writes with its peer away: the writes are marked in the
// peer's bitmap, in memory. When an extent leaves the activity log, its
// marks must be on disk first: after a crash, the log no longer covers
// that extent, and the bitmap read back is all that says the peer lacks
// those writes. The crash is a copy of the primary's files taken while it
// runs (what a crash leaves, and more: writes not yet flushed), put back
// in place of what its clean close wrote. Random writes, then a
// sequential stream (its log written ahead in the background).
func TestMarksOfAnEvictedExtentSurviveACrash(t *testing.T) {
	p := newPair(t, 96<<20, func(c *VolumeConfig) { c.ALExtents = 4 })
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	// Written at both (neither is blank: no full sync later).
	must(t, east.WriteAt(randomData(100, BlockSize), extentSize, true))
	drained(t, east)
	p.close("west")
	p.waitState("east", Disconnected)
	// One block in each of 12 extents, far apart (no look-ahead): the
	// log holds 4, so 8 leave it.
	for i := int64(0); i < 12; i++ {
		must(t, east.WriteAt(randomData(i, BlockSize), i*2*extentSize, false))
	}
	// Then a sequential stream over 10 extents: the log is written
	// ahead of it in the background, and extents leave it meanwhile.
	for off := int64(extentSize); off < 11*extentSize; off += 1 << 20 {
		must(t, east.WriteAt(randomData(off, 1<<20), off, false))
	}
	// 12 random extents and the stream's windows, each a log write.
	if writes, _ := east.al.counts(); writes < 12 {
		t.Fatalf("%d activity log writes", writes)
	}
	if n := testutil.CollectAndCount(east.met.collectors[len(east.met.collectors)-1], "geobooth_replication_al_writes_total", "geobooth_replication_al_waits_total"); n != 2 {
		t.Fatalf("%d activity log metrics", n)
	}
	crashed := filepath.Join(t.TempDir(), "east")
	if out, err := exec.Command("cp", "-a", filepath.Dir(p.cfgs["east"].Path), crashed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	p.close("east")
	must(t, os.RemoveAll(filepath.Dir(p.cfgs["east"].Path)))
	if out, err := exec.Command("cp", "-a", crashed, filepath.Dir(p.cfgs["east"].Path)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	p.assertEqual()
}
