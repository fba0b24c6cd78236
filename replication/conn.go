package replication

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"time"
)

// Connections: the member whose name sorts first dials, the other
// accepts. Both send HELLO (volume, member, size, split-brain policy, a
// nonce), then AUTH, an HMAC-SHA256 with the cluster key over both nonces
// and the sender's name: nobody without the key gets past it, so nobody
// without it can read or write the volume's data. Then each sends its
// STATE (role, disk, generations) and its bitmap for the other, and both
// decide the same thing from the two states: nothing to do, which side
// resyncs which, split brain, or unrelated data.

const protoVersion = 1

// ProtocolVersion is the version of the replication links' handshake; a
// link to a peer of another version is refused with both named.
const ProtocolVersion = protoVersion

type hello struct {
	version        uint16
	volume, member string
	policy         string
	size           uint64
	nonce          []byte
}

type stateMsg struct {
	role    Role
	disk    DiskState
	current uint64
	bitmap  uint64 // the generation the sender's bitmap for the receiver tracks from
	history []uint64
	crashed bool
	// discard: the operator asked this side to take the peer's data at
	// a split brain (discard-my-data).
	discard bool
	// blank: a replica geobooth created, never written or synced.
	blank        bool
	primarySince int64
	dirty        uint64 // bits in the sender's bitmap for the receiver
}

// session is one live connection with a peer.
type session struct {
	p      *peer
	conn   net.Conn
	gen    int
	out    *bufio.Writer
	seq    uint64
	in     *frameReader
	remote stateMsg
	// dialed: this side connected to the peer's configured address.
	dialed bool
	// target side: the open epoch's operations, applied at its barrier.
	pending      []pendingOp
	pendingBytes int64
	rsStarted    bool
	// discarding: this side is the target of a resync that discards its
	// own writes (a split brain lost, a crashed primary's tail). A block
	// that differs from the source's is counted as discarded when this
	// side wrote it: marked in mine (its bitmap at the handshake) and not
	// in theirs (the source's), or in both when mine is exact (a split
	// brain; a crashed primary's marks also cover its hot extents, where
	// a block the source wrote may not have been written here at all).
	discarding bool
	mine       []uint64
	theirs     []uint64
	mineExact  bool
}

type pendingOp struct {
	kind opKind
	off  int64
	n    int64
	data []byte
}

// send writes one frame without copying its payload into a frame buffer.
func (s *session) send(typ frameType, payload []byte) error {
	s.seq++
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[0:], frameMagic)
	h[4] = byte(typ)
	binary.BigEndian.PutUint32(h[8:], uint32(len(payload)))
	binary.BigEndian.PutUint64(h[12:], s.seq)
	sum := crc32.Update(crc32.Checksum(h[:], castagnoli), castagnoli, payload)
	var tr [trailerSize]byte
	binary.BigEndian.PutUint32(tr[:], sum)
	s.out.Write(h[:])
	s.out.Write(payload)
	_, err := s.out.Write(tr[:])
	return err
}

// Buffers of a session: small until the peer proved the key (a
// stranger's connection costs a few KiB), then large for the data.
const (
	handshakeBuffer = 4 << 10
	streamBuffer    = 256 << 10
)

func newSession(conn net.Conn) *session {
	in := newFrameReader(conn)
	in.max = handshakeBuffer
	return &session{conn: conn, out: bufio.NewWriterSize(conn, handshakeBuffer), in: in}
}

// authenticated switches the session to its stream buffers. The handshake
// reads exact frames from the connection, so nothing is left behind.
func (s *session) authenticated() error {
	if err := s.out.Flush(); err != nil {
		return err
	}
	s.out = bufio.NewWriterSize(s.conn, streamBuffer)
	s.in.r, s.in.max = bufio.NewReaderSize(s.conn, streamBuffer), 0
	return nil
}

