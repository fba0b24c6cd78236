package booth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// serveClients answers Booth's client (booth list, peers, grant, revoke)
// on TCP: one request per connection, each with a deadline, at most
// maxClients at once.
func (s *Server) serveClients(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("booth: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.client(c)
	}
}

func (s *Server) client(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(clientTimeout))
	req, err := readRequest(c)
	if err != nil {
		s.log.Debug("booth client: bad request", "from", c.RemoteAddr(), "err", err)
		return
	}
	if isAttrCmd(Code(binary.BigEndian.Uint32(req[28:]))) {
		if _, err := c.Write(s.attrRequest(s.ctx, req)); err != nil {
			s.log.Debug("booth client: write", "from", c.RemoteAddr(), "err", err)
		}
		return
	}
	if m, ok := s.siteCommand(req); ok {
		s.siteRequest(s.ctx, c, m)
		return
	}
	if _, err := c.Write(s.answer(req)); err != nil {
		s.log.Debug("booth client: write", "from", c.RemoteAddr(), "err", err)
	}
}

// siteCommand: an authentic grant or revoke at a site, which the site
// answers itself (siteRequest).
func (s *Server) siteCommand(b []byte) (Message, bool) {
	if !s.arb.site {
		return Message{}, false
	}
	m, err := Decode(b, s.key)
	if err != nil || s.key != nil && !s.fresh(nil, m.Header, time.Now()) {
		return Message{}, false
	}
	return m, m.Cmd == CmdGrant || m.Cmd == CmdClientRevoke
}

// isAttrCmd: a geostore request (boothd tells them by their opcode).
func isAttrCmd(c Code) bool {
	return c == CmdAttrSet || c == CmdAttrGet || c == CmdAttrDel || c == CmdAttrList
}

// attrRequest answers a geostore request (set, get, delete, list of a
// ticket's attributes at this site): get and list with the text, the
// others with a result. A set or delete goes into the CIB too, as boothd
// does it (a CIB that fails is logged; the attribute is kept here).
func (s *Server) attrRequest(ctx context.Context, b []byte) []byte {
	r, err := DecodeAttr(b, s.key)
	reply := Message{Header: Header{Cmd: CmdResult}}
	var text string
	switch {
	case errors.Is(err, ErrAuth) || err == nil && s.key != nil && !s.fresh(nil, r.Header, time.Now()):
		reply.Result = ResultAuth
	case err != nil || s.cib == nil:
		reply.Result = ResultInvalid
	default:
		s.mu.Lock()
		switch r.Cmd {
		case CmdAttrSet:
			reply.Result = s.arb.SetAttr(r.Ticket, r.Name, r.Value, time.Now())
		case CmdAttrDel:
			reply.Result = s.arb.DelAttr(r.Ticket, r.Name)
		case CmdAttrGet:
			text, reply.Result = s.arb.GetAttr(r.Ticket, r.Name)
		case CmdAttrList:
			text, reply.Result = s.arb.ListAttrs(r.Ticket)
		default:
			reply.Result = ResultInvalid
		}
		s.mu.Unlock()
	}
	s.met.clients.WithLabelValues(label(r.Cmd), label(reply.Result)).Inc()
	if reply.Result == 0 {
		cctx, cancel := context.WithTimeout(ctx, cibTimeout)
		defer cancel()
		var cerr error
		switch r.Cmd {
		case CmdAttrSet:
			cerr = s.cib.SetAttr(cctx, r.Ticket, r.Name, r.Value)
		case CmdAttrDel:
			cerr = s.cib.DeleteAttr(cctx, r.Ticket, r.Name)
		case CmdAttrGet, CmdAttrList:
			reply.Cmd = r.Cmd
			reply.From = s.arb.self.ID
			s.stamp(&reply.Header)
			return EncodeText(reply, s.key, text)
		}
		if cerr != nil {
			s.log.Error("booth: geostore attribute not written to the CIB", "ticket", r.Ticket, "attribute", r.Name, "err", cerr)
		}
	}
	reply.From = s.arb.self.ID
	s.stamp(&reply.Header)
	return Encode(reply, s.key)
}

// readRequest reads one client message: a header, then the rest its
// length field gives (at most MaxDatagram bytes in all, as Booth).
func readRequest(r io.Reader) ([]byte, error) {
	b := make([]byte, HeaderSize, MaxDatagram)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(b[24:]))
	if n < HeaderSize || n > MaxDatagram {
		return nil, fmt.Errorf("%w: %d", ErrLength, n)
	}
	b = b[:n]
	if _, err := io.ReadFull(r, b[HeaderSize:]); err != nil {
		return nil, err
	}
	return b, nil
}

// answer is the reply to one client request.
func (s *Server) answer(b []byte) []byte {
	m, err := Decode(b, s.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	reply := s.reply(m, err)
	s.met.clients.WithLabelValues(label(m.Cmd), label(Code(binary.BigEndian.Uint32(reply[44:])))).Inc()
	return reply
}

// reply is the answer to a decoded request (err: why it did not decode).
func (s *Server) reply(m Message, err error) []byte {
	reply := Message{Header: Header{From: s.arb.self.ID, Cmd: CmdResult}}
	switch {
	case errors.Is(err, ErrAuth) || err == nil && s.key != nil && !s.fresh(nil, m.Header, time.Now()):
		reply.Result = ResultAuth
	case err != nil:
		reply.Result = ResultInvalid
	case m.Cmd == CmdList:
		reply.Cmd = CmdListReply
		s.stamp(&reply.Header)
		return EncodeText(reply, s.key, s.arb.List(s.now(), time.Now()))
	case m.Cmd == CmdPeers:
		reply.Cmd = CmdListReply
		s.stamp(&reply.Header)
		return EncodeText(reply, s.key, s.peersText())
	case m.Cmd == CmdGrant || m.Cmd == CmdClientRevoke:
		reply = s.arb.Answer(s.now(), m)
	default:
		reply.Result = ResultInvalid
	}
	s.stamp(&reply.Header)
	return Encode(reply, s.key)
}

// peersText is Booth's peers answer: every other member with its
// counters.
func (s *Server) peersText() string {
	var b strings.Builder
	for _, m := range s.cfg.Members {
		p := s.peers[m.ID]
		if p == nil {
			continue
		}
		kind := "site"
		if m.Arbitrator {
			kind = "arbitrator"
		}
		last := time.Unix(0, 0)
		if !p.lastRecv.IsZero() {
			last = p.lastRecv
		}
		fmt.Fprintf(&b, "%-12s %s, last recv: %s\n", kind, m.Address, last.Local().Format(time.DateTime))
		fmt.Fprintf(&b, "\tSent pkts:%d error:%d resends:%d\n", p.sent, p.sentErr, 0)
		fmt.Fprintf(&b, "\tRecv pkts:%d error:%d authfail:%d invalid:%d\n\n", p.recv, p.recvErr, p.authFail, p.invalid)
	}
	return b.String()
}
