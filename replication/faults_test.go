package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
)

// crash stops a volume as a killed process would: connections drop, and
// nothing is flushed or marked clean.
func (v *Volume) crash() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.stopNBD()
	v.cancel()
	v.ln.Close()
	for _, p := range v.peers {
		p.mu.Lock()
		c := p.conn
		p.conn = nil
		p.connGen++
		p.cond.Broadcast()
		p.mu.Unlock()
		if c != nil {
			c.Close()
		}
	}
	v.wg.Wait()
	for _, p := range v.peers {
		p.bm.f.Close()
	}
	v.al.close()
	v.be.Close()
	v.met.unregister()
}

// proxy forwards a replication link frame by frame, and can cut it, stop
// one direction (half-open), throttle it, or tamper with the next frame.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu        sync.Mutex
	cond      *sync.Cond
	cut       bool
	stallBack bool   // stop forwarding target→client (half-open)
	rate      int64  // bytes/s client→target, 0: unlimited
	rcvBuf    int    // the client side's receive buffer, 0: the kernel's
	tamper    string // "corrupt", "duplicate", "replay": applied to the next data frame
	conns     []net.Conn
	history   [][]byte
	tampered  int
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{t: t, ln: ln, target: target}
	px.cond = sync.NewCond(&px.mu)
	go px.accept()
	t.Cleanup(func() { ln.Close(); px.drop() })
	return px
}

func (px *proxy) addr() string { return px.ln.Addr().String() }

func (px *proxy) set(f func(px *proxy)) {
	px.mu.Lock()
	f(px)
	px.cond.Broadcast()
	px.mu.Unlock()
}

// drop closes every proxied connection.
func (px *proxy) drop() {
	px.mu.Lock()
	conns := px.conns
	px.conns = nil
	px.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (px *proxy) accept() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		px.mu.Lock()
		cut, rcvBuf := px.cut, px.rcvBuf
		px.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		if rcvBuf > 0 {
			// A small window: the sender blocks at once on a slow
			// link, instead of the kernel's buffers taking megabytes.
			c.(*net.TCPConn).SetReadBuffer(rcvBuf)
		}
		u, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, u)
		px.mu.Unlock()
		go px.forwardFrames(c, u)
		go px.forwardBack(u, c)
	}
}

// forwardFrames copies client→target one frame at a time.
func (px *proxy) forwardFrames(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	var hdr [headerSize]byte
	start, sent := time.Now(), int64(0)
	for {
		if _, err := io.ReadFull(from, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[8:]))
		if n > maxPayload {
			return
		}
		body := make([]byte, n+trailerSize)
		if _, err := io.ReadFull(from, body); err != nil {
			return
		}
		fr := append(append([]byte(nil), hdr[:]...), body...)
		out := [][]byte{fr}
		px.mu.Lock()
		for px.cut {
			px.mu.Unlock()
			return
		}
		typ := frameType(hdr[4])
		if px.tamper != "" && (typ == fWrite || typ == fRSData || typ == fBarrier) {
			switch px.tamper {
			case "corrupt":
				bad := append([]byte(nil), fr...)
				bad[headerSize] ^= 0x40
				out = [][]byte{bad}
			case "duplicate":
				out = [][]byte{fr, fr}
			case "replay":
				if len(px.history) > 0 {
					out = [][]byte{px.history[0], fr}
				}
			}
			px.tamper = ""
			px.tampered++
		}
		if len(px.history) < 64 {
			px.history = append(px.history, fr)
		}
		rate := px.rate
		px.mu.Unlock()
		for _, f := range out {
			if rate > 0 {
				sent += int64(len(f))
				if d := time.Until(start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))); d > 0 {
					time.Sleep(d)
				}
			}
			if _, err := to.Write(f); err != nil {
				return
			}
		}
	}
}

