package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"

	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/replication"
)

// Issue 18: with protocol C, kill -9 of the primary in the middle of a
// stream of writes loses nothing acknowledged: every write qemu-io
// reported done is in west's copy when west takes over. The sites are
// 5 ms apart each way (protocol A loses the writes of the last round
// trip or so there).
func TestProtocolCLosesNoAcknowledgedWriteAtAFailover(t *testing.T) {
	slow(t)
	c := newDataClusterWith(t, dataOptions{extra: `protocol = "C"`, via: func(_ string, port int) string {
		return delayProxy(t, fmt.Sprintf("127.0.0.1:%d", port), 5*time.Millisecond)
	}})
	east := c.Member("east")
	c.grantEast(t)
	const n = 3000
	done := make(chan int, 1)
	go func() {
		k, _ := writeSequence(c.nbd["east"], n)
		done <- k
	}()
	tc.Eventually(t, 30*time.Second, func() error {
		if k, _ := prefix(c.image(t, "east"), n); k < 300 {
			return fmt.Errorf("east has written %d blocks, waiting for 300", k)
		}
		return nil
	})
	east.Kill()
	acked := <-done
	waitOwner(t, c.Cluster, "web", "west", 20*time.Second)
	c.waitVolume(t, "west", 10*time.Second, "primary", func(s api.Volume) bool { return s.Role == replication.Primary })
	k, ok := prefix(c.exported(t, "west"), n)
	if !ok {
		t.Fatal("west's copy is not a prefix of east's writes")
	}
	if k < acked {
		t.Fatalf("west has %d blocks, but qemu-io saw %d writes complete: %d acknowledged writes lost", k, acked, acked-k)
	}
	if acked >= n {
		t.Fatalf("the write stream ended (%d writes) before east was killed: nothing was tested", acked)
	}
	t.Logf("qemu-io saw %d writes complete, west has %d blocks", acked, k)
}