// acceptLoop serves incoming links until the volume closes; an accept
// error (out of descriptors, say) is logged and retried after a backoff
// from 5 ms to 1 s.
func (v *Volume) acceptLoop() {
	defer v.wg.Done()
	var wait time.Duration
	for {
		conn, err := v.ln.Accept()
		if err != nil {
			if v.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			v.log.Warn("replication accept failed, retrying", "err", err, "retry_in", wait)
			select {
			case <-v.ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		wait = 0
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.serveIncoming(conn)
		}()
	}
}

// peerMember is the member a verified TLS peer's certificate names (its
// first DNS name).
func peerMember(conn net.Conn) string {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 || len(cs.VerifiedChains[0][0].DNSNames) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].DNSNames[0]
}

func (v *Volume) serveIncoming(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(v.cfg.Timeout.D()))
	if v.tls != nil {
		tc := tls.Server(conn, v.tls.Server(tls.RequireAndVerifyClientCert))
		if err := tc.Handshake(); err != nil {
			v.met.authFailures.Inc()
			v.log.Warn("refused a replication connection: TLS", "from", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	s := newSession(conn)
	mine := v.hello()
	if err := s.send(fHello, encodeHello(mine)); err != nil || s.out.Flush() != nil {
		conn.Close()
		return
	}
	theirs, err := readHello(s)
	if err != nil {
		v.log.Warn("refused a replication connection", "from", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	if v.tls != nil && peerMember(conn) != theirs.member {
		v.met.authFailures.Inc()
		v.log.Warn("refused a replication connection: its certificate names another member", "from", conn.RemoteAddr().String(),
			"certificate", peerMember(conn), "hello", theirs.member)
		conn.Close()
		return
	}
	p := v.peers[theirs.member]
	if p == nil || !(p.name < v.self) {
		v.log.Warn("refused a replication connection from an unexpected member", "from", conn.RemoteAddr().String(), "member", theirs.member)
		conn.Close()
		return
	}
	p.serve(s, mine, theirs)
}

func (p *peer) dialLoop() {
	v := p.v
	defer v.wg.Done()
	backoff := 100 * time.Millisecond
	for v.ctx.Err() == nil {
		d := net.Dialer{Timeout: v.cfg.Timeout.D()}
		conn, err := d.DialContext(v.ctx, "tcp", p.addr)
		if err == nil {
			conn.SetDeadline(time.Now().Add(v.cfg.Timeout.D()))
			if v.tls != nil {
				tc := tls.Client(conn, v.tls.Client(p.name))
				if err = tc.Handshake(); err != nil {
					err = fmt.Errorf("TLS with %s: %w", p.name, err)
				}
				conn = tc
			}
			s := newSession(conn)
			s.dialed = true
			mine := v.hello()
			var theirs hello
			if err == nil {
				err = s.send(fHello, encodeHello(mine))
			}
			if err == nil {
				err = s.out.Flush()
			}
			if err == nil {
				theirs, err = readHello(s)
			}
			if err == nil && theirs.member != p.name {
				err = fmt.Errorf("dialed %s, %q answered", p.name, theirs.member)
			}
			if err == nil {
				start := time.Now()
				p.serve(s, mine, theirs)
				if time.Since(start) > 5*time.Second {
					backoff = 100 * time.Millisecond
				}
			} else {
				p.setErr(err)
				conn.Close()
			}
		}
		select {
		case <-v.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

func (p *peer) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err.Error()
	p.mu.Unlock()
}

func (v *Volume) hello() hello {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("no randomness for a nonce: %v", err))
	}
	return hello{version: protoVersion, volume: v.cfg.Name, member: v.self, policy: v.cfg.SplitBrain,
		size: uint64(v.Size()), nonce: nonce}
}

func encodeHello(h hello) []byte {
	var e enc
	e.u16(h.version)
	e.str(h.volume)
	e.str(h.member)
	e.str(h.policy)
	e.u64(h.size)
	e.bytes(h.nonce)
	return e.b
}

func readHello(s *session) (hello, error) {
	f, err := s.in.read()
	if err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	if f.typ != fHello {
		return hello{}, fmt.Errorf("%w: expected hello, got type %d", ErrBadFrame, f.typ)
	}
	d := dec{b: f.payload}
	h := hello{version: d.u16(), volume: d.str(), member: d.str(), policy: d.str(), size: d.u64()}
	h.nonce = append([]byte(nil), d.bytes()...)
	if err := d.done(); err != nil {
		return hello{}, err
	}
	if h.version != protoVersion {
		return hello{}, fmt.Errorf("replication protocol %d, this member speaks %d", h.version, protoVersion)
	}
	if len(h.nonce) != 32 {
		return hello{}, fmt.Errorf("%w: nonce of %d bytes", ErrBadFrame, len(h.nonce))
	}
	return h, nil
}

// mac proves knowledge of the key for one direction of one connection.
func (v *Volume) mac(from string, fromNonce, toNonce []byte) []byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte("geobooth-replication\x00" + v.cfg.Name + "\x00" + from + "\x00"))
	m.Write(fromNonce)
	m.Write(toNonce)
	return m.Sum(nil)
}

// ErrAuth: the peer did not prove it holds the cluster key.
var ErrAuth = errors.New("replication peer failed authentication")

// serve runs one connection with the peer until it fails.
func (p *peer) serve(s *session, mine, theirs hello) {
	v := p.v
	s.p = p
	authed, err := p.handshake(s, mine, theirs)
	if err != nil {
		v.log.Warn("replication handshake failed", "peer", p.name, "from", s.conn.RemoteAddr().String(), "err", err)
		if authed || s.dialed {
			// Only a connection that proved the key, or that this side
			// dialed at the peer's address, speaks for the peer: a
			// stranger's failed attempt leaves the peer's status alone.
			p.setErr(err)
		}
		s.conn.Close()
		return
	}
	defer func() {
		p.mu.Lock()
		mine := p.connGen == s.gen
		p.mu.Unlock()
		if mine {
			p.disconnect(err)
		} else {
			s.conn.Close()
		}
	}()
	s.conn.SetDeadline(time.Time{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		p.sendLoop(s)
	}()
	err = p.receiveLoop(s)
	s.conn.Close()
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
	<-senderDone
}

// handshake authenticates the peer, exchanges states and bitmaps and
// applies the decision; authed tells whether the peer proved the key.
func (p *peer) handshake(s *session, mine, theirs hello) (authed bool, err error) {
	v := p.v
	var e enc
	e.bytes(v.mac(v.self, mine.nonce, theirs.nonce))
	if err := s.send(fAuth, e.b); err != nil {
		return false, err
	}
	if err := s.out.Flush(); err != nil {
		return false, err
	}
	f, err := s.in.read()
	if err != nil {
		return false, fmt.Errorf("read auth: %w", err)
	}
	d := dec{b: f.payload}
	got := d.bytes()
	if f.typ != fAuth || d.done() != nil || !hmac.Equal(got, v.mac(theirs.member, theirs.nonce, mine.nonce)) {
		v.met.authFailures.Inc()
		return false, ErrAuth
	}
	switch {
	case theirs.volume != v.cfg.Name:
		return true, fmt.Errorf("peer serves volume %q, not %q", theirs.volume, v.cfg.Name)
	case theirs.size != uint64(v.Size()):
		return true, fmt.Errorf("peer's volume has %d bytes, ours %d (grown at one side only: run repl resize again at the primary)", theirs.size, v.Size())
	case theirs.policy != v.cfg.SplitBrain:
		return true, fmt.Errorf("peer's split_brain policy %q differs from ours %q", theirs.policy, v.cfg.SplitBrain)
	}
	if err := s.authenticated(); err != nil {
		return true, err
	}
	// Exchange states and bitmaps; send while receiving, as bitmaps of
	// large volumes exceed socket buffers.
	my := v.localState(p)
	sendErr := make(chan error, 1)
	go func() {
		err := s.send(fState, encodeState(my))
		words := p.bm.snapshot()
		for off := 0; err == nil && off < len(words); off += 1 << 16 {
			end := min(off+1<<16, len(words))
			var e enc
			e.u64(uint64(off))
			for _, w := range words[off:end] {
				e.u64(w)
			}
			err = s.send(fBitmap, e.b)
		}
		if err == nil {
			err = s.send(fBitmapDone, nil)
		}
		if err == nil {
			err = s.out.Flush()
		}
		sendErr <- err
	}()
	remote, peerWords, err := p.readStateAndBitmap(s)
	if serr := <-sendErr; err == nil {
		err = serr
	}
	if err != nil {
		return true, err
	}
	s.remote = remote
	return true, p.apply(s, my, remote, peerWords)
}

func (p *peer) readStateAndBitmap(s *session) (stateMsg, []uint64, error) {
	f, err := s.in.read()
	if err != nil {
		return stateMsg{}, nil, fmt.Errorf("read state: %w", err)
	}
	if f.typ != fState {
		return stateMsg{}, nil, fmt.Errorf("%w: expected state, got type %d", ErrBadFrame, f.typ)
	}
	st, err := decodeState(f.payload)
	if err != nil {
		return stateMsg{}, nil, err
	}
	words := make([]uint64, (p.v.blocks()+63)/64)
	for {
		f, err := s.in.read()
		if err != nil {
			return stateMsg{}, nil, fmt.Errorf("read bitmap: %w", err)
		}
		if f.typ == fBitmapDone {
			return st, words, nil
		}
		if f.typ != fBitmap {
			return stateMsg{}, nil, fmt.Errorf("%w: expected bitmap, got type %d", ErrBadFrame, f.typ)
		}
		d := dec{b: f.payload}
		off := d.u64()
		n := len(d.b) / 8
		if off > uint64(len(words)) || uint64(n) > uint64(len(words))-off || len(d.b)%8 != 0 {
			return stateMsg{}, nil, fmt.Errorf("%w: bitmap chunk beyond the volume", ErrBadFrame)
		}
		for i := 0; i < n; i++ {
			words[int(off)+i] = d.u64()
		}
	}
}

func (v *Volume) localState(p *peer) stateMsg {
	v.mu.Lock()
	defer v.mu.Unlock()
	return stateMsg{role: v.role, disk: v.m.Disk, current: v.m.Current, bitmap: v.m.Bitmap[p.name],
		history: append([]uint64(nil), v.m.History...), crashed: v.m.CrashedPrimary, discard: v.m.DiscardMyData, blank: v.m.Blank, primarySince: v.m.PrimarySince,
		dirty: p.bm.ones()}
}

func encodeState(s stateMsg) []byte {
	var e enc
	if s.role == Primary {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.str(string(s.disk))
	e.b = append(e.b, encodeGen(s.current, s.history)...)
	e.u64(s.bitmap)
	// Flags: 1 crashed, 2 discard, 4 blank (a peer of an older build
	// refuses the handshake while discard or blank is set, rather than
	// ignore it).
	var flags uint8
	if s.crashed {
		flags |= 1
	}
	if s.discard {
		flags |= 2
	}
	if s.blank {
		flags |= 4
	}
	e.u8(flags)
	e.u64(uint64(s.primarySince))
	e.u64(s.dirty)
	return e.b
}

func decodeState(b []byte) (stateMsg, error) {
	d := dec{b: b}
	var s stateMsg
	role := d.u8()
	s.role = Secondary
	if role == 1 {
		s.role = Primary
	}
	s.disk = DiskState(d.str())
	s.current, s.history = decodeGen(&d)
	s.bitmap = d.u64()
	flags := d.u8()
	s.crashed, s.discard, s.blank = flags&1 != 0, flags&2 != 0, flags&4 != 0
	if d.err == nil && (role > 1 || flags > 7) {
		return s, fmt.Errorf("%w: flag byte out of range", ErrBadFrame)
	}
	s.primarySince = int64(d.u64())
	s.dirty = d.u64()
	if err := d.done(); err != nil {
		return s, err
	}
	switch s.disk {
	case UpToDate, Consistent, Outdated, Inconsistent:
	default:
		return s, fmt.Errorf("%w: disk state %q", ErrBadFrame, s.disk)
	}
	return s, nil
}

// apply carries out the handshake's decision.
func (p *peer) apply(s *session, my, remote stateMsg, peerWords []uint64) error {
	v := p.v
	dc := decide(my, remote, v.cfg.SplitBrain, v.self, p.name)
	overwritesPrimary := dc.action == actTarget && my.role == Primary || dc.action == actSource && remote.role == Primary
	switch {
	case overwritesPrimary && dc.split:
		// A policy may discard a secondary's changes, never a primary's.
		dc = decision{action: actSplitBrain, reason: "split brain with the losing side primary: " + dc.reason}
	case overwritesPrimary:
		dc = decision{action: actRefuse, reason: "the resync would overwrite a primary: " + dc.reason}
	case my.role == Primary && remote.role == Primary && dc.action != actSplitBrain:
		dc = decision{action: actRefuse, reason: "both sides are primary"}
	}
	p.mu.Lock()
	// Close cancels the context before it disconnects the peers (under
	// p.mu): a link whose handshake ends after that is not taken up, or
	// Close would wait for it for ever.
	if v.ctx.Err() != nil {
		p.mu.Unlock()
		return ErrClosed
	}
	old := p.conn
	p.connGen++
	s.gen = p.connGen
	p.conn = s.conn
	p.remoteRole, p.remoteDisk, p.remoteGen = remote.role, remote.disk, remote.current
	p.lastErr = ""
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	v.log.Info("replication peer connected", "peer", p.name, "decision", dc.action, "reason", dc.reason,
		"local_gen", fmt.Sprintf("%016x", my.current), "peer_gen", fmt.Sprintf("%016x", remote.current))
	switch dc.action {
	case actRefuse:
		p.setState(Refused)
		return errors.New(dc.reason)
	case actSplitBrain:
		v.met.splitBrains.Inc()
		v.mu.Lock()
		v.splitBrains++
		v.mu.Unlock()
		p.setState(SplitBrain)
		v.log.Error("split brain: both replicas were written since they parted; waiting for the operator (split_brain policy disconnect)",
			"peer", p.name, "local_changes", my.dirty, "peer_changes", remote.dirty)
		v.event("split brain", "volume %s and %s were both written apart: waiting for the operator", v.cfg.Name, p.name)
		return errors.New("split brain")
	case actNone:
		if remote.role == Primary {
			v.setDisk(UpToDate)
		}
		p.setState(InSync)
	case actSource:
		if dc.split {
			v.met.splitBrains.Inc()
			v.log.Warn("split brain resolved by policy: the peer's changes are discarded", "peer", p.name, "policy", v.cfg.SplitBrain, "peer_changes", remote.dirty)
			v.event("split brain", "volume %s: %s's %d changed blocks discarded (%s)", v.cfg.Name, p.name, remote.dirty, v.cfg.SplitBrain)
		}
		if dc.full {
			p.bm.setRange(0, v.blocks()-1)
		} else {
			p.bm.merge(peerWords)
		}
		p.setState(SyncSource)
		p.startResync(s.gen)
	case actTarget:
		// Blocks that differ from the peer's are what this replica
		// loses: the resync counts them as they arrive (discardedBlock),
		// not the bitmap's marks (a crashed primary's hot extents are
		// marked whether or not the peer has them).
		if dc.split {
			v.met.splitBrains.Inc()
			why := v.cfg.SplitBrain
			if my.discard {
				why = "discard-my-data"
			}
			s.discarding, s.mine, s.theirs, s.mineExact = true, p.bm.snapshot(), peerWords, true
			v.log.Warn("this replica's writes since the split are discarded", "peer", p.name,
				"by", why, "blocks_at_most", my.dirty)
			v.event("split brain", "volume %s: the blocks written here since the split (at most %d) are discarded, %s wins (%s)", v.cfg.Name, my.dirty, p.name, why)
		} else if my.crashed && my.dirty > 0 {
			s.discarding, s.mine, s.theirs, s.mineExact = true, p.bm.snapshot(), peerWords, false
			v.log.Warn("this replica crashed as primary and the peer went on: the writes it had not replicated are discarded",
				"peer", p.name, "blocks_at_most", my.dirty)
			v.event("writes discarded", "volume %s: the writes this old primary had not replicated (at most %d blocks) are discarded; resyncing from %s", v.cfg.Name, my.dirty, p.name)
		}
		v.setDisk(Inconsistent)
		p.setState(SyncTarget)
	}
	return nil
}

func (p *peer) setState(st PeerState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = st
	p.cond.Broadcast()
}

// sendLoop writes queued frames, and pings when idle.
func (p *peer) sendLoop(s *session) {
	v := p.v
	ping := v.cfg.PingInterval.D()
	ticker := time.NewTicker(ping)
	defer ticker.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				p.mu.Lock()
				p.cond.Broadcast()
				p.mu.Unlock()
			}
		}
	}()
	last := time.Now()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && p.connGen == s.gen && p.conn != nil && time.Since(last) < ping {
			p.cond.Wait()
		}
		if p.connGen != s.gen || p.conn == nil {
			p.mu.Unlock()
			return
		}
		batch := p.queue
		p.queue = nil
		var sent int64
		for _, it := range batch {
			sent += it.bytes
		}
		p.queued -= sent
		catchUp := p.state == Ahead
		p.mu.Unlock()
		var err error
		if len(batch) == 0 {
			err = s.send(fPing, nil)
		}
		for _, it := range batch {
			if err = s.send(it.typ, it.payload); err != nil {
				break
			}
		}
		if err == nil {
			err = s.out.Flush()
		}
		if err != nil {
			s.conn.Close()
			return
		}
		v.met.shipped.WithLabelValues(p.name).Add(float64(sent))
		last = time.Now()
		if catchUp {
			p.startCatchUp(s.gen)
		}
	}
}

