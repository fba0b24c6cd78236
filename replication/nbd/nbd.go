// Package nbd is a Network Block Device server (fixed newstyle handshake,
// simple replies) for geobooth's replicated volumes: option haggling with
// NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_ABORT and
// NBD_OPT_EXPORT_NAME; commands READ, WRITE (with FUA), FLUSH, TRIM,
// WRITE_ZEROES and DISC. Requests of one connection run concurrently, up
// to a bound; a FLUSH makes every write answered before it durable.
//
// A client that lies (bad magic, a length beyond the export or the limit,
// an unknown command) gets an error reply or, when the stream can no
// longer be trusted, a closed connection; never a panic.
package nbd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/geobooth/geobooth/kit/netcap"
)

// Backend is the exported device.
type Backend interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64, fua bool) error
	Flush() error
	Trim(off, n int64) error
	WriteZeroes(off, n int64, fua bool) error
}

// Protocol numbers (NetworkBlockDevice/nbd doc/proto.md).
const (
	nbdMagic      = 0x4e42444d41474943
	optMagic      = 0x49484156454f5054
	replyOptMagic = 0x3e889045565a9
	requestMagic  = 0x25609513
	replyMagic    = 0x67446698

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName = 1
	optAbort      = 2
	optList       = 3
	optStartTLS   = 5
	optInfo       = 6
	optGo         = 7

	repAck        = 1
	repServer     = 2
	repInfo       = 3
	repErrUnsup   = 1<<31 + 1
	repErrInvalid = 1<<31 + 3
	repErrUnknown = 1<<31 + 6
	repErrTLSReqd = 1<<31 + 5

	infoExport    = 0
	infoBlockSize = 3

	tfHasFlags        = 1 << 0
	tfReadOnly        = 1 << 1
	tfSendFlush       = 1 << 2
	tfSendFUA         = 1 << 3
	tfSendTrim        = 1 << 5
	tfSendWriteZeroes = 1 << 6

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6

	cmdFlagFUA = 1 << 0

	errPerm     = 1
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errShutdown = 108

	// MaxRequest bounds the length of one request.
	MaxRequest = 32 << 20
	// maxOption bounds an option's data.
	maxOption = 64 << 10
)

// Options configure a server.
type Options struct {
	// Export is the export's name; it is also served as the default
	// (empty) name.
	Export   string
	Backend  Backend
	ReadOnly bool
	// MaxInFlight bounds the requests one connection runs at once.
	MaxInFlight int
	Log         *slog.Logger
	// MapError turns a backend error into an NBD error code (nil: EIO,
	// with ENOSPC and EINVAL recognised).
	MapError func(error) uint32
	// MaxConns bounds the connections served at once; more are closed at
	// accept (0: DefaultMaxConns).
	MaxConns int
	// MaxConnMemory bounds the request and reply data one connection holds
	// at once (0: DefaultMaxConnMemory); a client that asks for more waits
	// for its earlier requests to be answered.
	MaxConnMemory int64
	// Timeout bounds the handshake, the reading of one request's data once
	// its header came, and the writing of one reply (0: DefaultTimeout).
	// A connection may stay idle between requests as long as it likes, as
	// a mounted file system's does.
	Timeout time.Duration
	// Refused is called for each connection closed because MaxConns were
	// open.
	Refused func()
	// TLS, when set, offers NBD_OPT_STARTTLS with this configuration;
	// with RequireTLS a client must start TLS before anything else (it is
	// told NBD_REP_ERR_TLS_REQD), as qemu-nbd --tls-creds does.
	TLS        *tls.Config
	RequireTLS bool
	// AllowClient, when set, decides from the client's verified
	// certificate (nil when it showed none) whether it may go on.
	AllowClient func(cert *x509.Certificate) bool
}

// Defaults of the bounds in Options.
const (
	DefaultMaxConns      = 8
	DefaultMaxConnMemory = 2*MaxRequest + 8<<20
	DefaultTimeout       = 30 * time.Second
)

// Server serves one export until closed.
type Server struct {
	o     Options
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
	done  bool
	quit  chan struct{}
}

// Listen starts serving on addr.
func Listen(addr string, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("NBD listen on %s: %w", addr, err)
	}
	return Serve(ln, o), nil
}

