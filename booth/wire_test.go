package booth

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/geobooth/geobooth/booth/boothconf"
)

var testKey = []byte("0123456789abcdef")

func TestSiteIDIsBoothsCRC32(t *testing.T) {
	// Measured with Debian's boothd (../shared/research/booth-wire.md).
	if got := boothconf.SiteID(netip.MustParseAddr("10.9.0.1")); got != 0x362F3461 {
		t.Fatalf("site id of 10.9.0.1 = %#x, want 0x362f3461", got)
	}
	if boothconf.SiteID(netip.MustParseAddr("::ffff:10.9.0.1")) != boothconf.SiteID(netip.MustParseAddr("10.9.0.1")) {
		t.Fatal("an IPv4-mapped address must count as IPv4 (4 bytes)")
	}
}

func TestMessagesHaveBoothsSizes(t *testing.T) {
	hb := Message{Header: Header{From: 1, Cmd: CmdHeartbeat}, HasTicket: true, Ticket: Ticket{Name: "web", Leader: 1, Term: 3, ValidFor: 9}}
	for _, c := range []struct {
		m    Message
		key  []byte
		size int
	}{
		{hb, nil, 124}, {hb, testKey, 152},
		{Message{Header: Header{Cmd: CmdResult, Result: ResultAuth}}, nil, 48},
		{Message{Header: Header{Cmd: CmdResult, Result: ResultAuth}}, testKey, 76},
	} {
		if b := Encode(c.m, c.key); len(b) != c.size {
			t.Errorf("%v (auth %v): %d bytes, want %d", c.m.Cmd, c.key != nil, len(b), c.size)
		}
	}
}

func TestRoundTripWithAndWithoutAuth(t *testing.T) {
	m := Message{Header: Header{Secs: 1700000000, Usecs: 123456, From: 0x362F3461, Cmd: CmdAck, Request: CmdHeartbeat,
		Reason: ReasonLost, Result: ResultValid}, HasTicket: true,
		Ticket: Ticket{Name: "web-1/a", Leader: NoLeader, Term: 7, ValidFor: 599}}
	for _, key := range [][]byte{nil, testKey} {
		b := Encode(m, key)
		got, err := Decode(b, key)
		if err != nil {
			t.Fatalf("auth %v: %v", key != nil, err)
		}
		want := m
		if key != nil {
			want.Opts |= OptAuth
		}
		if got != want {
			t.Fatalf("auth %v: got %+v, want %+v", key != nil, got, want)
		}
		if !bytes.Equal(Encode(got, key), b) {
			t.Fatalf("auth %v: re-encoding differs", key != nil)
		}
	}
}

func TestDecodeRefusesWhatBoothRefuses(t *testing.T) {
	m := Message{Header: Header{From: 1, Cmd: CmdHeartbeat}, HasTicket: true, Ticket: Ticket{Name: "web"}}
	good := Encode(m, testKey)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	for name, c := range map[string]struct {
		b    []byte
		key  []byte
		want error
	}{
		"short":                    {good[:40], testKey, ErrShort},
		"magic":                    {flip(12), testKey, ErrMagic},
		"version":                  {flip(19), testKey, ErrVersion},
		"length":                   {append(bytes.Clone(good), 0), testKey, ErrLength},
		"tampered body":            {flip(70), testKey, ErrAuth},
		"tampered MAC":             {flip(len(good) - 10), testKey, ErrAuth},
		"wrong key":                {good, []byte("another key 0123"), ErrAuth},
		"unauthenticated, key set": {Encode(m, nil), testKey, ErrAuth},
		"authenticated, no key":    {good, nil, ErrAuth},
	} {
		if _, err := Decode(c.b, c.key); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	bad := Encode(Message{Header: Header{Cmd: CmdHeartbeat}, HasTicket: true, Ticket: Ticket{Name: "we b"}}, nil)
	if _, err := Decode(bad, nil); !errors.Is(err, ErrName) {
		t.Errorf("a name with a space: %v, want %v", err, ErrName)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Message{Header: Header{From: 1, Cmd: CmdHeartbeat}, HasTicket: true, Ticket: Ticket{Name: "web", Term: 2}}, nil))
	f.Add(Encode(Message{Header: Header{Cmd: CmdResult, Result: ResultAuth}}, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b, nil)
		if err != nil {
			return
		}
		// What decodes re-encodes to a datagram that decodes the same (the
		// bytes after a name's NUL are ignored, as Booth does, and are
		// zero when sent).
		again, err := Decode(Encode(m, nil), nil)
		if err != nil || again != m {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", m, again, err)
		}
	})
}

// An attribute request round-trips, with and without a key; a flipped
// bit or a wrong length is refused.
func TestAttrRequestsRoundTrip(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("a booth key")} {
		r := AttrRequest{Header: Header{Cmd: CmdAttrSet, From: 7}, Ticket: "web", Name: "sr_status", Value: "ACTIVE"}
		b := EncodeAttr(r, key)
		if want := HeaderSize + AttrSize + map[bool]int{false: 0, true: TrailerSize}[key != nil]; len(b) != want {
			t.Fatalf("%d bytes, want %d", len(b), want)
		}
		got, err := DecodeAttr(b, key)
		if err != nil || got.Ticket != "web" || got.Name != "sr_status" || got.Value != "ACTIVE" || got.Cmd != CmdAttrSet {
			t.Fatalf("key %q: %+v, %v", key, got, err)
		}
		b[HeaderSize+70] ^= 1
		if _, err := DecodeAttr(b, key); key != nil && !errors.Is(err, ErrAuth) {
			t.Fatalf("a flipped bit: %v", err)
		}
		if _, err := DecodeAttr(b[:len(b)-1], key); err == nil {
			t.Fatal("a short message decoded")
		}
	}
}
