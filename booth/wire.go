// Package booth speaks ClusterLabs Booth's protocol, so that geoboothd can
// join a cluster whose other members still run boothd (issues 21, 22).
// This file is the datagram codec: the 48-byte header, the 76-byte ticket
// body and the optional HMAC-SHA1 trailer, packed and big-endian, as read
// from Booth's booth.h and transport.c and confirmed against captures of
// Debian's boothd 1.0 (../shared/research/booth-wire.md).
package booth

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// Sizes on the wire.
const (
	HeaderSize  = 48
	TicketSize  = 76
	TrailerSize = 28
	// MaxDatagram is boothd's receive buffer: a longer datagram is cut.
	MaxDatagram = 1024
)

const (
	magic   = 0x5F1BA08C
	version = 0x00010003
	hashID  = 2 // the trailer's hash: HMAC-SHA1
)

// Header options.
const (
	OptAuth = 1 << 0
	OptAttr = 1 << 2
)

// NoLeader is the leader field's "nobody" (after a revoke).
const NoLeader = 0xFFFFFFFF

// Code is a FourCC: an opcode, a result or a reason.
type Code uint32

func fourCC(s string) Code { return Code(binary.BigEndian.Uint32([]byte(s))) }

// String is the code's four characters ("0" for none).
func (c Code) String() string {
	if c == 0 {
		return "0"
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(c))
	return string(b[:])
}

// Opcodes, results and reasons.
var (
	CmdStatus       = fourCC("Stat")
	CmdMyIndex      = fourCC("MIdx")
	CmdRequestVote  = fourCC("RVot")
	CmdVoteFor      = fourCC("VtFr")
	CmdHeartbeat    = fourCC("HrtB")
	CmdAck          = fourCC("Ack.")
	CmdUpdate       = fourCC("UpdE")
	CmdRevoke       = fourCC("Revk")
	CmdReject       = fourCC("RJC!")
	CmdList         = fourCC("CLst")
	CmdGrant        = fourCC("CGnt")
	CmdClientRevoke = fourCC("CRvk")
	CmdPeers        = fourCC("Peer")
	CmdResult       = fourCC("Rslt")
	CmdListReply    = fourCC("RLst")

	ResultAsync      = fourCC("Asyn")
	ResultMore       = fourCC("More")
	ResultSuccess    = fourCC("Sccs")
	ResultFail       = fourCC("Fail")
	ResultInvalid    = fourCC("IArg")
	ResultPending    = fourCC("Pend")
	ResultInProgress = fourCC("XPrg")
	ResultAttrPrereq = fourCC("APrq")
	ResultIdle       = fourCC("Tidl")
	ResultOver       = fourCC("Over")
	ResultBusy       = fourCC("Busy")
	ResultAuth       = fourCC("Auth")
	ResultOlder      = fourCC("TOdt")
	ResultValid      = fourCC("TVld")
	ResultOutdated   = fourCC("Outd")
	ResultRedirect   = fourCC("Redr")

	ReasonAgain     = fourCC("Aaaa")
	ReasonLost      = fourCC("TLst")
	ReasonReacquire = fourCC("Racq")
	ReasonAdmin     = fourCC("Admn")
	ReasonLocalFail = fourCC("LocF")
	ReasonStepDown  = fourCC("Spdn")
	ReasonSplit     = fourCC("Splt")
)

// Header is a message's fixed part.
type Header struct {
	Opts    uint32
	Secs    uint32 // with auth: the sender's clock, for the replay check
	Usecs   uint32
	From    uint32 // the sender's site id
	Cmd     Code
	Request Code // the opcode being answered
	Options uint32
	Reason  Code
	Result  Code
}

// Ticket is a message's ticket body.
type Ticket struct {
	Name   string
	Leader uint32 // a site id, NoLeader, or with no leader the vote
	Term   uint32
	// ValidFor is the lease's remaining time, truncated, in the sender's
	// unit (seconds, or milliseconds when a time in its configuration is
	// not whole seconds): the wire does not say which.
	ValidFor uint32
}

// Message is a header and, unless the datagram is header-only, a ticket.
type Message struct {
	Header
	Ticket    Ticket
	HasTicket bool
}

// Errors of Decode.
var (
	ErrShort   = errors.New("booth: datagram shorter than its header")
	ErrMagic   = errors.New("booth: bad magic")
	ErrVersion = errors.New("booth: unsupported protocol version")
	ErrLength  = errors.New("booth: length field differs from the datagram")
	ErrAuth    = errors.New("booth: authentication failed")
	ErrName    = errors.New("booth: bad ticket name")
)

