package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
)

// stranger connects to a member's replication port and reads its hello.
func stranger(t *testing.T, addr string) (net.Conn, *session) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s := newSession(c)
	if _, err := readHello(s); err != nil {
		t.Fatal(err)
	}
	return c, s
}

// Issue 17, F10: a stranger's failed handshake overwrote the live peer's
// last_error. A connection that does not prove the key says nothing of
// the peer it claims to be.
func TestStrangersFailedHandshakeLeavesThePeersStatusAlone(t *testing.T) {
	p := newPair(t, 1<<20, nil)
	p.open("east")
	west := p.open("west")
	p.waitState("west", InSync)
	_, s := stranger(t, p.addr["west"])
	h := west.hello()
	h.member = "east"
	must(t, s.send(fHello, encodeHello(h)))
	var e enc
	e.bytes(bytes.Repeat([]byte{1}, 32))
	must(t, s.send(fAuth, e.b))
	must(t, s.out.Flush())
	// West closes the stranger's connection once it read the bad proof.
	if _, err := io.Copy(io.Discard, s.conn); err != nil {
		t.Fatalf("west did not close the stranger's connection: %v", err)
	}
	if st := west.Status().Peers[0]; st.LastError != "" || st.State != InSync {
		t.Fatalf("the stranger changed east's status at west: %+v", st)
	}
}

// Before the key is proved, a frame larger than a handshake's is refused
// from its header: nothing of its claimed size is allocated or awaited.
func TestLargeFrameBeforeAuthenticationIsRefusedAtItsHeader(t *testing.T) {
	p := newPair(t, 1<<20, func(c *VolumeConfig) { c.Timeout = confkit.Duration(time.Minute) })
	p.open("west")
	c, _ := stranger(t, p.addr["west"])
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[0:], frameMagic)
	h[4] = byte(fHello)
	binary.BigEndian.PutUint32(h[8:], maxPayload)
	binary.BigEndian.PutUint64(h[12:], 1)
	if _, err := c.Write(h[:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("west waited for the body of a 4 MiB frame from an unauthenticated connection")
	}
}
