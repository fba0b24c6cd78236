package replication

import (
	"context"
	"testing"
	"time"
)

// Issue 18: with three sites, a lost primary's secondaries may each hold a
// different prefix of its writes; Freshness orders them so that the one
// holding the most takes over.
func TestFreshnessOrdersTheSecondariesOfALostPrimary(t *testing.T) {
	tr := newTrio(t, 4<<20)
	for _, n := range trioSites {
		tr.open(n)
	}
	east := tr.vols["east"]
	tr.waitInSync("east")
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(1, 1<<20), 0, true))
	drained(t, east)
	west, south := tr.vols["west"].Freshness(), tr.vols["south"].Freshness()
	if west.Source != "east" || west.Epoch == 0 || west.Epoch != south.Epoch || west.Ahead(south) || south.Ahead(west) {
		t.Fatalf("two secondaries holding every write are not equal: west %+v, south %+v", west, south)
	}
	if e := east.Freshness(); e.Ahead(west) || west.Ahead(e) {
		t.Fatalf("the primary and a secondary holding all its epochs are not equal: east %+v, west %+v", e, west)
	}
	// South is lost; east writes on and west gets it.
	tr.close("south")
	must(t, east.WriteAt(randomData(2, 1<<20), 1<<20, true))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, east.Flush())
	must(t, east.peers["west"].waitDrained(ctx))
	west = tr.vols["west"].Freshness()
	if !west.Ahead(south) || south.Ahead(west) {
		t.Fatalf("west holds writes south lacks but is not ahead of it: west %+v, south %+v", west, south)
	}
	// East is lost; west takes over and writes in a generation of its
	// own: still ahead of south's, which its history holds.
	must(t, east.Demote(context.Background()))
	tr.close("east")
	w := tr.vols["west"]
	must(t, w.peers["east"].waitState(ctx, Disconnected))
	must(t, w.Promote(context.Background(), false))
	must(t, w.WriteAt(randomData(3, 4096), 2<<20, true))
	if f := w.Freshness(); f.Generation == south.Generation || !f.Ahead(south) || south.Ahead(f) {
		t.Fatalf("the new primary's generation is not ahead of south's: west %+v, south %+v", f, south)
	}
}

func TestFreshnessAheadCases(t *testing.T) {
	base := Freshness{Disk: UpToDate, Generation: 7, History: []uint64{5, 3}, Source: "east", Epoch: 100}
	with := func(f func(*Freshness)) Freshness {
		c := base
		f(&c)
		return c
	}
	cases := []struct {
		name string
		f, o Freshness
		want bool
	}{
		{"more epochs of the same primary", with(func(c *Freshness) { c.Epoch = 101 }), base, true},
		{"fewer epochs", base, with(func(c *Freshness) { c.Epoch = 101 }), false},
		{"equal", base, base, false},
		{"epochs of another primary", with(func(c *Freshness) { c.Epoch, c.Source = 101, "west" }), base, false},
		{"epochs not known since a restart", with(func(c *Freshness) { c.Source, c.Epoch = "", 0 }), base, false},
		{"ahead of a restarted replica of the same generation", base, with(func(c *Freshness) { c.Source, c.Epoch = "", 0 }), false},
		{"a descendant generation", with(func(c *Freshness) { c.Generation, c.History, c.Epoch = 9, []uint64{7, 5}, 1 }), base, true},
		{"an ancestor generation", base, with(func(c *Freshness) { c.Generation, c.History = 9, []uint64{7, 5} }), false},
		{"unrelated generations", with(func(c *Freshness) { c.Generation, c.History = 9, []uint64{8} }), base, false},
		{"a never-synced replica is no ancestor", with(func(c *Freshness) { c.History = []uint64{0} }), with(func(c *Freshness) { c.Generation = 0 }), false},
		{"Inconsistent data is never ahead", with(func(c *Freshness) { c.Disk, c.Epoch = Inconsistent, 200 }), base, false},
		{"Consistent data counts", with(func(c *Freshness) { c.Disk, c.Epoch = Consistent, 101 }), base, true},
		{"ahead of a replica that cannot serve", base, with(func(c *Freshness) { c.Disk = Outdated }), true},
	}
	for _, c := range cases {
		if got := c.f.Ahead(c.o); got != c.want {
			t.Errorf("%s: Ahead = %v, want %v (%+v vs %+v)", c.name, got, c.want, c.f, c.o)
		}
	}
}

// CI, this stop: an old primary's resync cut by the new primary's crash
// and started again counted none of its lost writes discarded, because the
// peer had merged this side's marks into its own bitmap in between. The
// peer's marks from the first handshake after the crash are kept.
func TestTheFirstHandshakesMarksAreKeptForAResyncStartedAgain(t *testing.T) {
	tr := newTrio(t, 1<<20)
	p := tr.open("east").peers["west"]
	first, merged := []uint64{0b0100}, []uint64{0b0111}
	if got := p.crashBase(first); got[0] != first[0] {
		t.Fatalf("first handshake: %b", got)
	}
	if got := p.crashBase(merged); got[0] != first[0] {
		t.Fatalf("a handshake after a cut resync counted against the merged marks %b, want the first ones %b", got[0], first[0])
	}
}
