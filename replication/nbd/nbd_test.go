package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// memBackend is an in-memory device.
type memBackend struct {
	mu      sync.Mutex
	data    []byte
	flushes int
}

func (m *memBackend) Size() int64 { return int64(len(m.data)) }
func (m *memBackend) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}
func (m *memBackend) WriteAt(p []byte, off int64, fua bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:], p)
	return nil
}
func (m *memBackend) Flush() error {
	m.mu.Lock()
	m.flushes++
	m.mu.Unlock()
	return nil
}
func (m *memBackend) Trim(off, n int64) error { return m.WriteZeroes(off, n, false) }
func (m *memBackend) WriteZeroes(off, n int64, fua bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:off+n], make([]byte, n))
	return nil
}

func start(t testing.TB) (*Server, *memBackend) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &memBackend{data: make([]byte, 1<<20)}
	s := Serve(ln, Options{Export: "data", Backend: be})
	t.Cleanup(func() { s.Close() })
	return s, be
}

// client speaks just enough NBD for the tests.
type client struct {
	t testing.TB
	c net.Conn
}

func dial(t testing.TB, s *Server) *client {
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	var hs [18]byte
	io.ReadFull(c, hs[:])
	if binary.BigEndian.Uint64(hs[:]) != nbdMagic || binary.BigEndian.Uint64(hs[8:]) != optMagic {
		t.Fatalf("bad greeting %x", hs)
	}
	binary.Write(c, binary.BigEndian, uint32(flagFixedNewstyle|flagNoZeroes))
	return &client{t: t, c: c}
}

func (cl *client) option(opt uint32, data []byte) []struct {
	typ  uint32
	data []byte
} {
	var h [16]byte
	binary.BigEndian.PutUint64(h[:], optMagic)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], uint32(len(data)))
	cl.c.Write(append(h[:], data...))
	var out []struct {
		typ  uint32
		data []byte
	}
	for {
		var r [20]byte
		if _, err := io.ReadFull(cl.c, r[:]); err != nil {
			cl.t.Fatal(err)
		}
		typ := binary.BigEndian.Uint32(r[12:])
		d := make([]byte, binary.BigEndian.Uint32(r[16:]))
		io.ReadFull(cl.c, d)
		out = append(out, struct {
			typ  uint32
			data []byte
		}{typ, d})
		if typ == repAck || typ&(1<<31) != 0 {
			return out
		}
	}
}

func goRequest(name string) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

func (cl *client) request(typ, flags uint16, cookie uint64, off uint64, n uint32, payload []byte) (uint32, []byte) {
	var h [28]byte
	binary.BigEndian.PutUint32(h[:], requestMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], n)
	cl.c.Write(append(h[:], payload...))
	var r [16]byte
	if _, err := io.ReadFull(cl.c, r[:]); err != nil {
		cl.t.Fatal(err)
	}
	if binary.BigEndian.Uint32(r[:]) != replyMagic || binary.BigEndian.Uint64(r[8:]) != cookie {
		cl.t.Fatalf("bad reply %x", r)
	}
	code := binary.BigEndian.Uint32(r[4:])
	var data []byte
	if typ == cmdRead && code == 0 {
		data = make([]byte, n)
		io.ReadFull(cl.c, data)
	}
	return code, data
}

func TestHaggleAndTransmit(t *testing.T) {
	s, be := start(t)
	cl := dial(t, s)
	if r := cl.option(99, []byte("x")); r[0].typ != repErrUnsup {
		t.Fatalf("unknown option: %+v", r)
	}
	if r := cl.option(optInfo, goRequest("nope")); r[0].typ != repErrUnknown {
		t.Fatalf("unknown export: %+v", r)
	}
	if r := cl.option(optList, nil); r[0].typ != repServer || !bytes.Contains(r[0].data, []byte("data")) {
		t.Fatalf("list: %+v", r)
	}
	r := cl.option(optGo, goRequest("data"))
	if r[0].typ != repInfo || binary.BigEndian.Uint64(r[0].data[2:]) != 1<<20 {
		t.Fatalf("go: %+v", r)
	}
	flags := binary.BigEndian.Uint16(r[0].data[10:])
	if flags&(tfSendFlush|tfSendFUA|tfSendTrim|tfSendWriteZeroes) != tfSendFlush|tfSendFUA|tfSendTrim|tfSendWriteZeroes {
		t.Fatalf("transmission flags %#x", flags)
	}
	data := bytes.Repeat([]byte{7}, 4096)
	if code, _ := cl.request(cmdWrite, cmdFlagFUA, 1, 8192, 4096, data); code != 0 {
		t.Fatalf("write: %d", code)
	}
	if code, got := cl.request(cmdRead, 0, 2, 8192, 4096, nil); code != 0 || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d", code)
	}
	if code, _ := cl.request(cmdFlush, 0, 3, 0, 0, nil); code != 0 || be.flushes != 1 {
		t.Fatalf("flush: %d (%d flushes)", code, be.flushes)
	}
	if code, _ := cl.request(cmdRead, 0, 4, 1<<20-10, 4096, nil); code != errInval {
		t.Fatalf("read past the end: %d", code)
	}
	if code, _ := cl.request(cmdWrite, 0, 5, 1<<20-10, 16, make([]byte, 16)); code != errNoSpc {
		t.Fatalf("write past the end: %d", code)
	}
	if code, _ := cl.request(77, 0, 6, 0, 100, nil); code != errInval {
		t.Fatalf("unknown command: %d", code)
	}
	// The stream is still in step after the errors.
	if code, _ := cl.request(cmdTrim, 0, 7, 8192, 4096, nil); code != 0 {
		t.Fatalf("trim: %d", code)
	}
	if code, got := cl.request(cmdRead, 0, 8, 8192, 4096, nil); code != 0 || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("read after trim: %d", code)
	}
}

