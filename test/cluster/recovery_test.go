package cluster

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/geobooth/geobooth/replication"
)

// Issue 18: recovery meant moving files away by hand. Through ticketctl:
// invalidate at the primary is refused; at west, whose image was damaged
// behind the daemon's back, it discards west's copy and a full sync makes
// it equal to east's again; discard-my-data without a split brain is
// refused.
func TestReplInvalidateThroughTicketctl(t *testing.T) {
	slow(t)
	c := newDataCluster(t, "")
	c.grantEast(t)
	if _, err := qemuIO(t, c.nbd["east"], false, "write -P 0x5a 0 4M"); err != nil {
		t.Fatal(err)
	}
	c.waitVolume(t, "east", 10*time.Second, "in sync with nothing pending", func(st api.Volume) bool {
		return primaryInSync(st) && st.Peers[0].LagBytes == 0
	})
	east, west := c.Member("east"), c.Member("west")
	if _, errOut, code := east.Ctl("repl", "invalidate", "data"); code != 1 || !strings.Contains(errOut, "is primary") {
		t.Fatalf("invalidate at the primary: exit %d, %s", code, errOut)
	}
	if _, errOut, code := west.Ctl("repl", "discard-my-data", "data"); code != 1 || !strings.Contains(errOut, "no peer is in split brain") {
		t.Fatalf("discard-my-data without a split brain: exit %d, %s", code, errOut)
	}
	c.damage(t, "west", 1<<20, bytes.Repeat([]byte{0xbd}, 8192))
	if bytes.Equal(c.image(t, "east"), c.image(t, "west")) {
		t.Fatal("west's image was not damaged")
	}
	out, errOut, code := west.Ctl("repl", "invalidate", "data")
	if code != 0 || !strings.Contains(out, "full sync") {
		t.Fatalf("invalidate at west: exit %d, %s%s", code, out, errOut)
	}
	c.waitVolume(t, "west", 20*time.Second, "UpToDate and in sync again", func(st api.Volume) bool {
		return st.Disk == replication.UpToDate && len(st.Peers) == 1 && st.Peers[0].State == replication.InSync
	})
	if !bytes.Equal(c.image(t, "east"), c.image(t, "west")) {
		t.Fatal("the images differ after the full sync")
	}
}

// damage overwrites part of a member's backing file, as a failing disk or
// a careless dd would.
func (c *dataCluster) damage(t *testing.T, member string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(imagePath(c.dir, member), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