// forwardBack copies target→client, stalling while stallBack is set.
func (px *proxy) forwardBack(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		px.mu.Lock()
		for px.stallBack && !px.cut {
			px.cond.Wait()
		}
		cut := px.cut
		px.mu.Unlock()
		if cut {
			return
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

// proxied opens east and west with east reaching west through a proxy.
func proxied(t *testing.T, size int64, tweak func(*VolumeConfig)) (*pair, *proxy) {
	p := newPair(t, size, tweak)
	px := newProxy(t, p.addr["west"])
	p.via["west"] = px.addr()
	p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, p.vols["east"].Promote(context.Background(), false))
	return p, px
}

func drained(t *testing.T, v *Volume) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually(t, 30*time.Second, func() error { return v.Drain(ctx) })
}

func TestPartitionThenReconnectResyncsIncrementally(t *testing.T) {
	p, px := proxied(t, 32<<20, nil)
	east := p.vols["east"]
	must(t, east.WriteAt(randomData(1, 4<<20), 0, true))
	drained(t, east)
	px.set(func(px *proxy) { px.cut = true })
	px.drop()
	p.waitState("east", Disconnected)
	for i := 0; i < 20; i++ {
		must(t, east.WriteAt(randomData(int64(10+i), BlockSize), int64(1000+i*50)*BlockSize, false))
	}
	must(t, east.Flush())
	before := resyncBytes(east)
	px.set(func(px *proxy) { px.cut = false })
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
	if sent := resyncBytes(east) - before; sent != 20*BlockSize {
		t.Fatalf("resync after the partition sent %d bytes, want the 20 dirty blocks (%d)", sent, 20*BlockSize)
	}
}

func TestHalfOpenLinkIsDetectedAndRecovered(t *testing.T) {
	p, px := proxied(t, 8<<20, nil)
	east := p.vols["east"]
	px.set(func(px *proxy) { px.stallBack = true })
	for i := 0; i < 10; i++ {
		must(t, east.WriteAt(randomData(int64(i), 64<<10), int64(i)*(64<<10), true))
	}
	// No acknowledgement, no ping comes back: east gives the link up
	// after its timeout instead of waiting forever.
	p.waitState("east", Disconnected)
	px.set(func(px *proxy) { px.stallBack = false })
	px.drop()
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
}

func TestTamperedFramesDropTheLinkAndNothingBadIsApplied(t *testing.T) {
	for _, how := range []string{"corrupt", "duplicate", "replay"} {
		t.Run(how, func(t *testing.T) {
			p, px := proxied(t, 8<<20, nil)
			east, west := p.vols["east"], p.vols["west"]
			must(t, east.WriteAt(randomData(1, 1<<20), 0, true))
			drained(t, east)
			bad0 := westBadFrames(west)
			px.set(func(px *proxy) { px.tamper = how })
			for i := 0; i < 8; i++ {
				must(t, east.WriteAt(randomData(int64(50+i), 64<<10), int64(2<<20)+int64(i)*(64<<10), true))
			}
			eventually(t, 10*time.Second, func() error {
				if westBadFrames(west) == bad0 {
					return errors.New("the tampered frame was not detected")
				}
				return nil
			})
			p.waitState("east", InSync)
			drained(t, east)
			p.assertEqual()
		})
	}
}

func westBadFrames(v *Volume) float64 {
	return testCounter(v.met.badFrames)
}

