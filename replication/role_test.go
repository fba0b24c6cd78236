package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rot damages a side's copy of block b behind the engine's back.
func (p *pair) rot(name string, b int64) {
	p.t.Helper()
	f, err := os.OpenFile(p.cfgs[name].Path, os.O_WRONLY, 0)
	must(p.t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("rot"), b*BlockSize+17)
	must(p.t, err)
}

func block(buf []byte, b int64) []byte { return buf[b*BlockSize : (b+1)*BlockSize] }

// Issue 17, F3: `repl verify --repair` run on the secondary resynced the
// secondary's rotten block onto the live primary, and copied the
// secondary's generation onto it.
func TestRepairFromTheSecondaryIsRefusedAndLeavesThePrimaryUnchanged(t *testing.T) {
	p := newPair(t, 8<<20, nil)
	east := p.open("east")
	west := p.open("west")
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(3, 8<<20), 0, true))
	drained(t, east)
	p.waitState("west", InSync)
	good := append([]byte(nil), block(p.file("east"), 99)...)
	p.rot("west", 99)

	rep, err := west.Verify(context.Background(), "east", true)
	if err == nil || rep.Resynced {
		t.Fatalf("a repair from the secondary was accepted: %+v, %v", rep, err)
	}
	if !errors.Is(err, ErrRepairDirection) {
		t.Fatalf("refused with %v, want ErrRepairDirection", err)
	}
	// Comparing is still allowed from either side.
	rep, err = west.Verify(context.Background(), "east", false)
	must(t, err)
	if fmt.Sprint(rep.Differing) != "[99]" {
		t.Fatalf("verify from the secondary: %+v", rep)
	}
	if !bytes.Equal(block(p.file("east"), 99), good) {
		t.Fatal("the primary's block changed")
	}
	// The repair from the primary mends the secondary.
	rep, err = east.Verify(context.Background(), "west", true)
	must(t, err)
	if !rep.Resynced {
		t.Fatalf("the primary's repair did not resync: %+v", rep)
	}
	waitRepaired(t, east, "west")
	drained(t, east)
	p.assertEqual()
}

// With no primary, the side the operator runs the repair on is the source.
func TestRepairWithNoPrimaryFlowsFromTheSideThatRunsIt(t *testing.T) {
	p := newPair(t, 8<<20, nil)
	east := p.open("east")
	west := p.open("west")
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	p.rot("west", 7)
	rep, err := west.Verify(context.Background(), "east", true)
	must(t, err)
	if !rep.Resynced || fmt.Sprint(rep.Differing) != "[7]" {
		t.Fatalf("repair with no primary: %+v", rep)
	}
	waitRepaired(t, west, "east")
	p.assertEqual()
	if !bytes.Contains(block(p.file("east"), 7), []byte("rot")) {
		t.Fatal("the repair did not flow from west")
	}
	if st := east.Status(); st.Disk != UpToDate {
		t.Fatalf("east after the repair: %s", st.Disk)
	}
}

// Every frame that would change a replica is refused by a primary, from
// whatever peer it comes: the session ends, the primary's data and
// generation stay as they were.
func TestPrimaryRefusesFramesThatWouldChangeIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     frameType
		payload func() []byte
	}{
		{"write", fWrite, func() []byte {
			var e enc
			e.u64(1)
			e.u64(99 * BlockSize)
			return append(e.b, bytes.Repeat([]byte{0xab}, BlockSize)...)
		}},
		{"resync data", fRSData, func() []byte {
			var e enc
			e.u64(99 * BlockSize)
			return append(e.b, bytes.Repeat([]byte{0xab}, BlockSize)...)
		}},
		{"resync done", fRSDone, func() []byte { return encodeGen(0xbad, []uint64{0xbad}) }},
		{"generation", fGen, func() []byte { return encodeGen(0xbad, []uint64{0xbad}) }},
		{"behind", fBehind, func() []byte { return nil }},
		{"resize", fResize, func() []byte { return []byte{0, 0, 0, 0, 0x10, 0, 0, 0} }},
		{"skip initial sync", fSkipSync, func() []byte { return []byte{0, 0, 0, 0, 0, 0, 0xba, 0xd1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, 4<<20, nil)
			east := p.open("east")
			west := p.open("west")
			p.waitState("east", InSync)
			must(t, east.Promote(context.Background(), false))
			must(t, east.WriteAt(randomData(4, 4<<20), 0, true))
			drained(t, east)
			before := p.file("east")
			gen := east.Status().Generation
			bad := testutil.ToFloat64(east.met.badFrames)
			west.peers["east"].enqueue(tc.typ, tc.payload())
			// The primary drops the session (and the peers reconnect).
			eventually(t, 10*time.Second, func() error {
				if testutil.ToFloat64(east.met.badFrames) == bad {
					return errors.New("the session went on")
				}
				return nil
			})
			if !bytes.Equal(p.file("east"), before) {
				t.Fatal("the primary's data changed")
			}
			if st := east.Status(); st.Generation != gen || st.Disk != UpToDate {
				t.Fatalf("the primary's state changed: generation %v (was %v), disk %s", st.Generation, gen, st.Disk)
			}
		})
	}
}

// waitRepaired waits until v has no block left to resync to peer.
func waitRepaired(t *testing.T, v *Volume, peer string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if n := v.peers[peer].bm.ones(); n != 0 {
			return fmt.Errorf("%d blocks left to repair", n)
		}
		return nil
	})
}
