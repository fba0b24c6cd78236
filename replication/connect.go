package replication

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Links: the volume accepts its peers' connections (mutual TLS when
// configured) and dials the peers whose names sort after its own, retrying
// with a backoff; either way the link goes on to the handshake.

// acceptLoop serves incoming links until the volume closes; an accept
// error (out of descriptors, say) is logged and retried after a backoff
// from 5 ms to 1 s.
func (v *Volume) acceptLoop() {
	defer v.wg.Done()
	var wait time.Duration
	for {
		conn, err := v.ln.Accept()
		if err != nil {
			if v.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			v.log.Warn("replication accept failed, retrying", "err", err, "retry_in", wait)
			select {
			case <-v.ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		wait = 0
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.serveIncoming(conn)
		}()
	}
}

// peerMember is the member a verified TLS peer's certificate names (its
// first DNS name).
func peerMember(conn net.Conn) string {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 || len(cs.VerifiedChains[0][0].DNSNames) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].DNSNames[0]
}

func (v *Volume) serveIncoming(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(v.cfg.Timeout.D()))
	if v.tls != nil {
		tc := tls.Server(conn, v.tls.Server(tls.RequireAndVerifyClientCert))
		if err := tc.Handshake(); err != nil {
			v.met.authFailures.Inc()
			v.log.Warn("refused a replication connection: TLS", "from", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	s := newSession(conn)
	mine := v.hello()
	if err := s.send(fHello, encodeHello(mine)); err != nil || s.out.Flush() != nil {
		conn.Close()
		return
	}
	theirs, err := readHello(s)
	if err != nil {
		v.log.Warn("refused a replication connection", "from", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	if v.tls != nil && peerMember(conn) != theirs.member {
		v.met.authFailures.Inc()
		v.log.Warn("refused a replication connection: its certificate names another member", "from", conn.RemoteAddr().String(),
			"certificate", peerMember(conn), "hello", theirs.member)
		conn.Close()
		return
	}
	p := v.peers[theirs.member]
	if p == nil || !(p.name < v.self) {
		v.log.Warn("refused a replication connection from an unexpected member", "from", conn.RemoteAddr().String(), "member", theirs.member)
		conn.Close()
		return
	}
	p.serve(s, mine, theirs)
}

func (p *peer) dialLoop() {
	v := p.v
	defer v.wg.Done()
	backoff := 100 * time.Millisecond
	for v.ctx.Err() == nil {
		d := net.Dialer{Timeout: v.cfg.Timeout.D()}
		conn, err := d.DialContext(v.ctx, "tcp", p.addr)
		if err == nil {
			conn.SetDeadline(time.Now().Add(v.cfg.Timeout.D()))
			if v.tls != nil {
				tc := tls.Client(conn, v.tls.Client(p.name))
				if err = tc.Handshake(); err != nil {
					err = fmt.Errorf("TLS with %s: %w", p.name, err)
				}
				conn = tc
			}
			s := newSession(conn)
			s.dialed = true
			mine := v.hello()
			var theirs hello
			if err == nil {
				err = s.send(fHello, encodeHello(mine))
			}
			if err == nil {
				err = s.out.Flush()
			}
			if err == nil {
				theirs, err = readHello(s)
			}
			if err == nil && theirs.member != p.name {
				err = fmt.Errorf("dialed %s, %q answered", p.name, theirs.member)
			}
			if err == nil {
				start := time.Now()
				p.serve(s, mine, theirs)
				if time.Since(start) > 5*time.Second {
					backoff = 100 * time.Millisecond
				}
			} else {
				p.setErr(err)
				conn.Close()
			}
		}
		select {
		case <-v.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

func (p *peer) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err.Error()
	p.mu.Unlock()
}