func TestLyingClientIsDisconnectedNotBelieved(t *testing.T) {
	s, _ := start(t)
	cl := dial(t, s)
	cl.option(optGo, goRequest(""))
	// A write announcing 1 GiB: the server must not read (or allocate) it.
	var h [28]byte
	binary.BigEndian.PutUint32(h[:], requestMagic)
	binary.BigEndian.PutUint16(h[6:], cmdWrite)
	binary.BigEndian.PutUint32(h[24:], 1<<30)
	cl.c.Write(h[:])
	var b [1]byte
	if _, err := cl.c.Read(b[:]); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed after an oversized write: %v", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	var h [28]byte
	binary.BigEndian.PutUint32(h[:], requestMagic)
	f.Add(h[:])
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err == nil && req.Type == cmdWrite && req.Length > MaxRequest {
			t.Fatalf("accepted a write of %d bytes", req.Length)
		}
	})
}

// FuzzSession feeds a whole client byte stream to a server: whatever it
// sends, the server answers or hangs up, and never panics.
func FuzzSession(f *testing.F) {
	var seed []byte
	seed = binary.BigEndian.AppendUint32(seed, flagFixedNewstyle|flagNoZeroes)
	seed = binary.BigEndian.AppendUint64(seed, optMagic)
	seed = binary.BigEndian.AppendUint32(seed, optGo)
	g := goRequest("data")
	seed = binary.BigEndian.AppendUint32(seed, uint32(len(g)))
	seed = append(seed, g...)
	var h [28]byte
	binary.BigEndian.PutUint32(h[:], requestMagic)
	binary.BigEndian.PutUint32(h[24:], 512)
	seed = append(seed, h[:]...)
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		be := &memBackend{data: make([]byte, 64<<10)}
		s := &Server{o: Options{Export: "data", Backend: be, MaxInFlight: 4}}
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, b)
		}()
		go func() {
			b.Write(in)
			b.Close()
		}()
		a.SetDeadline(time.Now().Add(2 * time.Second))
		s.serve(a)
		a.Close()
		<-done
	})
}

// failingListener fails its first n accepts as a full descriptor table
// does (EMFILE), then accepts.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// waitLeft waits until at most n failures are left to return.
func (l *failingListener) waitLeft(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		left := l.fails
		l.mu.Unlock()
		if left <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the accept loop stopped: %d errors left to return, want at most %d", left, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Issue 17, F4: the accept loop returned on its first error and the
// export never accepted again.
func TestAcceptSurvivesErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, fails: 5}
	var logs bytes.Buffer
	var logMu sync.Mutex
	s := Serve(ln, Options{Export: "data", Backend: &memBackend{data: make([]byte, 1<<20)},
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))})
	t.Cleanup(func() { s.Close() })
	ln.waitLeft(t, 0)
	cl := dial(t, s)
	if r := cl.option(optList, nil); r[0].typ != repServer {
		t.Fatalf("list after the errors: %+v", r)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logs.String(), "NBD accept failed"); n != 5 {
		t.Fatalf("%d log lines for 5 accept errors:\n%s", n, logs.String())
	}
}

// Close ends the loop while it waits out a backoff.
func TestCloseDuringAcceptBackoff(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, fails: 1 << 30}
	s := Serve(ln, Options{Export: "data", Backend: &memBackend{data: make([]byte, 1<<20)},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln.waitLeft(t, 1<<30-8)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung while the accept loop backed off")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
