package replication

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A write's buffer is shared by the peers' queues and reused for a later
// write once every queue sent or dropped it. Released buffers are zeroed
// here, so one released too early sends zeroes. Writes of distinct data
// wait to be sent behind a slow link with a small window: the peer ends
// up byte-equal. Then the link is cut while writes wait in the queue,
// and while the peer holds an epoch that was not closed, dropping them:
// every pooled buffer comes back.
func TestSharedPayloadsAreReusedOnlyOnceSentOrDropped(t *testing.T) {
	poisonReleased.Store(true)
	t.Cleanup(func() { poisonReleased.Store(false) })
	const chunk = 2 * poolStep
	p := newPair(t, 24<<20, func(c *VolumeConfig) { c.SendBuffer = 64 << 20 })
	px := newProxy(t, p.addr["west"])
	px.set(func(px *proxy) { px.rate, px.rcvBuf = 8<<20, 32<<10 })
	p.via["west"] = px.addr()
	east, west := p.open("east"), p.open("west")
	out := func() int64 { return east.buffersOut.Load() + west.buffersOut.Load() }
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	write := func(from, to int) (held int64) {
		for i := from; i < to; i++ {
			// A place of its own: no later write hides one that
			// went wrong.
			must(t, east.WriteAt(randomData(int64(i), chunk), int64(i)*chunk, false))
			held = max(held, out())
		}
		must(t, east.Flush())
		return held
	}
	if held := write(0, 96); held < 16 {
		t.Fatalf("at most %d writes waited to be sent: the test does not hold buffers", held)
	}
	drained(t, east)
	p.assertEqual()

	// 64 KiB/s: the sender is held in its first frame, the next writes
	// wait in the queue.
	px.set(func(px *proxy) { px.rate = 64 << 10 })
	write(96, 160) // 8 MiB: more than the socket buffers take
	pe := east.peers["west"]
	pe.mu.Lock()
	queued := len(pe.queue)
	pe.mu.Unlock()
	if queued < 8 {
		t.Fatalf("%d writes in the queue when the link is cut: the test does not drop any", queued)
	}
	px.set(func(px *proxy) { px.rate = 0 })
	px.drop()
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
	returned := func(want int64) {
		t.Helper()
		eventually(t, 5*time.Second, func() error {
			if n := out(); n != want {
				return fmt.Errorf("%d pooled buffers out, want %d", n, want)
			}
			return nil
		})
	}
	returned(0)

	// Writes of an epoch still open wait at the peer for its barrier
	// (east gave its buffers back once sent): a cut drops them there.
	for i := 160; i < 164; i++ {
		must(t, east.WriteAt(randomData(int64(i), chunk), int64(i)*chunk, false))
	}
	returned(4)
	px.drop()
	p.waitState("east", InSync)
	must(t, east.Flush())
	drained(t, east)
	p.assertEqual()
	returned(0)
}
