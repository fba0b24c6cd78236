package dnsfail

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
)

// Response-rate limiting for DNS over UDP, as NSD and Knot have it: a
// spoofed source can make an authoritative server send its answers to a
// victim, so each client network (a /24 in IPv4, a /56 in IPv6) gets at
// most rate answers per second. Beyond it, one answer in slip goes out
// truncated (TC), which a real client takes as "ask over TCP" and a
// victim receives at its own size; the others are dropped. The table has
// a fixed number of buckets (networks that share one share its budget),
// so a flood of sources costs no memory.
type rrl struct {
	rate, slip uint32
	seed       maphash.Seed
	stripes    [rrlStripes]rrlStripe
}

const (
	rrlBuckets = 1 << 16
	rrlStripes = 64
)

type rrlStripe struct {
	mu      sync.Mutex
	buckets [rrlBuckets / rrlStripes]rrlBucket
}

type rrlBucket struct {
	network  [8]byte
	second   int64
	answered uint32
	over     uint32
}

// rrlAction is what to do with one answer.
type rrlAction int

const (
	rrlSend rrlAction = iota
	rrlSlip
	rrlDrop
)

func newRRL(rate, slip int) *rrl {
	if rate <= 0 {
		return nil
	}
	return &rrl{rate: uint32(rate), slip: uint32(max(slip, 0)), seed: maphash.MakeSeed()}
}

// network is the client's /24 (IPv4) or /56 (IPv6).
func rrlNetwork(a netip.Addr) [8]byte {
	var n [8]byte
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		n[0], n[1], n[2], n[3] = 4, b[0], b[1], b[2]
		return n
	}
	b := a.As16()
	n[0] = 6
	copy(n[1:], b[:7])
	return n
}

// check counts an answer to from at second now (Unix seconds).
func (l *rrl) check(from netip.Addr, now int64) rrlAction {
	nw := rrlNetwork(from)
	h := maphash.Bytes(l.seed, nw[:])
	st := &l.stripes[h%rrlStripes]
	b := &st.buckets[(h/rrlStripes)%uint64(len(st.buckets))]
	st.mu.Lock()
	defer st.mu.Unlock()
	if b.network != nw || b.second != now {
		*b = rrlBucket{network: nw, second: now}
	}
	if b.answered < l.rate {
		b.answered++
		return rrlSend
	}
	b.over++
	if l.slip > 0 && b.over%l.slip == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// truncated is the slipped answer to a plain query: its header and
// question, with QR and TC set and no records.
func truncated(buf, req []byte, questionEnd int) []byte {
	out := append(buf[:0], req[:questionEnd]...)
	out[2] = req[2]&0x79 | 0x80 | 0x02 // opcode and RD kept; QR, TC
	out[3] = req[3] & 0x10             // CD kept; RCODE NOERROR
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	return out
}
