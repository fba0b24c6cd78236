package replication

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// Issue 18: recovering a damaged replica meant moving files away by hand.
// invalidate at west, whose copy was damaged behind the engine's back,
// replaces every block with east's by a full sync; it is refused at the
// primary and without a connected peer holding good data.
func TestInvalidateResyncsFullyFromThePeer(t *testing.T) {
	p := newPair(t, 4<<20, nil)
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(1, 4<<20), 0, true))
	drained(t, east)
	if err := east.Invalidate(); !errors.Is(err, ErrWouldDiscardPrimary) {
		t.Fatalf("invalidate at the primary: %v", err)
	}
	// Damage west's copy on disk, as a failing disk or a careless dd would.
	f, err := os.OpenFile(p.cfgs["west"].Path, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0xbd}, 3*BlockSize), 100*BlockSize)
	must(t, err)
	must(t, f.Close())
	if bytes.Equal(p.file("east"), p.file("west")) {
		t.Fatal("west's copy was not damaged")
	}
	must(t, west.Invalidate())
	if d := west.Status().Disk; d != Inconsistent {
		t.Fatalf("west's disk after invalidate: %s", d)
	}
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	drained(t, east)
	p.assertEqual()
	waitDisk(t, west, UpToDate)
	// Without a peer: refused (nothing to take the data from).
	p.close("east")
	p.waitState("west", Disconnected)
	if err := west.Invalidate(); err == nil || !strings.Contains(err.Error(), "no connected peer") {
		t.Fatalf("invalidate without a peer: %v", err)
	}
}

// Issue 18: a split brain with the disconnect policy waited for files to
// be moved by hand. discard-my-data at west (demoted) makes east's data
// win at the next handshake: west's write since the split is gone, and
// counted; east's stays. It is refused at a primary and without a split
// brain.
func TestDiscardMyDataResolvesASplitBrain(t *testing.T) {
	p, px := proxied(t, 4<<20, nil)
	east, west := p.vols["east"], p.vols["west"]
	if err := west.DiscardMyData(); err == nil || !strings.Contains(err.Error(), "no peer is in split brain") {
		t.Fatalf("discard-my-data without a split brain: %v", err)
	}
	must(t, east.WriteAt(randomData(1, 64<<10), 0, true))
	drained(t, east)
	px.set(func(px *proxy) { px.cut = true })
	px.drop()
	p.waitState("east", Disconnected)
	p.waitState("west", Disconnected)
	must(t, east.WriteAt(bytes.Repeat([]byte{0xe}, BlockSize), 1<<20, true))
	must(t, west.Promote(context.Background(), false))
	must(t, west.WriteAt(bytes.Repeat([]byte{0xf}, 2*BlockSize), 2<<20, true))
	px.set(func(px *proxy) { px.cut = false })
	p.waitState("east", SplitBrain)
	p.waitState("west", SplitBrain)
	if err := west.DiscardMyData(); !errors.Is(err, ErrWouldDiscardPrimary) {
		t.Fatalf("discard-my-data at a primary: %v", err)
	}
	must(t, west.Demote(context.Background()))
	must(t, west.DiscardMyData())
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	drained(t, east)
	p.assertEqual()
	if got := p.file("west")[2<<20]; got != 0 {
		t.Fatalf("west's write since the split survived: %#x", got)
	}
	if got := p.file("west")[1<<20]; got != 0xe {
		t.Fatalf("east's write since the split did not reach west: %#x", got)
	}
	if n := west.Status().Discarded; n != 2 {
		t.Fatalf("west counted %d discarded blocks, want its 2", n)
	}
	west.mu.Lock()
	spent := !west.m.DiscardMyData
	west.mu.Unlock()
	if !spent {
		t.Fatal("discard-my-data still set after the resync it asked for")
	}
}

// Issue 18: after move, move back, kill -9 of east with nothing pending
// and a restart, east reported discarded_blocks 1024 (its activity log's
// hot extents) although west held every byte. Only blocks that differ
// from the new primary's are counted now: none here; in the test where
// the old primary had one unreplicated write, exactly that one.
func TestDiscardedCountsOnlyBlocksThatDiffered(t *testing.T) {
	p := newPair(t, 8<<20, nil)
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	must(t, east.WriteAt(randomData(1, 2<<20), 0, true))
	// A planned move and back (the peer hears of the demotion on the link).
	must(t, east.Handover(ctx))
	eventually(t, 5*time.Second, func() error { return west.Promote(ctx, false) })
	must(t, west.WriteAt(randomData(2, 1<<20), 3<<20, true))
	must(t, west.Handover(ctx))
	eventually(t, 5*time.Second, func() error { return east.Promote(ctx, false) })
	must(t, east.WriteAt(randomData(3, 1<<20), 1<<20, true))
	drained(t, east)
	east.crash()
	delete(p.vols, "east")
	p.waitState("west", Disconnected)
	must(t, west.Promote(ctx, false))
	east = p.open("east")
	p.waitState("west", InSync)
	drained(t, west)
	p.assertEqual()
	if n := east.Status().Discarded; n != 0 {
		t.Fatalf("east counted %d discarded blocks; west held every byte", n)
	}
	if n := testCounter(east.met.discarded); n != 0 {
		t.Fatalf("the discarded-blocks metric counted %v", n)
	}
}

// Issue 18: repl verify ran inside one HTTP request, and ticketctl gave up
// after 15 s. StartVerify runs it in the background: Status shows it
// running, a second one is refused meanwhile, and the outcome (the
// differing blocks) stays in Status with the progress metric at 1.
func TestVerifyRunsInTheBackground(t *testing.T) {
	p, px := proxied(t, 16<<20, nil)
	east := p.vols["east"]
	must(t, east.WriteAt(randomData(1, 16<<20), 0, true))
	drained(t, east)
	f, err := os.OpenFile(p.cfgs["west"].Path, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0x5}, 2*BlockSize), 7*BlockSize)
	must(t, err)
	must(t, f.Close())
	// West's answers are held back: the verify cannot end yet.
	px.set(func(px *proxy) { px.stallBack = true })
	job, err := east.StartVerify("west", false)
	must(t, err)
	if !job.Running || job.Total != 16<<20/BlockSize {
		t.Fatalf("started job: %+v", job)
	}
	if st := east.Status().Verify; st == nil || !st.Running {
		t.Fatalf("status while running: %+v", st)
	}
	if _, err := east.StartVerify("west", false); !errors.Is(err, ErrVerifyRunning) {
		t.Fatalf("a second verify while one runs: %v", err)
	}
	px.set(func(px *proxy) { px.stallBack = false })
	var done *VerifyJob
	eventually(t, 30*time.Second, func() error {
		done = east.Status().Verify
		if done == nil || done.Running {
			return errors.New("still running")
		}
		return nil
	})
	if done.Error != "" || done.Checked != done.Total || done.Differing != 2 || len(done.First) != 2 || done.First[0] != 7 {
		t.Fatalf("verify outcome: %+v", done)
	}
	if r := testCounter(east.met.verifyProgress); r != 1 {
		t.Fatalf("progress metric %v at the end", r)
	}
}
