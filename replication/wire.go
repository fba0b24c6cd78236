package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Frames on a replication connection:
//
//	magic "GBRP" | type u8 | flags u8 | reserved u16 | length u32 |
//	seq u64 | payload (length bytes) | crc32c u32 (header and payload)
//
// seq numbers the frames of one direction of one connection from 1; a
// frame out of sequence, with a bad checksum or an unknown type ends the
// connection (the other side resends from its last acknowledged epoch).

type frameType uint8

const (
	fHello frameType = iota + 1
	fAuth
	fState
	fBitmap
	fBitmapDone
	fWrite
	fTrim
	fZero
	fBarrier
	fBarrierAck
	fGen
	fRSData
	fRSCsum
	fRSNeed
	fRSDone
	fVerifyReq
	fVerifyResp
	fPing
	fBehind
	fRole
	fSkipSync
	fResize
	fResizeDone
	frameTypeEnd
)

const (
	frameMagic  = 0x47425250 // "GBRP"
	headerSize  = 4 + 1 + 1 + 2 + 4 + 8
	trailerSize = 4
	// maxPayload bounds one frame (a write or resync chunk plus its header).
	maxPayload = 4<<20 + 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of the frame layer.
var (
	ErrBadFrame  = errors.New("bad replication frame")
	ErrSequence  = errors.New("replication frame out of sequence")
	ErrChecksum  = errors.New("replication frame checksum mismatch")
	ErrFrameSize = errors.New("replication frame too large")
)

type frame struct {
	typ     frameType
	flags   uint8
	seq     uint64
	payload []byte
}

// appendFrame encodes f (with its seq) onto b.
func appendFrame(b []byte, f frame) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, frameMagic)
	b = append(b, byte(f.typ), f.flags, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.payload)))
	b = binary.BigEndian.AppendUint64(b, f.seq)
	b = append(b, f.payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// frameReader reads frames and checks magic, size, checksum and sequence.
type frameReader struct {
	r       io.Reader
	nextSeq uint64
	hdr     [headerSize]byte
	buf     []byte
	// max bounds a payload (0: maxPayload); small until the peer proved
	// the key, so that a stranger makes nothing large be allocated.
	max int
}

func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: r, nextSeq: 1} }

// read returns the next frame; its payload is valid until the next call.
func (fr *frameReader) read() (frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return frame{}, err
	}
	f, n, err := parseHeader(fr.hdr[:])
	if err != nil {
		return frame{}, err
	}
	if fr.max > 0 && n > fr.max {
		return frame{}, fmt.Errorf("%w: %d bytes before authentication", ErrFrameSize, n)
	}
	if cap(fr.buf) < n+trailerSize {
		fr.buf = make([]byte, n+trailerSize)
	}
	body := fr.buf[:n+trailerSize]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return frame{}, fmt.Errorf("%w: truncated payload: %v", ErrBadFrame, err)
	}
	sum := crc32.Update(crc32.Checksum(fr.hdr[:], castagnoli), castagnoli, body[:n])
	if binary.BigEndian.Uint32(body[n:]) != sum {
		return frame{}, ErrChecksum
	}
	if f.seq != fr.nextSeq {
		return frame{}, fmt.Errorf("%w: got %d, want %d", ErrSequence, f.seq, fr.nextSeq)
	}
	fr.nextSeq++
	f.payload = body[:n]
	return f, nil
}

func parseHeader(h []byte) (frame, int, error) {
	if binary.BigEndian.Uint32(h) != frameMagic {
		return frame{}, 0, fmt.Errorf("%w: magic %08x", ErrBadFrame, binary.BigEndian.Uint32(h))
	}
	f := frame{typ: frameType(h[4]), flags: h[5], seq: binary.BigEndian.Uint64(h[12:])}
	if f.typ == 0 || f.typ >= frameTypeEnd {
		return frame{}, 0, fmt.Errorf("%w: type %d", ErrBadFrame, f.typ)
	}
	n := int(binary.BigEndian.Uint32(h[8:]))
	if n > maxPayload {
		return frame{}, 0, fmt.Errorf("%w: %d bytes", ErrFrameSize, n)
	}
	return f, n, nil
}

// payload encoding helpers: big-endian, length-prefixed strings.

type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}
func (e *enc) str(s string) { e.bytes([]byte(s)) }

type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: payload too short", ErrBadFrame)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (d *dec) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}
func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}
func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
func (d *dec) bytes() []byte { return d.take(int(d.u32())) }
func (d *dec) str() string   { return string(d.bytes()) }

// done fails unless the whole payload was consumed.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadFrame, len(d.b))
	}
	return d.err
}

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
