package cluster

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/geobooth/geobooth/replication"
)

// Issue 18: two replicas on storage that held old contents were declared
// equal. Now both start Inconsistent, no site takes the ticket on its
// own, the operator's forced grant chooses the first primary, and west
// takes a full sync from east, with progress, until the two images are
// byte-equal.
func TestNewReplicasOnOldContentsSyncFullyFromTheFirstPrimary(t *testing.T) {
	const size = 32 << 20
	c := newDataClusterWith(t, dataOptions{extra: `resync_rate = "16MiB"`, prepare: func(dir string) {
		for i, m := range []string{"east", "west"} {
			b := make([]byte, size)
			rand.New(rand.NewSource(int64(i + 1))).Read(b)
			p := imagePath(dir, m)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}})
	for _, m := range []string{"east", "west"} {
		c.waitVolume(t, m, 20*time.Second, "Inconsistent and connected", func(st api.Volume) bool {
			return st.Disk == replication.Inconsistent && len(st.Peers) == 1 && st.Peers[0].Connected
		})
	}
	// Refused, and the ticket says why.
	if _, errOut, code := c.Member("east").Ctl("grant", "-s", "east", "--timeout", "20s", "web"); code == 0 {
		t.Fatal("web was granted to a site whose replica was never synced")
	} else {
		t.Logf("grant without -F: %s", strings.TrimSpace(errOut))
	}
	if out, _ := c.Member("east").Get("/api/v1/tickets/web"); !strings.Contains(out, `volume \"data\" holds Inconsistent data here`) {
		t.Fatalf("the ticket does not say why it was not acquired:\n%s", out)
	}
	if out, errOut, code := c.Member("east").Ctl("grant", "-F", "-s", "east", "web"); code != 0 {
		t.Fatalf("forced grant: %s%s", out, errOut)
	}
	sawProgress := false
	c.waitVolume(t, "east", 60*time.Second, "primary, the initial sync done", func(st api.Volume) bool {
		if len(st.Peers) != 1 {
			return false
		}
		p := st.Peers[0]
		if p.State == replication.SyncSource && p.ResyncRemaining > 0 && p.ResyncRemaining < p.ResyncTotal {
			sawProgress = true
		}
		return st.Role == replication.Primary && p.State == replication.InSync
	})
	if !sawProgress {
		t.Error("no progress of the initial sync was seen in the API")
	}
	c.waitVolume(t, "west", 10*time.Second, "UpToDate", func(st api.Volume) bool { return st.Disk == replication.UpToDate })
	if e, w := c.image(t, "east"), c.image(t, "west"); !bytes.Equal(e, w) {
		t.Fatalf("after the initial sync the images differ: %s", firstDifference(e, w))
	}
}