func TestSlowPeerIsPulledAheadWithBoundedMemoryAndCaughtUp(t *testing.T) {
	const sendBuffer = 2 << 20
	p, px := proxied(t, 64<<20, func(c *VolumeConfig) { c.SendBuffer = sendBuffer; c.ResyncRate = 0 })
	east := p.vols["east"]
	px.set(func(px *proxy) { px.rate = 1 << 20 })
	start := time.Now()
	maxBuffered := int64(0)
	for i := 0; i < 64; i++ {
		must(t, east.WriteAt(randomData(int64(i), 256<<10), int64(i)*(256<<10), false))
		pe := east.peers["west"]
		pe.mu.Lock()
		if b := pe.queued + pe.unackedBytes; b > maxBuffered {
			maxBuffered = b
		}
		pe.mu.Unlock()
	}
	must(t, east.Flush())
	took := time.Since(start)
	if took > 5*time.Second {
		t.Fatalf("16 MiB of writes took %v over a 1 MiB/s link: the writer was blocked", took)
	}
	if maxBuffered > sendBuffer+256<<10 {
		t.Fatalf("up to %d bytes buffered for the slow peer, bound %d", maxBuffered, sendBuffer)
	}
	if testCounter(east.met.pullAheads) == 0 {
		t.Fatal("the slow peer was never pulled ahead")
	}
	eventually(t, 10*time.Second, func() error {
		if d := p.vols["west"].Disk(); d != Outdated && d != Inconsistent {
			return fmt.Errorf("a peer left behind reports %s", d)
		}
		return nil
	})
	px.set(func(px *proxy) { px.rate = 0 })
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
	if d := p.vols["west"].Disk(); d != UpToDate {
		t.Fatalf("caught-up peer is %s", d)
	}
}

// faultyBackend fails writes with err while fail is set.
type faultyBackend struct {
	Backend
	mu   sync.Mutex
	fail error
}

func (f *faultyBackend) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	err := f.fail
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.Backend.WriteAt(p, off)
}

func (f *faultyBackend) set(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func TestDiskFullOrIOErrorAtTheReplica(t *testing.T) {
	for _, e := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(e.Error(), func(t *testing.T) {
			p := newPair(t, 8<<20, nil)
			var fb *faultyBackend
			p.backendFor["west"] = func(path string, size int64) Backend {
				b, _, err := openFile(path, size)
				if err != nil {
					t.Fatal(err)
				}
				fb = &faultyBackend{Backend: b}
				return fb
			}
			east := p.open("east")
			p.open("west")
			p.waitState("east", InSync)
			must(t, east.Promote(context.Background(), false))
			fb.set(e)
			for i := 0; i < 8; i++ {
				// The primary goes on: replication is asynchronous.
				must(t, east.WriteAt(randomData(int64(i), 64<<10), int64(i)*(64<<10), true))
			}
			eventually(t, 10*time.Second, func() error {
				if d := p.vols["west"].Disk(); d != Inconsistent {
					return fmt.Errorf("replica with failing writes is %s", d)
				}
				return nil
			})
			eventually(t, 10*time.Second, func() error {
				if east.peers["west"].bm.ones() == 0 {
					return errors.New("the primary does not track what the failing replica missed")
				}
				return nil
			})
			fb.set(nil)
			p.waitState("east", InSync)
			drained(t, east)
			p.assertEqual()
			// The source counts the peer in sync once it sent the resync's
			// end; the replica is UpToDate once it made that durable.
			eventually(t, 10*time.Second, func() error {
				if d := p.vols["west"].Disk(); d != UpToDate {
					return fmt.Errorf("replica after recovery: %s", d)
				}
				return nil
			})
		})
	}
}

func TestSplitBrainIsDetectedEveryTimeAndNothingIsOverwritten(t *testing.T) {
	for round := 0; round < 10; round++ {
		p, px := proxied(t, 4<<20, nil)
		east, west := p.vols["east"], p.vols["west"]
		must(t, east.WriteAt(randomData(int64(round), 64<<10), 0, true))
		drained(t, east)
		px.set(func(px *proxy) { px.cut = true })
		px.drop()
		p.waitState("east", Disconnected)
		p.waitState("west", Disconnected)
		// Both are written while apart.
		must(t, east.WriteAt(bytes.Repeat([]byte{0xe}, BlockSize), 1<<20, true))
		must(t, west.Promote(context.Background(), false))
		must(t, west.WriteAt(bytes.Repeat([]byte{0xf}, BlockSize), 2<<20, true))
		eastBefore, westBefore := p.file("east"), p.file("west")
		px.set(func(px *proxy) { px.cut = false })
		p.waitState("east", SplitBrain)
		p.waitState("west", SplitBrain)
		if !bytes.Equal(p.file("east"), eastBefore) || !bytes.Equal(p.file("west"), westBefore) {
			t.Fatalf("round %d: data changed after a split brain", round)
		}
		if n := testCounter(east.met.splitBrains) + testCounter(west.met.splitBrains); n < 2 {
			t.Fatalf("round %d: split brain counted %v times", round, n)
		}
		p.close("east")
		p.close("west")
	}
}