// Encode packs m; with a key, authenticated (the auth option set, the
// HMAC-SHA1 trailer appended).
func Encode(m Message, key []byte) []byte {
	n := HeaderSize
	if m.HasTicket {
		n += TicketSize
	}
	opts := m.Opts &^ OptAuth
	if key != nil {
		n += TrailerSize
		opts |= OptAuth
	}
	b := make([]byte, n)
	be := binary.BigEndian
	be.PutUint32(b[0:], opts)
	be.PutUint32(b[4:], m.Secs)
	be.PutUint32(b[8:], m.Usecs)
	be.PutUint32(b[12:], magic)
	be.PutUint32(b[16:], version)
	be.PutUint32(b[20:], m.From)
	be.PutUint32(b[24:], uint32(n))
	be.PutUint32(b[28:], uint32(m.Cmd))
	be.PutUint32(b[32:], uint32(m.Request))
	be.PutUint32(b[36:], m.Options)
	be.PutUint32(b[40:], uint32(m.Reason))
	be.PutUint32(b[44:], uint32(m.Result))
	if m.HasTicket {
		t := b[HeaderSize:]
		copy(t[:boothconf.NameSize], m.Ticket.Name)
		be.PutUint32(t[64:], m.Ticket.Leader)
		be.PutUint32(t[68:], m.Ticket.Term)
		be.PutUint32(t[72:], m.Ticket.ValidFor)
	}
	if key != nil {
		seal(b, key)
	}
	return b
}

// Decode reads a datagram. With a key, it must be authenticated and its
// HMAC must verify; without one, an authenticated datagram is refused too
// (the two members' authfile settings differ).
func Decode(b []byte, key []byte) (Message, error) {
	var m Message
	if len(b) < HeaderSize {
		return m, ErrShort
	}
	be := binary.BigEndian
	if be.Uint32(b[12:]) != magic {
		return m, ErrMagic
	}
	if v := be.Uint32(b[16:]); v != version {
		return m, fmt.Errorf("%w %#x", ErrVersion, v)
	}
	if int(be.Uint32(b[24:])) != len(b) {
		return m, fmt.Errorf("%w: %d, received %d", ErrLength, be.Uint32(b[24:]), len(b))
	}
	m.Opts = be.Uint32(b[0:])
	m.Secs, m.Usecs = be.Uint32(b[4:]), be.Uint32(b[8:])
	m.From = be.Uint32(b[20:])
	m.Cmd, m.Request = Code(be.Uint32(b[28:])), Code(be.Uint32(b[32:]))
	m.Options = be.Uint32(b[36:])
	m.Reason, m.Result = Code(be.Uint32(b[40:])), Code(be.Uint32(b[44:]))
	body := b[HeaderSize:]
	switch {
	case key != nil && m.Opts&OptAuth == 0:
		return m, fmt.Errorf("%w: not authenticated", ErrAuth)
	case key == nil && m.Opts&OptAuth != 0:
		return m, fmt.Errorf("%w: authenticated, but this member has no authfile", ErrAuth)
	case key != nil:
		if len(body) < TrailerSize {
			return m, ErrShort
		}
		if !sealed(b, key) {
			return m, ErrAuth
		}
		body = body[:len(body)-TrailerSize]
	}
	switch len(body) {
	case 0:
		return m, nil
	case TicketSize:
	default:
		return m, fmt.Errorf("%w: a body of %d bytes", ErrShort, len(body))
	}
	name, err := decodeName(body[:boothconf.NameSize])
	if err != nil {
		return m, err
	}
	m.HasTicket = true
	m.Ticket = Ticket{Name: name, Leader: be.Uint32(body[64:]), Term: be.Uint32(body[68:]), ValidFor: be.Uint32(body[72:])}
	return m, nil
}

// decodeName reads the NUL-padded name: letters, digits, '-' and '/' (as
// booth.conf allows), or empty (messages about no ticket).
func decodeName(b []byte) (string, error) {
	n := strings.IndexByte(string(b), 0)
	if n < 0 {
		return "", fmt.Errorf("%w: not NUL-terminated", ErrName)
	}
	name := string(b[:n])
	if !boothconf.ValidName(name) && name != "" {
		return "", fmt.Errorf("%w %q", ErrName, name)
	}
	return name, nil
}

// seal writes the trailer at the end of b: the hash id and the HMAC of
// everything before it.
func seal(b, key []byte) {
	tr := b[len(b)-TrailerSize:]
	binary.BigEndian.PutUint32(tr, hashID)
	copy(tr[4:], mac(key, b[:len(b)-TrailerSize]))
}

