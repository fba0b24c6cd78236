package dnsfail

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/geobooth/geobooth/kit/sockopt"
)

// The UDP fast path: several sockets on the same port (SO_REUSEPORT, one
// per core), batched reads and writes (recvmmsg/sendmmsg), and answers
// kept in wire format per question, with the ID, flags and the query's
// spelling patched in. Anything unusual (TSIG, an unknown EDNS version,
// extra records, transfers) takes the full path through miekg/dns.

const batch = 64

// wireCache maps a question key to a packed answer.
type wireCache struct {
	mu  sync.RWMutex
	gen atomic.Uint64
	m   map[string]*wireEntry
}

type wireEntry struct {
	gen uint64
	// until, when set, ends the entry (a failover answer: its TTL and
	// lease move with time).
	until time.Time
	msg   []byte
	// patchable: the answer refers to the question name only by
	// compression pointers, so patching the question echoes the case.
	patchable bool
	// queries counts the answers of its response code.
	queries prometheus.Counter
}

// invalidate drops every entry (the data changed).
func (c *wireCache) invalidate() { c.gen.Add(1) }

func (c *wireCache) get(key []byte, now time.Time) *wireEntry {
	c.mu.RLock()
	e := c.m[string(key)]
	c.mu.RUnlock()
	if e == nil || e.gen != c.gen.Load() || (!e.until.IsZero() && !now.Before(e.until)) {
		return nil
	}
	return e
}

func (c *wireCache) put(key []byte, e *wireEntry) {
	c.mu.Lock()
	if len(c.m) > 100000 {
		c.m = map[string]*wireEntry{}
	}
	c.m[string(key)] = e
	c.mu.Unlock()
}

// fastQuery is what the fast path reads of a request.
type fastQuery struct {
	id       uint16
	flags    uint16
	nameEnd  int // offset after the question name
	qtype    uint16
	edns     bool
	do       bool // DNSSEC OK: the answer is signed
	udpSize  int
	cacheKey []byte
}

