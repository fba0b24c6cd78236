package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/geobooth/geobooth/kit/sockopt"
	"github.com/geobooth/geobooth/ticket"
)

// Transport carries peer messages. The real one is UDP; tests may use
// their own.
type Transport interface {
	// Send encodes and sends each message to member m.To, in order;
	// errors are counted, not returned: the protocol retransmits.
	Send(ms []ticket.Message)
	// Recv delivers authenticated, fresh, non-replayed messages.
	Recv() <-chan ticket.Message
	// Peer reports what the transport learned about member i.
	Peer(i int) PeerInfo
	// Dropped counts the datagrams dropped for want of room since the
	// start (the loop paces elections down when it grows).
	Dropped() uint64
	Close() error
}

// PeerInfo is what the transport learned about a member from its datagrams.
type PeerInfo struct {
	LastHeard time.Time
	// Offset is the member's wall clock minus ours, as seen in its last
	// datagram (including the one-way delay).
	Offset time.Duration
	// Mismatch is set while the member's cluster digest differs from ours.
	Mismatch bool
}

// udpTransport sends and receives authenticated datagrams on one socket.
type udpTransport struct {
	conn   *net.UDPConn
	addrs  []*net.UDPAddr
	keys   [][]byte
	digest uint64
	epoch  uint64
	seq    atomic.Uint64
	clock  Clock
	skew   time.Duration
	log    *slog.Logger
	met    *metrics
	out    chan ticket.Message
	self   int

	// batch moves several datagrams per system call (sendmmsg,
	// recvmmsg); sendMu guards outMsgs.
	batch interface {
		ReadBatch([]ipv4.Message, int) (int, error)
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	sendMu           sync.Mutex
	outMsgs          []ipv4.Message
	sentOK, sentErr  prometheus.Counter
	recvOK, overflow prometheus.Counter
	dropped          atomic.Uint64

	mu    sync.Mutex
	peers map[int]PeerInfo
	// warned limits the "config differs" log line to one per member and
	// minute.
	warned map[int]time.Time
	done   chan struct{}
}

// listenUDP binds the local member's address. keys[0] signs; every key is
// accepted (the second during a key rotation).
func listenUDP(addrs []string, self int, keys [][]byte, digest uint64, skew time.Duration, clock Clock, log *slog.Logger, met *metrics) (*udpTransport, error) {
	t := &udpTransport{keys: keys, digest: digest, clock: clock, skew: skew, log: log, met: met,
		out: make(chan ticket.Message, 8192), self: self, peers: map[int]PeerInfo{}, warned: map[int]time.Time{},
		done: make(chan struct{})}
	for _, a := range addrs {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			return nil, fmt.Errorf("resolve peer address %q: %w", a, err)
		}
		t.addrs = append(t.addrs, ua)
	}
	conn, err := net.ListenUDP("udp", t.addrs[self])
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addrs[self], err)
	}
	t.conn = conn
	if t.addrs[self].IP.To4() == nil {
		t.batch = ipv6.NewPacketConn(conn)
	} else {
		t.batch = ipv4.NewPacketConn(conn)
	}
	t.outMsgs = make([]ipv4.Message, batchSize)
	for i := range t.outMsgs {
		t.outMsgs[i].Buffers = make([][]byte, 1)
	}
	t.sentOK, t.sentErr = met.packetsSent.WithLabelValues("ok"), met.packetsSent.WithLabelValues("error")
	t.recvOK, t.overflow = met.packetsReceived.WithLabelValues("ok"), met.packetsReceived.WithLabelValues("overflow")
	// Renewals of many tickets come in bursts: let the kernel hold them
	// while the loop works.
	if got, err := sockopt.ReadBuffer(conn, 4<<20); err != nil || got < 4<<20 {
		log.Warn("peer receive buffer smaller than asked: bursts of datagrams may be dropped; run as root or raise net.core.rmem_max", "granted", got, "asked", 4<<20, "err", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("boot epoch: %w", err)
	}
	// The epoch grows with wall time, so a receiver sees every restart as a
	// newer boot; the random low bits keep two boots in one nanosecond apart.
	t.epoch = uint64(clock.Wall().UnixNano())&^0xffff | binary.BigEndian.Uint64(b[:])&0xffff
	go t.readLoop()
	return t, nil
}

// batchSize is how many datagrams one sendmmsg or recvmmsg moves.
const batchSize = 64

