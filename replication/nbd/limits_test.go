package nbd

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// gatedBackend holds every read until released, and records the most
// read data held at once.
type gatedBackend struct {
	memBackend
	gate     chan struct{}
	mu       sync.Mutex
	held     int64
	mostHeld int64
}

func (g *gatedBackend) ReadAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	g.held += int64(len(p))
	g.mostHeld = max(g.mostHeld, g.held)
	g.mu.Unlock()
	<-g.gate
	g.mu.Lock()
	g.held -= int64(len(p))
	g.mu.Unlock()
	return 0, nil
}

func (g *gatedBackend) most() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mostHeld
}

func startWith(t *testing.T, be Backend, o Options) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Export, o.Backend = "data", be
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := Serve(ln, o)
	t.Cleanup(func() { s.Close() })
	return s
}

func (cl *client) sendRead(cookie uint64, off uint64, n uint32) {
	var h [28]byte
	binary.BigEndian.PutUint32(h[:], requestMagic)
	binary.BigEndian.PutUint16(h[6:], cmdRead)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], n)
	if _, err := cl.c.Write(h[:]); err != nil {
		cl.t.Fatal(err)
	}
}

func (s *Server) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Issue 17, F6: one client held up to ~512 MiB (16 reads of 32 MiB in
// flight). Now a connection holds at most MaxConnMemory of request and
// reply data; the others wait.
func TestConnectionMemoryIsBounded(t *testing.T) {
	be := &gatedBackend{memBackend: memBackend{data: make([]byte, 64<<20)}, gate: make(chan struct{})}
	s := startWith(t, be, Options{MaxConnMemory: MaxRequest})
	cl := dial(t, s)
	cl.c.SetDeadline(time.Now().Add(30 * time.Second))
	if r := cl.option(optGo, goRequest("data")); r[0].typ != repInfo {
		t.Fatalf("go: %+v", r)
	}
	for i := 0; i < 8; i++ {
		cl.sendRead(uint64(i), 0, MaxRequest)
	}
	// Release the reads one at a time, reading each reply.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 8; i++ {
			var h [16]byte
			if _, err := io.ReadFull(cl.c, h[:]); err != nil {
				done <- err
				return
			}
			if _, err := io.CopyN(io.Discard, cl.c, MaxRequest); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 8; i++ {
		select {
		case be.gate <- struct{}{}:
		case err := <-done:
			t.Fatalf("replies ended after %d reads: %v", i, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("read %d never reached the backend", i)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := be.most(); m > MaxRequest {
		t.Fatalf("the connection held %d MiB of reads at once, bound %d MiB", m>>20, MaxRequest>>20)
	}
}

// A client that stops reading its replies is dropped after the timeout,
// and what it held is freed.
func TestClientThatReadsNoReplyIsDropped(t *testing.T) {
	s := startWith(t, &memBackend{data: make([]byte, 64<<20)}, Options{Timeout: 300 * time.Millisecond})
	cl := dial(t, s)
	if r := cl.option(optGo, goRequest("data")); r[0].typ != repInfo {
		t.Fatalf("go: %+v", r)
	}
	for i := 0; i < 4; i++ {
		cl.sendRead(uint64(i), 0, MaxRequest)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := s.open(); n != 0 {
			return errors.New("the connection that reads nothing is still served")
		}
		return nil
	})
}

// A connection that never finishes its handshake is closed after the
// timeout; beyond MaxConns a connection is closed at accept and counted.
func TestHandshakeTimeoutAndConnectionCap(t *testing.T) {
	var refused atomic.Int64
	s := startWith(t, &memBackend{data: make([]byte, 1<<20)}, Options{MaxConns: 2, Timeout: 300 * time.Millisecond,
		Refused: func() { refused.Add(1) }})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		if i < 2 {
			testenv.Eventually(t, 5*time.Second, func() error {
				if s.open() != i+1 {
					return errors.New("not served yet")
				}
				return nil
			})
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if refused.Load() != 1 {
			return errors.New("the third connection was not refused")
		}
		return nil
	})
	// The two silent ones are closed after the handshake timeout.
	for i, c := range conns[:2] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("connection %d: %v (want the server to close it)", i, err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := s.open(); n != 0 {
			return errors.New("silent connections still served")
		}
		return nil
	})
}
