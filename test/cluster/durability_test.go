package cluster

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// A member that cannot make its vote durable must not cast it: after a
// crash it would not know it voted, and could vote again in the same term
// for another site. With east killed and the arbitrator's disk read-only,
// west must not take the ticket (the arbitrator's vote is the only one it
// can get); once the disk is writable again, west takes it.
func TestVoterWithReadOnlyStateDoesNotVote(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	disk := tc.MountDisk(t, filepath.Join(c.Dir, "state", "arbitrator"))
	c.StartAll()
	east, west, arb := c.Member("east"), c.Member("west"), c.Member("arbitrator")
	if _, errOut, code := arb.Ctl("grant", "-s", "east", "web"); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	waitOwner(t, c, "web", "east", 15*time.Second)

	disk.ReadOnly(true)
	east.Kill()
	killed := time.Now()
	// The usual failover takes about expire + acquire_after (12 s) here;
	// watch for twice that.
	for time.Since(killed) < 25*time.Second {
		tk, err := west.Ticket("web")
		if err == nil && tk.HeldLocally {
			t.Fatalf("west took web %v after the kill with the arbitrator unable to store its vote", time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	disk.ReadOnly(false)
	recovered := time.Now()
	tc.Eventually(t, 40*time.Second, func() error {
		tk, err := west.Ticket("web")
		if err != nil {
			return err
		}
		if !tk.HeldLocally {
			return fmt.Errorf("west: %s, owner %q", tk.State, tk.Owner)
		}
		return nil
	})
	t.Logf("west took web %v after the arbitrator's disk came back", time.Since(recovered).Round(time.Millisecond))
}
