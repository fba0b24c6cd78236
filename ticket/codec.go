package ticket

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The peer wire format, version 1. Every datagram is
//
//	header  magic "GBTK" | version u8 | type u8 | flags u8 | reason u8 |
//	        from u16 | to u16 | term u64 | time i64 (sender's wall clock,
//	        Unix ns) | epoch u64 | seq u64 | digest u64 | body length u16 |
//	        ticket length u8 | ticket
//	body    round u64 | ok u8 | site i16 | acked i16 | remaining i64 (ns) |
//	        attr digest u64 | attr count u8 | attrs
//	attr    name length u8 | name | value length u8 | value | version u64 |
//	        writer u16 | deleted u8
//	mac     HMAC-SHA256 over all of the above, with the cluster key
//
// All integers are big-endian. epoch identifies the sender's boot and seq
// numbers its datagrams within it; with time they let a receiver refuse
// replays (ReplayFilter). digest summarises the sender's cluster
// configuration, so members whose views differ refuse each other.

// WireVersion is the version of the ticket protocol's datagrams: a
// member refuses (and counts) a datagram of another version.
const WireVersion = wireVersion

const (
	wireVersion = 1
	headerLen   = 4 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 2 + 1
	bodyFixed   = 8 + 1 + 2 + 2 + 8 + 8 + 1
	macLen      = sha256.Size
	// MaxDatagram bounds an encoded message.
	MaxDatagram = 16 << 10
	// MinKeyLen and MaxKeyLen bound the shared key, as Booth's authfile.
	MinKeyLen = 8
	MaxKeyLen = 64
)

var magic = [4]byte{'G', 'B', 'T', 'K'}

// Codec errors; Decode wraps them with detail.
var (
	ErrShort     = errors.New("datagram too short")
	ErrMagic     = errors.New("not a geobooth datagram")
	ErrVersion   = errors.New("unsupported wire version")
	ErrAuth      = errors.New("authentication failed")
	ErrMalformed = errors.New("malformed datagram")
	ErrReplay    = errors.New("replayed datagram")
	ErrStale     = errors.New("datagram outside max_time_skew")
	ErrKey       = errors.New("invalid key")
)

// Envelope is a message with the fields the transport adds.
type Envelope struct {
	Msg Message
	// Time is the sender's wall clock when it sent (Unix ns).
	Time int64
	// Epoch identifies the sender's boot; Seq numbers its datagrams.
	Epoch, Seq uint64
	// Digest summarises the sender's cluster configuration.
	Digest uint64
}

// CheckKey validates a shared key's length.
func CheckKey(key []byte) error {
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrKey, len(key), MinKeyLen, MaxKeyLen)
	}
	return nil
}