func (t *udpTransport) Send(ms []ticket.Message) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	k, ok, bad := 0, 0, 0
	flush := func() {
		for sent := 0; sent < k; {
			n, err := t.batch.WriteBatch(t.outMsgs[sent:k], 0)
			if err != nil {
				// The first message failed (say, a firewall refuses its
				// destination): count it and send on the others.
				t.log.Debug("send peer message", "peer", t.outMsgs[sent].Addr, "err", err)
				bad, ok, sent = bad+1, ok-1, sent+1
				continue
			}
			sent += n
		}
		k = 0
	}
	for _, m := range ms {
		if m.To < 0 || m.To >= len(t.addrs) || m.To == t.self {
			continue
		}
		env := ticket.Envelope{Msg: m, Time: t.clock.Wall().UnixNano(), Epoch: t.epoch, Seq: t.seq.Add(1), Digest: t.digest}
		b, err := ticket.Encode(env, t.keys[0])
		if err != nil {
			bad++
			t.log.Error("encode peer message", "peer", m.To, "type", m.Type, "err", err)
			continue
		}
		t.outMsgs[k].Buffers[0], t.outMsgs[k].Addr = b, t.addrs[m.To]
		k++
		ok++
		if k == batchSize {
			flush()
		}
	}
	flush()
	t.sentOK.Add(float64(ok))
	if bad > 0 {
		t.sentErr.Add(float64(bad))
	}
}

func (t *udpTransport) Recv() <-chan ticket.Message { return t.out }

func (t *udpTransport) Close() error {
	err := t.conn.Close()
	<-t.done
	return err
}

func (t *udpTransport) readLoop() {
	defer close(t.done)
	defer close(t.out)
	replay := ticket.ReplayFilter{MaxSkew: t.skew}
	in := make([]ipv4.Message, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, ticket.MaxDatagram+1)}
	}
	for {
		n, err := t.batch.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("read peer datagrams", "err", err)
			continue
		}
		for i := 0; i < n; i++ {
			from, _ := in[i].Addr.(*net.UDPAddr)
			if from == nil {
				continue
			}
			m, ok := t.accept(in[i].Buffers[0][:in[i].N], from, &replay)
			if !ok {
				continue
			}
			// A bounded queue: under overload, old answers are worse
			// than none (the protocol retransmits).
			select {
			case t.out <- m:
			default:
				t.overflow.Inc()
				t.dropped.Add(1)
			}
		}
	}
}

// accept checks one datagram and says why it is refused, in a metric and,
// for what an operator must fix, in a log line.
func (t *udpTransport) accept(b []byte, from *net.UDPAddr, replay *ticket.ReplayFilter) (ticket.Message, bool) {
	refuse := func(result string, args ...any) (ticket.Message, bool) {
		t.met.packetsReceived.WithLabelValues(result).Inc()
		if len(args) > 0 {
			t.log.Debug("refused peer datagram", append([]any{"from", from.String(), "reason", result}, args...)...)
		}
		return ticket.Message{}, false
	}
	env, err := ticket.Decode(b, t.keys...)
	switch {
	case errors.Is(err, ticket.ErrAuth):
		return refuse("auth", "err", err)
	case errors.Is(err, ticket.ErrMagic), errors.Is(err, ticket.ErrVersion), errors.Is(err, ticket.ErrShort), errors.Is(err, ticket.ErrMalformed):
		return refuse("malformed", "err", err)
	case err != nil:
		return refuse("malformed", "err", err)
	}
	m := env.Msg
	if m.From < 0 || m.From >= len(t.addrs) || m.From == t.self || m.To != t.self {
		return refuse("unknown_member", "member", m.From)
	}
	if !from.IP.Equal(t.addrs[m.From].IP) {
		return refuse("address", "member", m.From, "configured", t.addrs[m.From].IP.String())
	}
	now := t.clock.Wall()
	if env.Digest != t.digest {
		t.mu.Lock()
		info := t.peers[m.From]
		info.Mismatch = true
		t.peers[m.From] = info
		last := t.warned[m.From]
		if now.Sub(last) > time.Minute {
			t.warned[m.From] = now
			t.log.Error("refusing member: its cluster configuration differs from ours (members, tickets and their settings must be identical everywhere)",
				"peer", m.From, "peer_digest", fmt.Sprintf("%016x", env.Digest), "our_digest", fmt.Sprintf("%016x", t.digest))
		}
		t.mu.Unlock()
		return refuse("digest")
	}
	if err := replay.Check(env, now.UnixNano()); err != nil {
		if errors.Is(err, ticket.ErrStale) {
			return refuse("stale", "err", err)
		}
		return refuse("replay", "err", err)
	}
	t.mu.Lock()
	t.peers[m.From] = PeerInfo{LastHeard: now, Offset: time.Duration(env.Time - now.UnixNano())}
	t.mu.Unlock()
	t.recvOK.Inc()
	return m, true
}

func (t *udpTransport) Dropped() uint64 { return t.dropped.Load() }

func (t *udpTransport) Peer(i int) PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[i]
}