// Serve serves on a listener.
func Serve(ln net.Listener, o Options) *Server {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 16
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnMemory < MaxRequest {
		o.MaxConnMemory = DefaultMaxConnMemory
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	refused := func() {
		o.Log.Warn("NBD connection refused: too many open", "export", o.Export, "max", o.MaxConns)
		if o.Refused != nil {
			o.Refused()
		}
	}
	s := &Server{o: o, ln: netcap.New(ln, o.MaxConns, refused), conns: map[net.Conn]bool{}, quit: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, drops every connection, and waits for their
// requests to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.done {
		close(s.quit)
	}
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Accept errors other than a closed listener (out of descriptors, a
// connection reset before it was accepted) are retried, with a backoff
// from acceptRetryMin to acceptRetryMax so that a full descriptor table
// does not spin the loop.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

func (s *Server) accept() {
	defer s.wg.Done()
	var wait time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			wait = min(max(2*wait, acceptRetryMin), acceptRetryMax)
			s.o.Log.Warn("NBD accept failed, retrying", "export", s.o.Export, "err", err, "retry_in", wait)
			select {
			case <-s.quit:
				return
			case <-time.After(wait):
			}
			continue
		}
		wait = 0
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			if err := s.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.o.Log.Debug("NBD connection ended", "client", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (s *Server) flags() uint16 {
	f := uint16(tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes)
	if s.o.ReadOnly {
		f |= tfReadOnly
	}
	return f
}

func (s *Server) serve(c net.Conn) error {
	c.SetDeadline(time.Now().Add(s.o.Timeout))
	r := bufio.NewReaderSize(c, 256<<10)
	w := bufio.NewWriterSize(c, 256<<10)
	var hs [18]byte
	binary.BigEndian.PutUint64(hs[0:], nbdMagic)
	binary.BigEndian.PutUint64(hs[8:], optMagic)
	binary.BigEndian.PutUint16(hs[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := w.Write(hs[:]); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(r, cf[:]); err != nil {
		return err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&flagFixedNewstyle == 0 {
		return errors.New("client does not speak fixed newstyle")
	}
	if clientFlags&^(flagFixedNewstyle|flagNoZeroes) != 0 {
		return fmt.Errorf("unknown client flags %#x", clientFlags)
	}
	noZeroes := clientFlags&flagNoZeroes != 0
	hg := &haggling{c: c, r: r, w: w}
	ok, err := s.haggle(hg, noZeroes)
	if err != nil || !ok {
		return err
	}
	return s.transmit(hg.c, hg.r, hg.w)
}

// haggling is a connection during option haggling: STARTTLS replaces its
// stream.
type haggling struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	tls bool
}

// startTLS runs the server side of TLS on the connection; the client sent
// nothing after its STARTTLS (it waits for the reply), so nothing is lost.
func (s *Server) startTLS(hs *haggling) error {
	if hs.r.Buffered() > 0 {
		return errors.New("data after NBD_OPT_STARTTLS before the reply")
	}
	tc := tls.Server(hs.c, s.o.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	if s.o.AllowClient != nil {
		var cert *x509.Certificate
		if cs := tc.ConnectionState(); len(cs.VerifiedChains) > 0 {
			cert = cs.VerifiedChains[0][0]
		}
		if !s.o.AllowClient(cert) {
			return errors.New("TLS: the client's certificate is not allowed")
		}
	}
	hs.c, hs.tls = tc, true
	hs.r.Reset(tc)
	hs.w.Reset(tc)
	return nil
}

// haggle runs option haggling; ok means transmission starts.
func (s *Server) haggle(hs *haggling, noZeroes bool) (bool, error) {
	r, w := hs.r, hs.w
	for {
		var h [16]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return false, err
		}
		if binary.BigEndian.Uint64(h[:]) != optMagic {
			return false, errors.New("bad option magic")
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if n > maxOption {
			return false, fmt.Errorf("option %d with %d bytes of data", opt, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return false, err
		}
		reply := func(typ uint32, payload []byte) error {
			var b [20]byte
			binary.BigEndian.PutUint64(b[:], replyOptMagic)
			binary.BigEndian.PutUint32(b[8:], opt)
			binary.BigEndian.PutUint32(b[12:], typ)
			binary.BigEndian.PutUint32(b[16:], uint32(len(payload)))
			w.Write(b[:])
			_, err := w.Write(payload)
			return err
		}
		if s.o.RequireTLS && !hs.tls {
			switch opt {
			case optStartTLS, optAbort:
			case optExportName:
				return false, errors.New("NBD_OPT_EXPORT_NAME before TLS, which this export requires")
			default:
				reply(repErrTLSReqd, nil)
				if err := w.Flush(); err != nil {
					return false, err
				}
				continue
			}
		}
		switch opt {
		case optStartTLS:
			switch {
			case s.o.TLS == nil:
				reply(repErrUnsup, nil)
			case hs.tls || n != 0:
				reply(repErrInvalid, nil)
			default:
				reply(repAck, nil)
				if err := w.Flush(); err != nil {
					return false, err
				}
				if err := s.startTLS(hs); err != nil {
					return false, err
				}
				r, w = hs.r, hs.w
				continue
			}
		case optExportName:
			if !s.known(string(data)) {
				return false, fmt.Errorf("unknown export %q", data)
			}
			var b [10]byte
			binary.BigEndian.PutUint64(b[:], uint64(s.o.Backend.Size()))
			binary.BigEndian.PutUint16(b[8:], s.flags())
			w.Write(b[:])
			if !noZeroes {
				w.Write(make([]byte, 124))
			}
			return true, w.Flush()
		case optAbort:
			reply(repAck, nil)
			w.Flush()
			return false, nil
		case optList:
			if n != 0 {
				reply(repErrInvalid, nil)
				break
			}
			var e []byte
			e = binary.BigEndian.AppendUint32(e, uint32(len(s.o.Export)))
			e = append(e, s.o.Export...)
			reply(repServer, e)
			reply(repAck, nil)
		case optInfo, optGo:
			name, ok := parseInfoRequest(data)
			switch {
			case !ok:
				reply(repErrInvalid, nil)
			case !s.known(name):
				reply(repErrUnknown, []byte("no such export"))
			default:
				var e []byte
				e = binary.BigEndian.AppendUint16(e, infoExport)
				e = binary.BigEndian.AppendUint64(e, uint64(s.o.Backend.Size()))
				e = binary.BigEndian.AppendUint16(e, s.flags())
				reply(repInfo, e)
				var bs []byte
				bs = binary.BigEndian.AppendUint16(bs, infoBlockSize)
				bs = binary.BigEndian.AppendUint32(bs, 1)
				bs = binary.BigEndian.AppendUint32(bs, 4096)
				bs = binary.BigEndian.AppendUint32(bs, MaxRequest)
				reply(repInfo, bs)
				reply(repAck, nil)
				if opt == optGo {
					return true, w.Flush()
				}
			}
		default:
			reply(repErrUnsup, nil)
		}
		if err := w.Flush(); err != nil {
			return false, err
		}
	}
}

func (s *Server) known(name string) bool { return name == "" || name == s.o.Export }

// parseInfoRequest reads an NBD_OPT_INFO/GO payload: u32 name length,
// name, u16 count, count u16 info requests (the server sends the export
// and block size information whatever was asked).
func parseInfoRequest(b []byte) (string, bool) {
	if len(b) < 6 {
		return "", false
	}
	nl := binary.BigEndian.Uint32(b)
	if uint64(nl) > uint64(len(b)-6) {
		return "", false
	}
	name := string(b[4 : 4+nl])
	rest := b[4+nl:]
	cnt := int(binary.BigEndian.Uint16(rest))
	return name, len(rest)-2 == 2*cnt
}

// Request is one transmission-phase request.
type Request struct {
	Flags  uint16
	Type   uint16
	Cookie uint64
	Offset uint64
	Length uint32
}

// ErrProtocol: the client broke the protocol; the connection closes.
var ErrProtocol = errors.New("NBD protocol error")

// ParseRequest decodes a 28-byte request header.
func ParseRequest(h []byte) (Request, error) {
	if len(h) != 28 {
		return Request{}, fmt.Errorf("%w: header of %d bytes", ErrProtocol, len(h))
	}
	if binary.BigEndian.Uint32(h) != requestMagic {
		return Request{}, fmt.Errorf("%w: request magic %#x", ErrProtocol, binary.BigEndian.Uint32(h))
	}
	req := Request{Flags: binary.BigEndian.Uint16(h[4:]), Type: binary.BigEndian.Uint16(h[6:]),
		Cookie: binary.BigEndian.Uint64(h[8:]), Offset: binary.BigEndian.Uint64(h[16:]), Length: binary.BigEndian.Uint32(h[24:])}
	if req.Type == cmdWrite && req.Length > MaxRequest {
		// Its payload cannot be skipped safely: drop the connection.
		return req, fmt.Errorf("%w: write of %d bytes", ErrProtocol, req.Length)
	}
	return req, nil
}

// budget is the request and reply data a connection may hold at once.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	left int64
	dead bool
}

func newBudget(n int64) *budget {
	b := &budget{left: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// take waits until n bytes are free; false when the connection ended.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.left < n && !b.dead {
		b.cond.Wait()
	}
	if b.dead {
		return false
	}
	b.left -= n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) end() {
	b.mu.Lock()
	b.dead = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// cost is the data a request holds: its payload or its reply.
func cost(req Request) int64 {
	switch req.Type {
	case cmdRead, cmdWrite:
		return int64(min(req.Length, MaxRequest))
	}
	return 0
}

func (s *Server) transmit(c net.Conn, r *bufio.Reader, w *bufio.Writer) error {
	var wmu sync.Mutex
	var inflight sync.WaitGroup
	sem := make(chan struct{}, s.o.MaxInFlight)
	mem := newBudget(s.o.MaxConnMemory)
	defer inflight.Wait()
	defer mem.end()
	c.SetDeadline(time.Time{})
	send := func(cookie uint64, code uint32, data []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(s.o.Timeout))
		var h [16]byte
		binary.BigEndian.PutUint32(h[:], replyMagic)
		binary.BigEndian.PutUint32(h[4:], code)
		binary.BigEndian.PutUint64(h[8:], cookie)
		w.Write(h[:])
		if code == 0 {
			w.Write(data)
		}
		if err := w.Flush(); err != nil {
			c.Close()
		}
	}
	var hdr [28]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		req, err := ParseRequest(hdr[:])
		if err != nil {
			return err
		}
		if req.Type == cmdDisc {
			inflight.Wait()
			return nil
		}
		n := cost(req)
		if !mem.take(n) {
			return net.ErrClosed
		}
		var payload []byte
		if req.Type == cmdWrite {
			payload = make([]byte, req.Length)
			c.SetReadDeadline(time.Now().Add(s.o.Timeout))
			if _, err := io.ReadFull(r, payload); err != nil {
				mem.give(n)
				return err
			}
			c.SetReadDeadline(time.Time{})
		}
		sem <- struct{}{}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			defer mem.give(n)
			data, code := s.do(req, payload)
			send(req.Cookie, code, data)
		}()
	}
}

// do runs one request and returns the reply data and error code.
func (s *Server) do(req Request, payload []byte) ([]byte, uint32) {
	be := s.o.Backend
	size := uint64(be.Size())
	off, n := req.Offset, uint64(req.Length)
	inRange := off <= size && n <= size-off
	fua := req.Flags&cmdFlagFUA != 0
	switch req.Type {
	case cmdRead:
		if !inRange || n > MaxRequest {
			return nil, errInval
		}
		buf := make([]byte, n)
		if _, err := be.ReadAt(buf, int64(off)); err != nil && !errors.Is(err, io.EOF) {
			return nil, s.code(err)
		}
		return buf, 0
	case cmdWrite:
		if s.o.ReadOnly {
			return nil, errPerm
		}
		if !inRange {
			return nil, errNoSpc
		}
		return nil, s.code(be.WriteAt(payload, int64(off), fua))
	case cmdFlush:
		return nil, s.code(be.Flush())
	case cmdTrim:
		if s.o.ReadOnly {
			return nil, errPerm
		}
		if !inRange {
			return nil, errInval
		}
		return nil, s.code(be.Trim(int64(off), int64(n)))
	case cmdWriteZeroes:
		if s.o.ReadOnly {
			return nil, errPerm
		}
		if !inRange {
			return nil, errNoSpc
		}
		return nil, s.code(be.WriteZeroes(int64(off), int64(n), fua))
	}
	return nil, errInval
}

func (s *Server) code(err error) uint32 {
	if err == nil {
		return 0
	}
	if s.o.MapError != nil {
		return s.o.MapError(err)
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return errNoSpc
	case errors.Is(err, syscall.EINVAL):
		return errInval
	case errors.Is(err, syscall.ENOMEM):
		return errNoMem
	}
	return errIO
}

// Error codes for MapError.
const (
	EPERM     = errPerm
	EIO       = errIO
	EINVAL    = errInval
	ENOSPC    = errNoSpc
	ESHUTDOWN = errShutdown
)
