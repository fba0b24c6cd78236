package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// The transmission phase: requests read, bounded by a per-connection
// budget, carried out on the backend, answered with simple replies.

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