func TestSplitBrainPolicyDiscardSecondaryResyncsTheLoser(t *testing.T) {
	p, px := proxied(t, 4<<20, func(c *VolumeConfig) { c.SplitBrain = SplitBrainDiscardSecondary })
	east, west := p.vols["east"], p.vols["west"]
	must(t, east.WriteAt(randomData(1, 64<<10), 0, true))
	drained(t, east)
	px.set(func(px *proxy) { px.cut = true })
	px.drop()
	p.waitState("east", Disconnected)
	must(t, east.WriteAt(bytes.Repeat([]byte{0xe}, 3*BlockSize), 1<<20, true))
	must(t, east.Demote(context.Background()))
	must(t, west.Promote(context.Background(), false))
	must(t, west.WriteAt(bytes.Repeat([]byte{0xf}, BlockSize), 2<<20, true))
	px.set(func(px *proxy) { px.cut = false })
	p.waitState("west", InSync)
	drained(t, west)
	p.assertEqual()
	if n := east.Status().Discarded; n != 3 {
		t.Fatalf("east discarded %d blocks, want its 3", n)
	}
	if got := p.file("east")[1<<20]; got != 0 {
		t.Fatalf("east's discarded write survived: %#x", got)
	}
}

func TestCrashedPrimaryRejoinsAsTargetAndItsTailIsDiscarded(t *testing.T) {
	p, px := proxied(t, 8<<20, nil)
	east, west := p.vols["east"], p.vols["west"]
	must(t, east.WriteAt(randomData(1, 1<<20), 0, true))
	drained(t, east)
	// A write west never gets, then east dies.
	px.set(func(px *proxy) { px.cut = true })
	px.drop()
	must(t, east.WriteAt(bytes.Repeat([]byte{0xee}, BlockSize), 4<<20, true))
	east.crash()
	delete(p.vols, "east")
	p.waitState("west", Disconnected)
	must(t, west.Promote(context.Background(), false))
	must(t, west.WriteAt(bytes.Repeat([]byte{0x77}, BlockSize), 5<<20, true))
	px.set(func(px *proxy) { px.cut = false })
	east = p.open("east")
	p.waitState("west", InSync)
	drained(t, west)
	p.assertEqual()
	if b := p.file("east")[4<<20]; b == 0xee {
		t.Fatal("the crashed primary's unreplicated write survived")
	}
	if n := east.Status().Discarded; n != 1 {
		t.Fatalf("discarded blocks counted: %d, want the one unreplicated write", n)
	}
}

func TestVerifyFindsExactlyTheDifferingBlocksAndRepairs(t *testing.T) {
	p := newPair(t, 16<<20, nil)
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(3, 16<<20), 0, true))
	drained(t, east)
	// Damage west's copy behind the engine's back.
	f, err := os.OpenFile(p.cfgs["west"].Path, os.O_WRONLY, 0)
	must(t, err)
	for _, b := range []int64{99, 1340, 1341, 3980} {
		f.WriteAt([]byte("rot"), b*BlockSize+17)
	}
	f.Close()
	rep, err := east.Verify(context.Background(), "west", true)
	must(t, err)
	if fmt.Sprint(rep.Differing) != "[99 1340 1341 3980]" || rep.Checked != 4096 {
		t.Fatalf("verify report %+v", rep)
	}
	waitRepaired(t, east, "west")
	drained(t, east)
	p.assertEqual()
}

