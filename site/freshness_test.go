package site

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/replication"
)

// views is south's view of the other sites, with a clock the test moves.
func views(t *testing.T, alive map[string]bool) (*replicaViews, *time.Time) {
	t.Helper()
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	vc := replication.VolumeConfig{Name: "data", Peers: []replication.PeerConfig{{Name: "east"}, {Name: "west"}}}
	rv := newReplicaViews("south", []replication.VolumeConfig{vc}, func(s string) bool { return alive[s] },
		slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rv.now = func() time.Time { return now }
	return rv, &now
}

func report(t *testing.T, volume string, f replication.Freshness) []byte {
	t.Helper()
	b, err := encodeReport(volume, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Issue 18: east (the primary) is lost; west applied 5 more of its
// epochs than south. South lets west take the ticket first, once.
func TestASiteDefersToALiveSiteWithAMoreRecentReplica(t *testing.T) {
	alive := map[string]bool{"east": false, "west": true}
	rv, now := views(t, alive)
	mine := replication.Freshness{Disk: replication.UpToDate, Generation: 7, Source: "east", Epoch: 100}
	theirs := mine
	theirs.Epoch = 105
	lost := theirs
	lost.Source, lost.Epoch = "east", 110

	rv.Receive("east", report(t, "data", lost))
	if site, _ := rv.ahead("data", mine); site != "" {
		t.Fatalf("deferred to %s: the lost primary's own report (and it is dead)", site)
	}
	alive["east"] = true
	if site, _ := rv.ahead("data", mine); site != "" {
		t.Fatalf("deferred to %s: a site's report on data it wrote as primary does not count", site)
	}
	rv.Receive("west", report(t, "data", theirs))
	if site, f := rv.ahead("data", mine); site != "west" || f.Epoch != 105 {
		t.Fatalf("ahead = %q %+v, want west at epoch 105", site, f)
	}
	if site, _ := rv.ahead("data", theirs); site != "" {
		t.Fatalf("west's own replica is not behind itself, yet %s", site)
	}
	if site, _ := rv.ahead("other", mine); site != "" {
		t.Fatalf("a report on another volume counted: %s", site)
	}
	// West dies: its report no longer counts.
	alive["west"] = false
	if site, _ := rv.ahead("data", mine); site != "" {
		t.Fatalf("deferred to a dead site %s", site)
	}
	alive["west"] = true
	*now = now.Add(reportsFresh + time.Second)
	if site, _ := rv.ahead("data", mine); site != "" {
		t.Fatalf("deferred on a report older than %v", reportsFresh)
	}

	// The deferral: once, then the retry a renewal period later acquires;
	// a new loss after three renewal periods defers again.
	renewal := 5 * time.Second
	if !rv.deferTo("web", renewal) {
		t.Fatal("the first attempt did not defer")
	}
	*now = now.Add(renewal)
	if rv.deferTo("web", renewal) {
		t.Fatal("the retry deferred again: a site that cannot take the ticket would keep it from every other")
	}
	if !rv.deferTo("batch", renewal) {
		t.Fatal("another ticket's first attempt did not defer")
	}
	*now = now.Add(3 * renewal)
	if !rv.deferTo("web", renewal) {
		t.Fatal("a later loss did not defer")
	}
	if rv.deferTo("web", 0) {
		t.Fatal("deferred with no renewal period known")
	}
	if got := testutil.ToFloat64(rv.deferals); got != 3 {
		t.Fatalf("deferrals counted %v, want 3", got)
	}
}

func TestReplicaReportsFromStrangersAreRefused(t *testing.T) {
	rv, _ := views(t, map[string]bool{"east": true, "west": true, "north": true})
	mine := replication.Freshness{Disk: replication.UpToDate, Generation: 7, Source: "east", Epoch: 100}
	ahead := mine
	ahead.Epoch = 200
	long := ahead
	long.History = make([]uint64, 65)
	for _, c := range []struct {
		from    string
		payload []byte
	}{
		{"north", report(t, "data", ahead)}, // not a peer of data
		{"south", report(t, "data", ahead)}, // this site's own, echoed
		{"west", []byte(`{"volume":"data","disk":"UpToDate","generation":7,"source":"east","epoch":200,"extra":1}`)},
		{"west", []byte(`{"volume":"data"} {"volume":"data"}`)},
		{"west", []byte(`not json`)},
		{"west", report(t, "data", long)},
	} {
		rv.Receive(c.from, c.payload)
		if site, _ := rv.ahead("data", mine); site != "" {
			t.Fatalf("a report from %s (%q) was taken", c.from, c.payload)
		}
	}
	if got := testutil.ToFloat64(rv.refused); got != 5 {
		t.Fatalf("refused reports counted %v, want 5 (this site's own echo is not counted)", got)
	}
}

func FuzzReplicaReport(f *testing.F) {
	b, _ := json.Marshal(replicaReport{Volume: "data", Freshness: replication.Freshness{Disk: replication.UpToDate, Generation: 7, History: []uint64{3}, Source: "east", Epoch: 9}})
	f.Add("west", b)
	f.Add("north", b)
	f.Add("west", []byte(`{"volume":"data","history":[1,2,3],"epoch":-1}`))
	f.Add("west", []byte(strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, from string, payload []byte) {
		rv, _ := views(t, map[string]bool{"east": true, "west": true})
		rv.Receive(from, payload)
		mine := replication.Freshness{Disk: replication.UpToDate, Generation: 7, Source: "east", Epoch: 9}
		site, theirs := rv.ahead("data", mine)
		if site != "" && (site != from || from == theirs.Source || !theirs.Ahead(mine)) {
			t.Fatalf("deferred to %q on %+v from %q", site, theirs, from)
		}
	})
}