// sealed says b's trailer is the hash id and the HMAC of what precedes it.
func sealed(b, key []byte) bool {
	tr := b[len(b)-TrailerSize:]
	return binary.BigEndian.Uint32(tr) == hashID && hmac.Equal(tr[4:4+sha1.Size], mac(key, b[:len(b)-TrailerSize]))
}

func mac(key, data []byte) []byte {
	h := hmac.New(sha1.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// EncodeText packs a header-only message followed by text, as Booth
// answers list and peers: the length field counts the text, the HMAC
// covers the header only.
func EncodeText(m Message, key []byte, text string) []byte {
	m.HasTicket = false
	b := Encode(m, key)
	binary.BigEndian.PutUint32(b[24:], uint32(len(b)+len(text)))
	if key != nil {
		seal(b, key)
	}
	return append(b, text...)
}

// Geostore (booth attr) opcodes: a client's request to one site, over TCP.
var (
	CmdAttrSet  = fourCC("ASet")
	CmdAttrGet  = fourCC("AGet")
	CmdAttrDel  = fourCC("ADel")
	CmdAttrList = fourCC("ALst")
	// ResultNoAttr: no such attribute.
	ResultNoAttr = fourCC("NAtr")
)

// Sizes of an attribute message's body: the ticket, the attribute's name
// and its value, each NUL-padded (Booth's struct attr_msg).
const (
	attrNameSize  = 64
	attrValueSize = 128
	AttrSize      = boothconf.NameSize + attrNameSize + attrValueSize
)

// AttrRequest is a geostore request: the header (with OptAttr) and the
// ticket, attribute and value it names.
type AttrRequest struct {
	Header
	Ticket, Name, Value string
}

// EncodeAttr packs an attribute request (for tests and the client side).
func EncodeAttr(r AttrRequest, key []byte) []byte {
	n := HeaderSize + AttrSize
	if key != nil {
		n += TrailerSize
	}
	head := Encode(Message{Header: r.Header}, nil)
	b := make([]byte, n)
	copy(b, head)
	be := binary.BigEndian
	opts := r.Opts &^ OptAuth
	if key != nil {
		opts |= OptAuth
	}
	be.PutUint32(b[0:], opts)
	be.PutUint32(b[24:], uint32(n))
	body := b[HeaderSize:]
	copy(body[:boothconf.NameSize-1], r.Ticket)
	copy(body[boothconf.NameSize:boothconf.NameSize+attrNameSize-1], r.Name)
	copy(body[boothconf.NameSize+attrNameSize:AttrSize-1], r.Value)
	if key != nil {
		seal(b, key)
	}
	return b
}

// DecodeAttr reads an attribute request, checked as Decode checks a
// datagram (magic, version, length, authentication).
func DecodeAttr(b []byte, key []byte) (AttrRequest, error) {
	var r AttrRequest
	if len(b) < HeaderSize {
		return r, ErrShort
	}
	want := HeaderSize + AttrSize
	if key != nil {
		want += TrailerSize
	}
	if len(b) != want {
		return r, fmt.Errorf("%w: an attribute message of %d bytes, want %d", ErrLength, len(b), want)
	}
	// The header and authentication as a header-only message would be.
	head := make([]byte, 0, HeaderSize+TrailerSize)
	head = append(head, b[:HeaderSize]...)
	binary.BigEndian.PutUint32(head[24:], uint32(HeaderSize))
	if key != nil {
		if b[3]&OptAuth == 0 || !sealed(b, key) {
			return r, ErrAuth
		}
		// Authenticated: the header is read as an unauthenticated one.
		head[3] &^= OptAuth
	}
	m, err := Decode(head, nil)
	if err != nil {
		return r, err
	}
	r.Header = m.Header
	body := b[HeaderSize : HeaderSize+AttrSize]
	var fields [3]string
	for i, f := range [][]byte{body[:boothconf.NameSize], body[boothconf.NameSize : boothconf.NameSize+attrNameSize], body[boothconf.NameSize+attrNameSize:]} {
		n := strings.IndexByte(string(f), 0)
		if n < 0 {
			return r, fmt.Errorf("%w: an attribute field not NUL-terminated", ErrName)
		}
		fields[i] = string(f[:n])
	}
	r.Ticket, r.Name, r.Value = fields[0], fields[1], fields[2]
	if !boothconf.ValidName(r.Ticket) {
		return r, fmt.Errorf("%w %q", ErrName, r.Ticket)
	}
	return r, nil
}
