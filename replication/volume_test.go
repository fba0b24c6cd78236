package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestWritesReachTheSecondaryAndDrainLeavesEqualCopies(t *testing.T) {
	p := newPair(t, 16<<20, nil)
	east, _ := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	for i := 0; i < 200; i++ {
		data := randomData(int64(i), 4096*(1+i%8))
		off := int64(i*37%3000) * BlockSize
		if off+int64(len(data)) > east.Size() {
			off = 0
		}
		must(t, east.WriteAt(data, off, i%10 == 0))
		if i%25 == 0 {
			must(t, east.Flush())
		}
	}
	must(t, east.Trim(8<<20, 1<<20))
	must(t, east.WriteZeroes(9<<20, 64<<10, true))
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(t, east.Drain(dctx))
	p.assertEqual()
	st := east.Status()
	if st.Peers[0].LagBytes != 0 || st.Peers[0].State != InSync {
		t.Fatalf("after drain: %+v", st.Peers[0])
	}
	if d := p.vols["west"].Disk(); d != UpToDate {
		t.Fatalf("secondary disk %s", d)
	}
}

func TestSecondaryRefusesWritesAndPromotionNeedsGoodData(t *testing.T) {
	p := newPair(t, 1<<20, nil)
	west := p.open("west")
	if err := west.WriteAt(make([]byte, 4096), 0, false); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("write on a secondary: %v", err)
	}
	west.setDisk(Inconsistent)
	if err := west.Promote(context.Background(), false); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("promote Inconsistent: %v", err)
	}
	if err := west.Promote(context.Background(), true); err != nil {
		t.Fatalf("forced promote: %v", err)
	}
	if err := west.WriteAt(make([]byte, 4096), 1<<20, false); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write beyond the end: %v", err)
	}
	must(t, west.Demote(context.Background()))
	if err := west.WriteAt(make([]byte, 4096), 0, false); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("write after demote: %v", err)
	}
}

func TestReconnectResyncsOnlyDirtyBlocks(t *testing.T) {
	p := newPair(t, 64<<20, nil)
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	must(t, east.WriteAt(randomData(1, 1<<20), 0, true))
	must(t, east.Drain(ctx))
	// West goes away; east writes 10 scattered blocks.
	p.close("west")
	p.waitState("east", Disconnected)
	for i := 0; i < 10; i++ {
		must(t, east.WriteAt(randomData(int64(100+i), BlockSize), int64(i*100+7)*BlockSize, false))
	}
	must(t, east.Flush())
	if d := east.peers["west"].bm.ones(); d != 10 {
		t.Fatalf("%d dirty blocks tracked, want 10", d)
	}
	shipped0 := resyncBytes(east)
	p.open("west")
	p.waitState("east", InSync)
	eventually(t, 10*time.Second, func() error {
		if n := east.peers["west"].bm.ones(); n != 0 {
			return fmt.Errorf("%d blocks still dirty", n)
		}
		return nil
	})
	must(t, east.Drain(ctx))
	p.assertEqual()
	if sent := resyncBytes(east) - shipped0; sent != 10*BlockSize {
		t.Fatalf("resync sent %d bytes, want exactly the 10 dirty blocks (%d)", sent, 10*BlockSize)
	}
}

// resyncBytes is how many resync bytes west acknowledged in all.
func resyncBytes(v *Volume) int64 {
	return int64(testCounter(v.met.resynced.WithLabelValues("west")))
}
