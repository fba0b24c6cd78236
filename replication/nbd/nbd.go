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

// Error codes for MapError.
const (
	EPERM     = errPerm
	EIO       = errIO
	EINVAL    = errInval
	ENOSPC    = errNoSpc
	ESHUTDOWN = errShutdown
)
