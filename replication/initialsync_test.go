package replication

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// prefill writes a side's backing file before its first start, as an
// operator's device holds old contents.
func (p *pair) prefill(name string, data []byte) {
	p.t.Helper()
	if err := os.WriteFile(p.cfgs[name].Path, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// Issue 18: new_replicas defaulted to "uptodate", so two replicas that
// were never synced were declared equal and the secondary silently
// differed. Now a replica on storage it did not create is Inconsistent:
// the ticket's grant is refused there until an operator chooses the first
// primary (a forced promotion), which full-syncs every new peer, with
// progress, until the two copies are byte-equal.
func TestANewReplicaOnOldContentsGetsAFullSyncFromTheFirstPrimary(t *testing.T) {
	const size = 8 << 20
	p := newPair(t, size, func(c *VolumeConfig) { c.ResyncRate = 4 << 20 })
	p.prefill("east", randomData(1, size))
	p.prefill("west", randomData(2, size))
	east, west := p.open("east"), p.open("west")
	for _, v := range []*Volume{east, west} {
		if d := v.Status().Disk; d != Inconsistent {
			t.Fatalf("a replica on old contents starts %s", d)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if s := east.Status().Peers[0]; !s.Connected {
			return fmt.Errorf("east's peer is %s", s.State)
		}
		return nil
	})
	if err := east.Promote(context.Background(), false); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("promotion of a never-synced replica: %v", err)
	}
	must(t, east.Promote(context.Background(), true))
	sawProgress := false
	eventually(t, 30*time.Second, func() error {
		s := east.Status().Peers[0]
		if s.State == SyncSource && s.ResyncTotal == size && s.ResyncRemaining > 0 && s.ResyncRemaining < size {
			sawProgress = true
		}
		if s.State != InSync {
			return fmt.Errorf("east's peer is %s, %d of %d bytes to go", s.State, s.ResyncRemaining, s.ResyncTotal)
		}
		return nil
	})
	if !sawProgress {
		t.Error("no progress was seen during the initial sync")
	}
	drained(t, east)
	p.assertEqual()
	// West turns UpToDate when it processes the end of the resync, a
	// moment after east saw it acknowledged.
	waitDisk(t, west, UpToDate)
}

func waitDisk(t *testing.T, v *Volume, want DiskState) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if d := v.Status().Disk; d != want {
			return fmt.Errorf("disk %s, want %s", d, want)
		}
		return nil
	})
}

// Two replicas on storage geobooth created itself (blank, sparse files)
// are equal by construction: no initial sync, both UpToDate.
func TestReplicasCreatedBlankStartInSync(t *testing.T) {
	p := newPair(t, 4<<20, nil)
	east, west := p.open("east"), p.open("west")
	p.waitState("east", InSync)
	for _, v := range []*Volume{east, west} {
		if d := v.Status().Disk; d != UpToDate {
			t.Fatalf("a blank replica geobooth created starts %s", d)
		}
	}
	if s := east.Status().Peers[0]; s.ResyncTotal != 0 {
		t.Fatalf("blank replicas resynced %d bytes", s.ResyncTotal)
	}
}

// Issue 18: skipping the initial sync is the operator's explicit
// statement that both devices are blank (DRBD's new-current-uuid
// --clear-bitmap): both sides become UpToDate without a resync. It is
// refused while a peer is not connected, and once either side was
// written.
func TestSkipInitialSyncDeclaresBlankDevicesEqual(t *testing.T) {
	const size = 4 << 20
	p := newPair(t, size, nil)
	p.prefill("east", make([]byte, size))
	p.prefill("west", make([]byte, size))
	east := p.open("east")
	if err := east.SkipInitialSync(); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("skip without the peer: %v", err)
	}
	west := p.open("west")
	p.waitState("east", InSync)
	p.waitState("west", InSync)
	must(t, east.SkipInitialSync())
	for name, v := range map[string]*Volume{"east": east, "west": west} {
		eventually(t, 10*time.Second, func() error {
			if d := v.Status().Disk; d != UpToDate {
				return fmt.Errorf("%s is %s after the skip", name, d)
			}
			return nil
		})
	}
	if east.Status().Generation != west.Status().Generation {
		t.Fatalf("generations after the skip: east %s, west %s", east.Status().Generation, west.Status().Generation)
	}
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(3, BlockSize), 0, true))
	drained(t, east)
	p.assertEqual()
	if s := east.Status().Peers[0]; s.ResyncTotal != 0 {
		t.Fatalf("skipped initial sync resynced %d bytes", s.ResyncTotal)
	}
	// Written: refused at either side.
	for name, v := range map[string]*Volume{"east": east, "west": west} {
		if err := v.SkipInitialSync(); err == nil || !strings.Contains(err.Error(), "written") {
			t.Fatalf("skip at %s after a write: %v", name, err)
		}
	}
}

// The peer wrote (it was promoted by force alone): a skip at this side
// would declare its data equal to ours; refused.
func TestSkipInitialSyncIsRefusedWhenThePeerWrote(t *testing.T) {
	const size = 4 << 20
	p := newPair(t, size, nil)
	p.prefill("east", make([]byte, size))
	p.prefill("west", make([]byte, size))
	west := p.open("west")
	must(t, west.Promote(context.Background(), true))
	must(t, west.WriteAt(randomData(4, BlockSize), 0, true))
	east := p.open("east")
	p.waitState("east", InSync, SyncTarget)
	if err := east.SkipInitialSync(); err == nil || !strings.Contains(err.Error(), "written") {
		t.Fatalf("skip while the peer holds written data: %v", err)
	}
	p.waitState("east", InSync)
	drained(t, west)
	p.assertEqual()
}

// A site whose disk was replaced comes back with a blank file geobooth
// creates. If the others' history no longer holds the generation blank
// replicas start in (here: the volume began with a forced first primary),
// the handshake found no common generation and refused "unrelated data";
// a blank replica has nothing to lose: it takes a full sync.
func TestABlankReplicaJoiningOldDataTakesAFullSync(t *testing.T) {
	p := newPair(t, 4<<20, func(c *VolumeConfig) {
		if strings.Contains(c.Path, "east") {
			c.NewReplicas = "full"
		}
	})
	east := p.open("east")
	must(t, east.Promote(context.Background(), true))
	must(t, east.WriteAt(randomData(5, 4<<20), 0, true))
	west := p.open("west")
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
	waitDisk(t, west, UpToDate)
}