// parseFast reads a plain query: one question of class IN, at most one OPT
// record (version 0) and nothing else. ok is false for anything else.
// (Long on purpose: one pass over the bytes, no call or allocation per
// field, on the path every query takes.)
func parseFast(p []byte, key []byte) (fastQuery, bool) {
	var q fastQuery
	if len(p) < 17 {
		return q, false
	}
	q.id = binary.BigEndian.Uint16(p)
	q.flags = binary.BigEndian.Uint16(p[2:])
	if q.flags&0xf800 != 0 { // QR or an opcode other than QUERY
		return q, false
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(p[4:]), binary.BigEndian.Uint16(p[6:]), binary.BigEndian.Uint16(p[8:]), binary.BigEndian.Uint16(p[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return q, false
	}
	key = key[:0]
	i := 12
	for {
		if i >= len(p) {
			return q, false
		}
		l := int(p[i])
		if l&0xc0 != 0 || i+1+l > len(p) || i-12+1+l > 255 {
			return q, false
		}
		key = append(key, byte(l))
		for _, b := range p[i+1 : i+1+l] {
			if b >= 'A' && b <= 'Z' {
				b += 'a' - 'A'
			}
			key = append(key, b)
		}
		i += 1 + l
		if l == 0 {
			break
		}
	}
	q.nameEnd = i
	if i+4 > len(p) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(p[i:])
	if binary.BigEndian.Uint16(p[i+2:]) != dns.ClassINET {
		return q, false
	}
	switch q.qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeMAILA, dns.TypeMAILB:
		return q, false
	}
	i += 4
	q.udpSize = dns.MinMsgSize
	if ar == 1 {
		// OPT: root name, type 41, class = UDP size, TTL = ext rcode,
		// version, flags; rdata (options, ignored).
		if i+11 > len(p) || p[i] != 0 || binary.BigEndian.Uint16(p[i+1:]) != dns.TypeOPT || p[i+6] != 0 {
			return q, false
		}
		rdlen := int(binary.BigEndian.Uint16(p[i+9:]))
		if i+11+rdlen != len(p) {
			return q, false
		}
		q.edns = true
		q.do = p[i+7]&0x80 != 0
		q.udpSize = max(dns.MinMsgSize, min(int(binary.BigEndian.Uint16(p[i+3:])), advertisedUDP))
		i += 11 + rdlen
	}
	if i != len(p) {
		return q, false
	}
	key = binary.BigEndian.AppendUint16(key, q.qtype)
	key = binary.BigEndian.AppendUint16(key, uint16(q.udpSize))
	switch {
	case q.do:
		key = append(key, 2)
	case q.edns:
		key = append(key, 1)
	default:
		key = append(key, 0)
	}
	q.cacheKey = key
	return q, true
}

// patch writes the cached answer for q into out: the request's ID, RD and
// CD bits, and its spelling of the question name.
func patch(out []byte, e *wireEntry, q fastQuery, req []byte) []byte {
	out = append(out[:0], e.msg...)
	binary.BigEndian.PutUint16(out, q.id)
	out[2] = out[2]&^0x01 | byte(q.flags>>8)&0x01 // RD
	out[3] = out[3]&^0x10 | byte(q.flags)&0x10    // CD
	copy(out[12:q.nameEnd], req[12:q.nameEnd])
	return out
}

// canonical is the request the cached answer is built from: lower-case
// name, ID 0, RD and CD clear.
func canonical(req []byte, q fastQuery) []byte {
	c := append([]byte(nil), req...)
	binary.BigEndian.PutUint16(c, 0)
	c[2] &^= 0x01
	c[3] &^= 0x10
	i := 12
	for i < q.nameEnd {
		l := int(c[i])
		for j := i + 1; j <= i+l; j++ {
			if c[j] >= 'A' && c[j] <= 'Z' {
				c[j] += 'a' - 'A'
			}
		}
		i += 1 + l
	}
	return c
}

// udpLoop serves one SO_REUSEPORT socket until it is closed.
func (s *Server) udpLoop(pc net.PacketConn) {
	b, err := newUDPBatch(pc)
	if err != nil {
		s.log.Error("DNS over UDP not served", "err", err)
		return
	}
	key := make([]byte, 0, 300)
	for {
		n, err := b.read()
		if err != nil {
			if errno := syscall.Errno(0); errors.As(err, &errno) {
				// A failed recvmmsg (ENOMEM, say) loses that batch,
				// not the socket.
				s.log.Debug("DNS queries not read", "err", err)
				continue
			}
			return // closed
		}
		now := time.Now()
		k := 0
		for i := 0; i < n; i++ {
			resp := s.handleUDP(b.buffer(k), b.request(i), b.from(i), key, now)
			if len(resp) == 0 {
				continue
			}
			b.reply(k, i, resp)
			k++
		}
		if skipped, err := b.write(k); err != nil || skipped > 0 {
			s.log.Debug("DNS replies not sent", "skipped", skipped, "err", err)
		}
	}
}

// handleUDP answers one datagram into buf; nil: no reply. (Long on
// purpose: the cached answer's path, with the rate limit and the slow path
// in line, allocates nothing.)
func (s *Server) handleUDP(buf, req []byte, from netip.AddrPort, key []byte, now time.Time) []byte {
	q, fast := parseFast(req, key)
	if s.rrl != nil && from.IsValid() {
		switch s.rrl.check(from.Addr(), now.Unix()) {
		case rrlDrop:
			s.met.rrlDropped.Inc()
			return nil
		case rrlSlip:
			s.met.rrlSlipped.Inc()
			if fast {
				return truncated(buf, req, q.nameEnd+4)
			}
			return nil
		}
	}
	if fast {
		if e := s.cache.get(q.cacheKey, now); e != nil && (e.patchable || sameName(req, e.msg, q.nameEnd)) {
			s.met.fastHits.Inc()
			e.queries.Inc()
			return patch(buf, e, q, req)
		}
	}
	r := new(dns.Msg)
	if err := r.Unpack(req); err != nil {
		return formErr(buf, req)
	}
	if r.Response {
		return nil
	}
	if r.Opcode != dns.OpcodeQuery && r.Opcode != dns.OpcodeNotify || len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotImplemented)
		if len(r.Question) != 1 && r.Opcode == dns.OpcodeQuery {
			m.Rcode = dns.RcodeFormatError
		}
		b, _ := m.PackBuffer(buf)
		return b
	}
	qq := query{msg: r}
	if from.IsValid() {
		qq.remote = net.IP(from.Addr().AsSlice())
	}
	var reqMAC, secret string
	if t := r.IsTsig(); t != nil {
		qq.tsigKey = t.Hdr.Name
		secret = s.set.Load().keys[t.Hdr.Name]
		err := dns.ErrSecret
		if secret != "" {
			err = dns.TsigVerify(req, secret, "", false)
		}
		if code := tsigError(err); code != 0 {
			m := tsigRefusal(r, code, now)
			s.met.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
			b, _ := m.PackBuffer(buf)
			return b
		}
		qq.tsigOK = true
		reqMAC = t.MAC
	}
	var meta answerMeta
	m, _ := s.answerMeta(qq, now, &meta)
	if m == nil { // a transfer over UDP is refused in answer; nothing else
		return nil
	}
	m.Truncate(udpSize(r))
	s.met.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
	if qq.tsigOK {
		t := r.IsTsig()
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, now.Unix())
		b, _, err := dns.TsigGenerate(m, secret, reqMAC, false)
		if err != nil {
			return nil
		}
		return b
	}
	b, err := m.PackBuffer(buf)
	if err != nil {
		return nil
	}
	if fast && r.IsTsig() == nil {
		s.remember(q, req, now, &meta)
	}
	return b
}

