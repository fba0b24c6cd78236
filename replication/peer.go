package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/geobooth/geobooth/api"
)

// PeerState is the replication state with one peer, as this replica sees
// it.
type PeerState = api.PeerState

// Peer states.
const (
	Disconnected PeerState = "Disconnected"
	Connecting   PeerState = "Connecting"
	// InSync: connected; writes of the primary (either side) stream.
	InSync PeerState = "InSync"
	// Ahead: this primary's peer fell behind; its changes are tracked in
	// the bitmap only until a resync catches it up (DRBD's pull-ahead).
	Ahead PeerState = "Ahead"
	// Behind: the peer (primary) is ahead of this replica.
	Behind     PeerState = "Behind"
	SyncSource PeerState = "SyncSource"
	SyncTarget PeerState = "SyncTarget"
	// SplitBrain: both sides wrote since they parted; the configured
	// policy says to wait for the operator.
	SplitBrain PeerState = "SplitBrain"
	// Refused: unrelated data, or a configuration that does not match.
	Refused PeerState = "Refused"
)

// item is one frame waiting to be sent to a peer.
type item struct {
	typ     frameType
	payload []byte
	bytes   int64 // data bytes it carries (for the send buffer)
	// buf, when not nil, is payload's shared buffer: released once the
	// item is sent or dropped.
	buf *payloadBuf
}

// epochRec remembers what an epoch carried to a peer until it is
// acknowledged: the block ranges (to put back in the bitmap if the peer is
// lost) and resync chunks (to clear from the bitmap once acknowledged).
type epochRec struct {
	epoch  uint64
	first  time.Time
	ranges [][2]int64
	resync [][2]int64
	bytes  int64
}

type peer struct {
	v    *Volume
	name string
	addr string
	bm   *bitmap

	mu           sync.Mutex
	cond         *sync.Cond
	state        PeerState
	conn         net.Conn
	connGen      int
	queue        []item
	queued       int64
	unacked      []*epochRec
	cur          *epochRec
	unackedBytes int64
	remoteRole   Role
	remoteDisk   DiskState
	remoteGen    uint64 // the peer's generation at the handshake
	lastErr      string
	lastRecv     time.Time
	resyncTotal  int64
	resyncSent   int64
	behindSince  time.Time
	// verify requests in flight, by id.
	verifies map[uint64]chan []int64
	// resizeDone takes the peer's answer to a resize request.
	resizeDone chan string
	nextID     uint64
	// needs carries RS_NEED answers to the resync loop.
	needs          chan rsNeed
	rsSinceBarrier int64
}

func newPeer(v *Volume, c PeerConfig, bm *bitmap) *peer {
	p := &peer{v: v, name: c.Name, addr: c.Address, bm: bm, state: Disconnected, verifies: map[uint64]chan []int64{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// connected reports whether writes go into this peer's stream.
func (p *peer) connectedLocked() bool {
	switch p.state {
	case InSync, SyncSource, SyncTarget, Behind:
		return true
	}
	return false
}

// inSync: the peer is tracked (streamed to, or in the bitmap while ahead)
// on a live connection: a promotion or write does not need a new
// generation for it.
func (p *peer) inSync() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == InSync || p.state == Ahead || p.state == SyncSource
}

func (p *peer) remotePrimary() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil && p.remoteRole == Primary
}

// enqueueLocked adds a frame to send.
func (p *peer) enqueueLocked(it item) {
	p.queue = append(p.queue, it)
	p.queued += it.bytes
	p.cond.Broadcast()
}

// ship sends (or, when the peer is away or behind, records in the bitmap)
// one operation of epoch; payload gives its encoded frame body, shared by
// every peer (built on the first call; the queue holds a reference).
// Called with v.mu held.
func (p *peer) ship(epoch uint64, kind opKind, off, n int64, payload func() *payloadBuf) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first, last := blockRange(off, n)
	if p.state != InSync && p.state != SyncSource {
		p.bm.setRange(first, last)
		return
	}
	if p.cur == nil || p.cur.epoch != epoch {
		p.cur = &epochRec{epoch: epoch, first: time.Now()}
		p.unacked = append(p.unacked, p.cur)
	}
	p.cur.ranges = append(p.cur.ranges, [2]int64{first, last})
	p.cur.bytes += n
	p.unackedBytes += n
	typ, data := fWrite, n
	switch kind {
	case opTrim:
		typ, data = fTrim, 0
	case opZero:
		typ, data = fZero, 0
	}
	pb := payload()
	p.enqueueLocked(item{typ: typ, payload: pb.hold(), bytes: data, buf: pb})
	// Protocol C and on_congestion "block" never pull ahead: their
	// writers wait for the peer instead.
	if p.v.cfg.Protocol != "C" && p.v.cfg.OnCongestion != "block" && p.queued+p.unackedBytes > int64(p.v.cfg.SendBuffer) {
		p.pullAheadLocked()
	}
}