// startCatchUp begins the resync of a peer that fell behind, once what
// was queued before has been sent.
func (p *peer) startCatchUp(gen int) {
	p.mu.Lock()
	if p.state != Ahead || p.connGen != gen || len(p.queue) > 0 {
		p.mu.Unlock()
		return
	}
	p.state = SyncSource
	p.mu.Unlock()
	p.v.log.Info("catching up a peer that fell behind", "peer", p.name, "dirty_blocks", p.bm.ones())
	p.startResync(gen)
}

func (p *peer) enqueue(typ frameType, payload []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enqueueLocked(item{typ: typ, payload: payload})
}

// receiveLoop reads the peer's frames until the connection fails.
func (p *peer) receiveLoop(s *session) error {
	v := p.v
	timeout := v.cfg.Timeout.D()
	for {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		f, err := s.in.read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return fmt.Errorf("no frame from %s for %v (half-open link?)", p.name, timeout)
			}
			if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrChecksum) || errors.Is(err, ErrSequence) || errors.Is(err, ErrFrameSize) {
				v.met.badFrames.Inc()
			}
			return err
		}
		p.mu.Lock()
		p.lastRecv = time.Now()
		p.mu.Unlock()
		if err := p.handle(s, f); err != nil {
			if errors.Is(err, ErrBadFrame) {
				v.met.badFrames.Inc()
			}
			return err
		}
	}
}