func TestChecksumResyncSkipsBlocksAlreadyEqual(t *testing.T) {
	p := newPair(t, 8<<20, nil)
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	must(t, east.WriteAt(randomData(5, 8<<20), 0, true))
	drained(t, east)
	p.close("west")
	p.waitState("east", Disconnected)
	// 100 blocks marked, 3 really changed.
	east.peers["west"].bm.setRange(0, 99)
	for _, b := range []int64{5, 50, 95} {
		must(t, east.WriteAt(randomData(b+1000, BlockSize), b*BlockSize, false))
	}
	must(t, east.Flush())
	before := resyncBytes(east)
	p.open("west")
	p.waitState("east", InSync)
	drained(t, east)
	p.assertEqual()
	if sent := resyncBytes(east) - before; sent != 3*BlockSize {
		t.Fatalf("checksum resync sent %d bytes, want the 3 changed blocks", sent)
	}
}

func TestPeerWithoutTheKeyIsRefused(t *testing.T) {
	p := newPair(t, 1<<20, nil)
	east := p.open("east")
	c := p.cfgs["west"]
	o := Options{Config: c, Self: "west", Key: []byte("another key entirely"), Log: quietLog()}
	west, err := Open(o)
	must(t, err)
	must(t, west.Start(context.Background()))
	defer west.Close()
	eventually(t, 10*time.Second, func() error {
		if testCounter(east.met.authFailures)+testCounter(west.met.authFailures) == 0 {
			return errors.New("no authentication failure counted")
		}
		return nil
	})
	if st := east.Status().Peers[0]; st.Connected {
		t.Fatalf("a peer with another key connected: %+v", st)
	}
}

// Close while a link's handshake is still under way: the link that
// completes after Close began must not be taken up, or Close waits for it
// for ever (its pings keep it alive). Seen as a 10-minute hang of
// TestVolumeOnBlockDevices in CI when the redial after a restart raced
// the next close.
func TestCloseDuringAHandshakeReturns(t *testing.T) {
	p := newPair(t, 1<<20, func(c *VolumeConfig) { c.Timeout = confkit.Duration(time.Minute) })
	px := newProxy(t, p.addr["west"])
	p.via["west"] = px.addr()
	p.open("west")
	px.set(func(px *proxy) { px.stallBack = true })
	east := p.open("east")
	eventually(t, 10*time.Second, func() error {
		px.mu.Lock()
		defer px.mu.Unlock()
		if len(px.conns) == 0 {
			return errors.New("east has not dialed west yet")
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- east.Close() }()
	eventually(t, 10*time.Second, func() error {
		if east.ctx.Err() == nil {
			return errors.New("east's Close has not begun")
		}
		return nil
	})
	// Let Close get past its disconnects before the handshake completes.
	time.Sleep(50 * time.Millisecond)
	px.set(func(px *proxy) { px.stallBack = false })
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return: the link whose handshake completed after it began was taken up")
	}
	delete(p.vols, "east")
}

// A primary that sees its peer gone starts a new generation at its very
// next write: an observer woken by the disconnect may write at once, and
// that write must not land in the generation the peer holds (the peer,
// promoted meanwhile, would then look like it holds everything east has).
func TestTheFirstWriteAfterAPeerIsLostStartsAGeneration(t *testing.T) {
	for round := 0; round < 30; round++ {
		p, px := proxied(t, 4<<20, nil)
		east := p.vols["east"]
		must(t, east.WriteAt(randomData(int64(round), BlockSize), 0, true))
		drained(t, east)
		east.mu.Lock()
		before := east.m.Current
		east.mu.Unlock()
		px.set(func(px *proxy) { px.cut = true })
		px.drop()
		p.waitState("east", Disconnected)
		must(t, east.WriteAt(bytes.Repeat([]byte{0xe}, BlockSize), 1<<20, true))
		east.mu.Lock()
		after := east.m.Current
		east.mu.Unlock()
		if after == before {
			t.Fatalf("round %d: the first write after the peer was lost stayed in generation %016x", round, before)
		}
		p.close("east")
		p.close("west")
	}
}