// pullAheadLocked: the peer cannot keep up. Stop queueing its data, move
// everything not yet acknowledged into its bitmap, tell it it is behind,
// and catch it up with a resync once the link drained.
func (p *peer) pullAheadLocked() {
	p.v.log.Warn("peer fell behind: tracking it in the bitmap (pull-ahead)", "peer", p.name,
		"queued", p.queued, "unacked", p.unackedBytes)
	p.toBitmapLocked()
	p.state = Ahead
	p.behindSince = time.Now()
	p.v.met.pullAheads.Inc()
	p.enqueueLocked(item{typ: fBehind})
}

// toBitmapLocked puts every queued or unacknowledged write and resync
// chunk back into the bitmap and forgets them.
func (p *peer) toBitmapLocked() {
	for _, r := range p.unacked {
		for _, rg := range r.ranges {
			p.bm.setRange(rg[0], rg[1])
		}
		for _, rg := range r.resync {
			p.bm.setRange(rg[0], rg[1])
		}
	}
	p.unacked, p.cur, p.unackedBytes = nil, nil, 0
	kept := p.queue[:0]
	for _, it := range p.queue {
		switch it.typ {
		case fWrite, fTrim, fZero, fRSData, fRSCsum, fBarrier:
			it.buf.release()
		default:
			kept = append(kept, it)
		}
	}
	p.queue, p.queued = kept, 0
}

// markUnacked puts unacknowledged writes within blocks [first, last] into
// the bitmap (an activity log extent is leaving).
func (p *peer) markUnacked(first, last int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.unacked {
		for _, rg := range r.ranges {
			if lo, hi := max(rg[0], first), min(rg[1], last); lo <= hi {
				p.bm.setRange(lo, hi)
			}
		}
	}
}

// shipBarrier closes epoch for this peer. Called with v.mu held.
func (p *peer) shipBarrier(epoch uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != InSync && p.state != SyncSource {
		return
	}
	if p.cur == nil || p.cur.epoch != epoch {
		p.cur = &epochRec{epoch: epoch, first: time.Now()}
		p.unacked = append(p.unacked, p.cur)
	}
	var e enc
	e.u64(epoch)
	p.enqueueLocked(item{typ: fBarrier, payload: e.b})
}

// shipGen tells a connected peer the new generation (in stream order).
func (p *peer) shipGen(current uint64, history []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != InSync && p.state != SyncSource {
		return
	}
	p.enqueueLocked(item{typ: fGen, payload: encodeGen(current, history)})
}

func encodeGen(current uint64, history []uint64) []byte {
	var e enc
	e.u64(current)
	e.u16(uint16(len(history)))
	for _, h := range history {
		e.u64(h)
	}
	return e.b
}

func decodeGen(d *dec) (uint64, []uint64) {
	cur := d.u64()
	n := int(d.u16())
	if n > historySize {
		d.err = fmt.Errorf("%w: %d history entries", ErrBadFrame, n)
		return 0, nil
	}
	h := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		h = append(h, d.u64())
	}
	return cur, h
}

// ack handles the peer's acknowledgement of every epoch up to e.
func (p *peer) ack(e uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done := 0
	for _, r := range p.unacked {
		if r.epoch > e {
			break
		}
		if r == p.cur {
			// The open epoch may gain more writes; only a closed one is
			// acknowledged (its barrier was sent).
			p.cur = nil
		}
		p.unackedBytes -= r.bytes
		if len(r.ranges) > 0 {
			p.v.met.ackSeconds.WithLabelValues(p.name).Observe(time.Since(r.first).Seconds())
		}
		for _, rg := range r.resync {
			for b := rg[0]; b <= rg[1]; b++ {
				p.bm.clear(b)
			}
			n := (rg[1] - rg[0] + 1) * BlockSize
			p.resyncSent += n
			p.v.met.resynced.WithLabelValues(p.name).Add(float64(n))
		}
		done++
	}
	p.unacked = p.unacked[done:]
	p.cond.Broadcast()
}