// Encode serialises e and authenticates it with key.
func Encode(e Envelope, key []byte) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	m := e.Msg
	if len(m.Ticket) == 0 || len(m.Ticket) > MaxNameLen {
		return nil, fmt.Errorf("encode: ticket name of %d bytes: %w", len(m.Ticket), ErrMalformed)
	}
	if m.From < 0 || m.From >= MaxMembers || m.To < 0 || m.To >= MaxMembers {
		return nil, fmt.Errorf("encode: member index out of range: %w", ErrMalformed)
	}
	if len(m.Attrs) > MaxAttrs {
		return nil, fmt.Errorf("encode: %d attributes: %w", len(m.Attrs), ErrMalformed)
	}
	b := make([]byte, 0, headerLen+len(m.Ticket)+bodyFixed+macLen+64*len(m.Attrs))
	b = append(b, magic[:]...)
	b = append(b, wireVersion, byte(m.Type), byte(m.Flags), byte(m.Reason))
	b = binary.BigEndian.AppendUint16(b, uint16(m.From))
	b = binary.BigEndian.AppendUint16(b, uint16(m.To))
	b = binary.BigEndian.AppendUint64(b, m.Term)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = binary.BigEndian.AppendUint64(b, e.Epoch)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, e.Digest)
	lenAt := len(b)
	b = append(b, 0, 0)
	b = append(b, byte(len(m.Ticket)))
	b = append(b, m.Ticket...)
	bodyAt := len(b)
	b = binary.BigEndian.AppendUint64(b, m.Round)
	b = append(b, boolByte(m.OK))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(m.Site)))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(m.Acked)))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Remaining))
	b = binary.BigEndian.AppendUint64(b, m.AttrDigest)
	b = append(b, byte(len(m.Attrs)))
	for _, a := range m.Attrs {
		if len(a.Name) > 255 || len(a.Value) > 255 {
			return nil, fmt.Errorf("encode: attribute %q too long: %w", a.Name, ErrMalformed)
		}
		b = append(b, byte(len(a.Name)))
		b = append(b, a.Name...)
		b = append(b, byte(len(a.Value)))
		b = append(b, a.Value...)
		b = binary.BigEndian.AppendUint64(b, a.Version)
		b = binary.BigEndian.AppendUint16(b, a.Writer)
		b = append(b, boolByte(a.Deleted))
	}
	body := len(b) - bodyAt
	if len(b)+macLen > MaxDatagram {
		return nil, fmt.Errorf("encode: %d bytes: %w", len(b)+macLen, ErrMalformed)
	}
	binary.BigEndian.PutUint16(b[lenAt:], uint16(body))
	return append(b, mac(key, b)...), nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func mac(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// Decode checks the datagram's structure and its MAC against each key in
// turn (the current key first, then, during a rotation, the next one) and
// returns the envelope. It never panics on any input.
func Decode(b []byte, keys ...[]byte) (Envelope, error) {
	var e Envelope
	if len(b) < headerLen+1+bodyFixed+macLen {
		return e, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if len(b) > MaxDatagram {
		return e, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return e, ErrMagic
	}
	if b[4] != wireVersion {
		return e, fmt.Errorf("%w %d (this member speaks %d)", ErrVersion, b[4], wireVersion)
	}
	data, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	ok := false
	for _, k := range keys {
		if len(k) > 0 && hmac.Equal(sum, mac(k, data)) {
			ok = true
			break
		}
	}
	if !ok {
		return e, ErrAuth
	}
	r := reader{b: data}
	r.skip(5)
	m := &e.Msg
	m.Type = MsgType(r.u8())
	m.Flags = Flags(r.u8())
	m.Reason = Reason(r.u8())
	m.From = int(r.u16())
	m.To = int(r.u16())
	m.Term = r.u64()
	e.Time = int64(r.u64())
	e.Epoch = r.u64()
	e.Seq = r.u64()
	e.Digest = r.u64()
	bodyLen := int(r.u16())
	m.Ticket = string(r.bytes(int(r.u8())))
	if r.err == nil && len(r.b)-r.off != bodyLen {
		return e, fmt.Errorf("%w: body length %d, have %d", ErrMalformed, bodyLen, len(r.b)-r.off)
	}
	m.Round = r.u64()
	m.OK = r.flag()
	m.Site = int(int16(r.u16()))
	m.Acked = int(int16(r.u16()))
	m.Remaining = time.Duration(r.u64())
	m.AttrDigest = r.u64()
	n := int(r.u8())
	if n > MaxAttrs {
		return e, fmt.Errorf("%w: %d attributes", ErrMalformed, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var a Attr
		a.Name = string(r.bytes(int(r.u8())))
		a.Value = string(r.bytes(int(r.u8())))
		a.Version = r.u64()
		a.Writer = r.u16()
		a.Deleted = r.flag()
		m.Attrs = append(m.Attrs, a)
	}
	if r.err != nil {
		return e, r.err
	}
	if r.off != len(r.b) {
		return e, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b)-r.off)
	}
	switch {
	case m.Type == 0 || m.Type >= msgTypeEnd:
		return e, fmt.Errorf("%w: message type %d", ErrMalformed, m.Type)
	case m.Ticket == "":
		return e, fmt.Errorf("%w: empty ticket name", ErrMalformed)
	case m.From >= MaxMembers || m.To >= MaxMembers:
		return e, fmt.Errorf("%w: member index", ErrMalformed)
	case m.Site < None || m.Acked < None || m.Site >= MaxMembers || m.Acked >= MaxMembers || m.Remaining < 0:
		return e, fmt.Errorf("%w: field out of range", ErrMalformed)
	}
	return e, nil
}

// reader reads big-endian fields and remembers the first overrun.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.off+n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated at byte %d", ErrMalformed, r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) skip(n int) { r.take(n) }
func (r *reader) bytes(n int) []byte {
	p := r.take(n)
	return append([]byte(nil), p...)
}
func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

// flag reads a boolean byte, which must be 0 or 1.
func (r *reader) flag() bool {
	v := r.u8()
	if v > 1 && r.err == nil {
		r.err = fmt.Errorf("%w: boolean byte %d at %d", ErrMalformed, v, r.off-1)
	}
	return v == 1
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
