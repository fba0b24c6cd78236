package replication

import (
	"testing"
)

// Issue 18 (where the bench's time went): a burst larger than send_buffer
// pulls a slow peer ahead, and it is caught up by a checksum resync. With
// on_congestion "block" the writers wait instead: no pull-ahead, no
// resync, and the lag stays within send_buffer (and one write).
func TestOnCongestionBlockBoundsTheLagWithoutPullAhead(t *testing.T) {
	for _, mode := range []string{"pull-ahead", "block"} {
		t.Run(mode, func(t *testing.T) {
			p, px := proxied(t, 16<<20, func(c *VolumeConfig) {
				c.SendBuffer, c.OnCongestion = 1<<20, mode
			})
			px.set(func(px *proxy) { px.rate = 4 << 20 })
			east := p.vols["east"]
			const chunk = 256 << 10
			maxLag := int64(0)
			for i := 0; i < 32; i++ {
				must(t, east.WriteAt(randomData(int64(i), chunk), int64(i)*chunk, false))
				if lag := east.Status().Peers[0].LagBytes; lag > maxLag {
					maxLag = lag
				}
			}
			must(t, east.Flush())
			px.set(func(px *proxy) { px.rate = 0 })
			p.waitState("east", InSync)
			drained(t, east)
			p.assertEqual()
			pulled := testCounter(east.met.pullAheads)
			switch mode {
			case "pull-ahead":
				if pulled == 0 {
					t.Fatal("the slow peer was never pulled ahead: the test does not congest the link")
				}
			case "block":
				if pulled != 0 {
					t.Fatalf("pulled ahead %v times with on_congestion block", pulled)
				}
				if w := testCounter(east.met.congestionWaits); w == 0 {
					t.Fatal("no write waited for the peer")
				}
				if limit := int64(1<<20) + chunk; maxLag > limit {
					t.Fatalf("lag reached %d bytes, more than send_buffer and one write (%d)", maxLag, limit)
				}
			}
		})
	}
}