// lag returns what this peer has not acknowledged: bytes (queued,
// in flight, or only in the bitmap) and the age of the oldest epoch.
func (p *peer) lag() (int64, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.queued + p.unackedBytes
	if p.state != InSync {
		b += int64(p.bm.ones()) * BlockSize
	}
	var age time.Duration
	if len(p.unacked) > 0 {
		age = time.Since(p.unacked[0].first)
	} else if p.state == Ahead || p.state == Disconnected && p.bm.ones() > 0 {
		age = time.Since(p.behindSince)
	}
	return b, age
}

// wakeOnDone wakes the peer's waiters when ctx ends, so that a wait on
// p.cond gives up; the wait calls the returned stop when it is over.
func (p *peer) wakeOnDone(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
}

// waitUntil waits until cond (called with p.mu held) holds, or ctx ends
// (its error).
func (p *peer) waitUntil(ctx context.Context, cond func() bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cond() {
		return nil
	}
	defer p.wakeOnDone(ctx)()
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.cond.Wait()
	}
	return nil
}

// waitAcked waits until the peer acknowledged every epoch up to e, or is
// not streamed to (disconnected, pulled ahead: the writes are in its
// bitmap).
func (p *peer) waitAcked(ctx context.Context, e uint64) error {
	err := p.waitUntil(ctx, func() bool {
		return p.state != InSync && p.state != SyncSource || len(p.unacked) == 0 || p.unacked[0].epoch > e
	})
	if err != nil {
		return fmt.Errorf("wait for %s to acknowledge: %w", p.name, ErrClosed)
	}
	return nil
}

// congestedLocked: the peer is streamed to and has more than limit bytes
// queued or unacknowledged.
func (p *peer) congestedLocked(limit int64) bool {
	return (p.state == InSync || p.state == SyncSource) && p.queued+p.unackedBytes > limit
}

// waitDrained waits until the peer is in sync and acknowledged every
// epoch sent to it.
func (p *peer) waitDrained(ctx context.Context) error {
	defer p.wakeOnDone(ctx)()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch p.state {
		case InSync:
			if len(p.unacked) == 0 && len(p.queue) == 0 {
				return nil
			}
		case Ahead, SyncSource, Disconnected, Connecting:
			// Catching up (pulled ahead, resyncing) or reconnecting: wait
			// for it to be in sync, as long as ctx lets us.
		default:
			return fmt.Errorf("%w (%s: %s)", ErrPeerNotInSync, p.name, p.state)
		}
		if ctx.Err() != nil {
			if p.state != InSync {
				return fmt.Errorf("%w (%s: %s): %v", ErrPeerNotInSync, p.name, p.state, ctx.Err())
			}
			return fmt.Errorf("%w: %d bytes not acknowledged", ctx.Err(), p.unackedBytes+p.queued)
		}
		p.cond.Wait()
	}
}

// disconnect drops the connection: whatever the peer did not acknowledge
// goes into its bitmap; a primary starts a new generation at its next
// write.
func (p *peer) disconnect(cause error) {
	// The volume's lock around the change: whoever sees the peer gone (a
	// waiter woken below, a writer) also sees the new generation pending.
	v := p.v
	v.mu.Lock()
	p.mu.Lock()
	conn := p.conn
	p.conn = nil
	wasConnected := p.connectedLocked() || p.state == Ahead
	p.toBitmapLocked()
	if p.state != SplitBrain && p.state != Refused {
		p.state = Disconnected
	}
	if cause != nil && !errors.Is(cause, ErrClosed) {
		p.lastErr = cause.Error()
	}
	if wasConnected && p.behindSince.IsZero() {
		p.behindSince = time.Now()
	}
	if wasConnected && v.role == Primary {
		v.needNewGen = true
	}
	for id, ch := range p.verifies {
		close(ch)
		delete(p.verifies, id)
	}
	if p.resizeDone != nil {
		close(p.resizeDone)
		p.resizeDone = nil
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	v.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if wasConnected {
		if cause != nil && !errors.Is(cause, ErrClosed) {
			v.log.Warn("replication peer lost", "peer", p.name, "err", cause)
		}
	}
}
