package replication

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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

func TestAPrimaryPastItsLeaseRefusesWrites(t *testing.T) {
	p := newPair(t, 1<<20, nil)
	east := p.open("east")
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	east.SetWriteDeadline(time.Now().Add(time.Hour))
	must(t, east.WriteAt(randomData(1, 4096), 0, false))
	east.SetWriteDeadline(time.Now().Add(-time.Millisecond))
	if err := east.WriteAt(randomData(2, 4096), 0, true); !errors.Is(err, ErrLeaseEnded) {
		t.Fatalf("write past the lease: %v", err)
	}
	if err := east.WriteZeroes(4096, 4096, false); !errors.Is(err, ErrLeaseEnded) {
		t.Fatalf("write zeroes past the lease: %v", err)
	}
	if n := testCounter(east.met.leaseRefusals); n != 2 {
		t.Fatalf("refusals counted: %v", n)
	}
	got := make([]byte, 4096)
	if _, err := east.ReadAt(got, 0); err != nil || string(got) != string(randomData(1, 4096)) {
		t.Fatalf("the write before the lease ended is not what the volume holds (%v)", err)
	}
	east.SetWriteDeadline(time.Now().Add(time.Hour))
	must(t, east.WriteAt(randomData(3, 4096), 0, false))
	east.SetWriteDeadline(time.Now().Add(-time.Millisecond))
	must(t, east.Demote(ctx))
	must(t, east.Promote(ctx, false))
	must(t, east.WriteAt(randomData(4, 4096), 0, false))
}

func TestHandoverDrainsEveryWriteThenDemotes(t *testing.T) {
	p := newPair(t, 16<<20, nil)
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	// A writer keeps writing through the handover: every write that
	// succeeded must be on west afterwards, and the first refused one must
	// be refused as "not primary".
	done := make(chan error, 1)
	var written atomic.Int64
	go func() {
		for i := 0; i < 4000; i++ {
			if err := east.WriteAt(randomData(int64(i), 4096), int64(i%4000)*BlockSize, false); err != nil {
				done <- err
				return
			}
			written.Store(int64(i + 1))
		}
		done <- nil
	}()
	eventually(t, 10*time.Second, func() error {
		if written.Load() < 100 {
			return errors.New("the writer has not written 100 blocks yet")
		}
		return nil
	})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(t, east.Handover(hctx))
	if err := <-done; err != nil && !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("writer: %v", err)
	}
	if east.Role() != Secondary {
		t.Fatalf("east is %s after the handover", east.Role())
	}
	p.assertEqual()
	must(t, west.Promote(ctx, false))
	if st := west.Status(); st.Disk != UpToDate {
		t.Fatalf("west after the handover: %+v", st)
	}
	t.Logf("%d writes before the handover, all on west", written.Load())
}

func TestHandoverWithoutThePeerAbortsAndStaysPrimary(t *testing.T) {
	p := newPair(t, 4<<20, nil)
	east := p.open("east")
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	must(t, east.WriteAt(randomData(1, 8192), 0, false))
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := east.Handover(hctx); !errors.Is(err, ErrPeerNotInSync) {
		t.Fatalf("handover with the peer away: %v", err)
	}
	if east.Role() != Primary {
		t.Fatalf("an aborted handover left east %s", east.Role())
	}
	must(t, east.WriteAt(randomData(2, 4096), 8192, true))
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

// TestDrainWaitsThroughAPullAhead: a peer that fell behind (pulled ahead,
// then resynced) is caught up, not refused, by a drain.
func TestDrainWaitsThroughAPullAhead(t *testing.T) {
	p := newPair(t, 32<<20, func(c *VolumeConfig) { c.SendBuffer = 1 << 20 })
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	for i := 0; i < 24; i++ {
		must(t, east.WriteAt(randomData(int64(i), 1<<20), int64(i)<<20, false))
	}
	if n := testCounter(east.met.pullAheads); n == 0 {
		t.Skip("the peer kept up with 24 MiB through a 1 MiB buffer: no pull-ahead to drain through")
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(t, east.Drain(dctx))
	p.assertEqual()
}