// changesReplica: the frames that write to this replica or set its
// generation. Only a secondary takes them: data flows from the primary,
// or, with no primary, from the side that resyncs (the handshake's source,
// or the side an operator ran a repair on).
func changesReplica(t frameType) bool {
	switch t {
	case fWrite, fTrim, fZero, fBarrier, fGen, fBehind, fRSData, fRSCsum, fRSDone, fSkipSync, fResize:
		return true
	}
	return false
}

func (p *peer) handle(s *session, f frame) error {
	v := p.v
	if changesReplica(f.typ) && v.Role() == Primary {
		v.log.Error("refusing a frame that would change this primary", "peer", p.name, "frame", f.typ)
		return fmt.Errorf("%w: %s sent frame type %d, which changes a replica, to this primary", ErrBadFrame, p.name, f.typ)
	}
	d := dec{b: f.payload}
	switch f.typ {
	case fPing:
		return d.done()
	case fRole:
		r := Secondary
		if d.u8() == 1 {
			r = Primary
		}
		p.mu.Lock()
		p.remoteRole = r
		p.mu.Unlock()
		return d.done()
	case fWrite, fTrim, fZero:
		d.u64() // epoch: checked at the barrier
		off := int64(d.u64())
		op := pendingOp{off: off}
		switch f.typ {
		case fWrite:
			op.kind, op.data = opWrite, append([]byte(nil), d.b...)
			op.n = int64(len(op.data))
			d.b = nil
		case fTrim:
			op.kind, op.n = opTrim, int64(d.u64())
		case fZero:
			op.kind, op.n = opZero, int64(d.u64())
		}
		if err := d.done(); err != nil {
			return err
		}
		if err := v.checkRange(op.off, op.n); err != nil {
			return fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		s.pending = append(s.pending, op)
		s.pendingBytes += int64(len(op.data))
		if s.pendingBytes > 2*int64(v.cfg.MaxEpoch)+maxPayload {
			return fmt.Errorf("%w: epoch of more than %d bytes", ErrBadFrame, s.pendingBytes)
		}
		return nil
	case fBarrier:
		epoch := d.u64()
		if err := d.done(); err != nil {
			return err
		}
		if err := s.applyEpoch(); err != nil {
			return err
		}
		var e enc
		e.u64(epoch)
		p.enqueue(fBarrierAck, e.b)
		return nil
	case fBarrierAck:
		epoch := d.u64()
		if err := d.done(); err != nil {
			return err
		}
		p.ack(epoch)
		return nil
	case fGen:
		cur, hist := decodeGen(&d)
		if err := d.done(); err != nil {
			return err
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.m.Current == 0 {
			// Only a full sync gives a new replica its first generation.
			return fmt.Errorf("%w: a generation for a replica that was never synced", ErrBadFrame)
		}
		v.m.Current, v.m.History, v.m.Blank = cur, hist, false
		return v.store.save(v.m)
	case fSkipSync:
		g := d.u64()
		if err := d.done(); err != nil {
			return err
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.m.Current != 0 {
			return fmt.Errorf("%w: %s skipped the initial sync, but this replica was written or synced already", ErrBadFrame, p.name)
		}
		v.m.Current, v.m.Disk = g, UpToDate
		if err := v.store.save(v.m); err != nil {
			return err
		}
		v.log.Warn("initial sync skipped by the operator at the peer: the replicas are declared blank and equal", "peer", p.name)
		return nil
	case fBehind:
		if err := d.done(); err != nil {
			return err
		}
		s.pending, s.pendingBytes = nil, 0
		v.setDisk(Outdated)
		p.setState(Behind)
		return nil
	case fRSData:
		off := int64(d.u64())
		data := d.b
		if err := v.checkRange(off, int64(len(data))); err != nil || off%BlockSize != 0 {
			return fmt.Errorf("%w: resync data at %d", ErrBadFrame, off)
		}
		s.startTarget()
		if s.discarding {
			s.countDiscarded(off, data)
		}
		if _, err := v.be.WriteAt(data, off); err != nil {
			v.setDisk(Inconsistent)
			return fmt.Errorf("resync write: %w", err)
		}
		return nil
	case fRSCsum:
		return s.answerCsums(&d)
	case fRSNeed:
		return p.takeNeed(&d)
	case fRSDone:
		cur, hist := decodeGen(&d)
		if err := d.done(); err != nil {
			return err
		}
		return s.finishTarget(cur, hist)
	case fVerifyReq:
		return s.answerVerify(&d)
	case fVerifyResp:
		return p.takeVerify(&d)
	case fResize:
		return p.takeResize(&d)
	case fResizeDone:
		return p.takeResizeDone(&d)
	}
	return fmt.Errorf("%w: unexpected frame type %d after the handshake", ErrBadFrame, f.typ)
}

// applyEpoch applies the operations of a whole epoch and makes them
// durable, so the replica is always a prefix of completed epochs.
func (s *session) applyEpoch() error {
	v := s.p.v
	for _, op := range s.pending {
		var err error
		switch op.kind {
		case opWrite:
			_, err = v.be.WriteAt(op.data, op.off)
		default:
			err = v.be.Punch(op.off, op.n)
		}
		if err != nil {
			v.setDisk(Inconsistent)
			v.met.applyErrors.Inc()
			return fmt.Errorf("apply a replicated write: %w (replica marked Inconsistent)", err)
		}
	}
	if len(s.pending) > 0 {
		if err := v.be.Sync(); err != nil {
			v.setDisk(Inconsistent)
			v.met.applyErrors.Inc()
			return fmt.Errorf("sync a replicated epoch: %w (replica marked Inconsistent)", err)
		}
		if err := v.noteSource(s.p.name); err != nil {
			return err
		}
	}
	s.pending, s.pendingBytes = nil, 0
	return nil
}

// startTarget marks the replica Inconsistent at the first resync frame of
// a catch-up (a handshake resync already did).
func (s *session) startTarget() {
	if s.rsStarted {
		return
	}
	s.rsStarted = true
	s.p.v.setDisk(Inconsistent)
	s.p.setState(SyncTarget)
}

func (s *session) finishTarget(cur uint64, hist []uint64) error {
	v, p := s.p.v, s.p
	if err := v.be.Sync(); err != nil {
		return fmt.Errorf("sync after resync: %w", err)
	}
	v.mu.Lock()
	v.m.Current, v.m.History = cur, hist
	v.m.Bitmap[p.name] = 0
	v.m.CrashedPrimary, v.m.Blank = false, false
	// The operator's discard-my-data is spent once the resync it asked
	// for ends (a cut one starts again at the next handshake).
	v.m.DiscardMyData = false
	v.m.Disk = UpToDate
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return err
	}
	p.bm.clearAll()
	if err := p.bm.flush(); err != nil {
		return err
	}
	s.rsStarted = false
	p.setState(InSync)
	v.log.Info("resync finished: in sync with the peer", "peer", p.name)
	if s.discarding {
		v.mu.Lock()
		n := v.discarded
		v.mu.Unlock()
		v.log.Warn("resync that discarded this replica's writes finished", "peer", p.name, "discarded_blocks_total", n)
		s.discarding, s.mine, s.theirs = false, nil, nil
	}
	return nil
}

// wroteHere says whether this side wrote block blk since it parted from
// the source, as far as the bitmaps tell.
func (s *session) wroteHere(blk int64) bool {
	marked := func(words []uint64) bool {
		w := blk / 64
		return w < int64(len(words)) && words[w]&(1<<(blk%64)) != 0
	}
	return marked(s.mine) && (s.mineExact || !marked(s.theirs))
}

// countDiscarded counts the blocks of a resync chunk that this replica
// wrote (wroteHere) and that differ from the source's: writes of its own
// that the resync throws away.
func (s *session) countDiscarded(off int64, data []byte) {
	v := s.p.v
	local := make([]byte, len(data))
	if _, err := v.be.ReadAt(local, off); err != nil {
		v.log.Warn("cannot read the blocks a resync replaces: not counted", "offset", off, "err", err)
		return
	}
	n := 0
	for i := 0; i+BlockSize <= len(data); i += BlockSize {
		blk := (off + int64(i)) / BlockSize
		if s.wroteHere(blk) && !bytes.Equal(local[i:i+BlockSize], data[i:i+BlockSize]) {
			n++
		}
	}
	if n == 0 {
		return
	}
	v.mu.Lock()
	v.discarded += uint64(n)
	v.mu.Unlock()
	v.met.discarded.Add(float64(n))
}

// announceRole tells the connected peers of a role change.
func (v *Volume) announceRole(r Role) {
	var e enc
	if r == Primary {
		e.u8(1)
	} else {
		e.u8(0)
	}
	for _, name := range v.order {
		p := v.peers[name]
		p.mu.Lock()
		if p.conn != nil {
			p.enqueueLocked(item{typ: fRole, payload: e.b})
		}
		p.mu.Unlock()
	}
}

// waitState waits until the peer reaches one of states, for tests and
// operators.
func (p *peer) waitState(ctx context.Context, states ...PeerState) error {
	defer p.wakeOnDone(ctx)()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for _, st := range states {
			if p.state == st {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("peer %s is %s: %w", p.name, p.state, ctx.Err())
		}
		p.cond.Wait()
	}
}