// remember caches the answer of a fast-path question, built from the
// canonical form of the request.
func (s *Server) remember(q fastQuery, req []byte, now time.Time, meta *answerMeta) {
	gen := s.cache.gen.Load()
	c := new(dns.Msg)
	if err := c.Unpack(canonical(req, q)); err != nil {
		return
	}
	var cm answerMeta
	m, _ := s.answerMeta(query{msg: c}, now, &cm)
	if m == nil {
		return
	}
	m.Truncate(q.udpSize)
	b, err := m.Pack()
	if err != nil {
		return
	}
	e := &wireEntry{gen: gen, msg: b, until: cm.until, queries: s.met.queries.WithLabelValues(dns.RcodeToString[m.Rcode])}
	// The question name must not appear again uncompressed.
	e.patchable = !containsAt(b[q.nameEnd:], b[12:q.nameEnd])
	s.cache.put(append([]byte(nil), q.cacheKey...), e)
}

func containsAt(hay, needle []byte) bool {
	for i := 0; i+len(needle) <= len(hay); i++ {
		if string(hay[i:i+len(needle)]) == string(needle) {
			return true
		}
	}
	return false
}

// sameName reports whether the request spells the name as the cached
// answer does.
func sameName(req, msg []byte, end int) bool {
	return len(msg) >= end && string(req[12:end]) == string(msg[12:end])
}

// formErr answers a message that does not parse, when its header does.
func formErr(buf, req []byte) []byte {
	if len(req) < 12 || req[2]&0x80 != 0 {
		return nil
	}
	buf = append(buf[:0], req[:12]...)
	buf[2] = 0x80 | req[2]&0x79 // QR, opcode and RD kept
	buf[3] = dns.RcodeFormatError
	for i := 4; i < 12; i++ {
		buf[i] = 0
	}
	return buf
}

// rcvbuf is the receive buffer asked for each UDP socket: with the
// default (208 KiB), a burst of a few hundred queries overflows it while
// the loop answers the batch before, and each query dropped so costs its
// client a timeout.
const rcvbuf = 4 << 20

// listenUDP opens n sockets sharing addr (SO_REUSEPORT), each with a
// receive buffer of rcvbuf bytes or what the system allows; granted is
// what it allowed.
func listenUDP(ctx context.Context, addr string, n int) (pcs []net.PacketConn, granted int, err error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for i := 0; i < n; i++ {
		a := addr
		if i > 0 {
			a = pcs[0].LocalAddr().String()
		}
		pc, err := lc.ListenPacket(ctx, "udp", a)
		if err == nil {
			granted, err = sockopt.ReadBuffer(pc.(*net.UDPConn), rcvbuf)
			if err != nil {
				pc.Close()
			}
		}
		if err != nil {
			for _, p := range pcs {
				p.Close()
			}
			return nil, 0, err
		}
		pcs = append(pcs, pc)
	}
	return pcs, granted, nil
}
