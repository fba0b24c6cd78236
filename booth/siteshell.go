package booth

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// CIB is a site's cluster information base, as a Booth site drives it.
type CIB interface {
	// Load reads a ticket as the CIB holds it: granted here, the owner's
	// site id (0: none), the lease's end and the term.
	Load(ctx context.Context, ticket string) (granted bool, owner uint32, expires time.Time, term uint32, err error)
	// Write is one atomic write of the ticket (expires on the wall clock).
	Write(ctx context.Context, w CIBWrite, expires time.Time) error
}

// cibTimeout bounds one CIB write or read.
const cibTimeout = 30 * time.Second

// siteShell is what a Server running a site adds.
type siteShell struct {
	cib CIB
	// writes carries the CIB writes to the one goroutine that does them,
	// in order.
	writes chan cibJob
	// handlers: the running before-acquire handlers' cancels.
	handlers map[string]context.CancelFunc
	// waiters: the clients waiting on a ticket's grant or revoke.
	waiters map[string][]*waiter
	// wake makes the tick loop look again (a handler ended).
	wake chan struct{}
}

type cibJob struct {
	w       CIBWrite
	expires time.Time
}

// waiter is a client waiting on a ticket's outcome.
type waiter struct {
	conn    net.Conn
	options uint32
	done    chan struct{}
}

// UseCIB makes the server a Booth site that keeps its tickets in cib
// (required when this member is a site; set before Run).
func (s *Server) UseCIB(cib CIB) {
	s.cib = cib
	s.writes = make(chan cibJob, 256)
	s.handlers, s.waiters = map[string]context.CancelFunc{}, map[string][]*waiter{}
	s.wake = make(chan struct{}, 1)
}

// loadCIB gives the engine each ticket as the CIB holds it.
func (s *Server) loadCIB(ctx context.Context) error {
	now, wall := s.now(), time.Now()
	for _, tc := range s.cfg.Tickets {
		lctx, cancel := context.WithTimeout(ctx, cibTimeout)
		granted, owner, expires, term, err := s.cib.Load(lctx, tc.Name)
		cancel()
		if err != nil {
			return fmt.Errorf("booth: read ticket %s from the CIB: %w", tc.Name, err)
		}
		var exp time.Duration
		if !expires.IsZero() && expires.After(wall) {
			exp = now + expires.Sub(wall)
		}
		s.arb.LoadCIB(tc.Name, granted, owner, exp, term)
		s.log.Info("booth: ticket read from the CIB", "ticket", tc.Name, "granted", granted, "owner", fmt.Sprintf("%#x", owner), "term", term, "expires", expires)
	}
	return nil
}

// writeCIB does the CIB writes in order until ctx ends.
func (s *Server) writeCIB(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.writes:
			wctx, cancel := context.WithTimeout(ctx, cibTimeout)
			err := s.cib.Write(wctx, j.w, j.expires)
			cancel()
			if err != nil {
				s.log.Error("booth: CIB write failed", "ticket", j.w.Ticket, "granted", j.w.Granted, "err", err)
				continue
			}
			s.log.Info("booth: CIB written", "ticket", j.w.Ticket, "granted", j.w.Granted, "owner", j.w.Owner, "term", j.w.Term, "expires", j.expires.Format(time.DateTime))
		}
	}
}

// apply carries out the engine's effects (with s.mu held).
func (s *Server) apply(ctx context.Context) {
	if s.cib == nil {
		return
	}
	eff := s.arb.TakeEffects()
	now, wall := s.now(), time.Now()
	for _, w := range eff.CIB {
		var exp time.Time
		if w.Expires > 0 {
			exp = wall.Add(w.Expires - now)
		}
		select {
		case s.writes <- cibJob{w: w, expires: exp}:
		default:
			s.log.Error("booth: CIB writes are not keeping up; one dropped", "ticket", w.Ticket, "granted", w.Granted)
		}
	}
	for _, name := range eff.StopHandler {
		if cancel := s.handlers[name]; cancel != nil {
			cancel()
		}
	}
	for _, name := range eff.RunHandler {
		s.runHandler(ctx, name)
	}
	for _, n := range eff.Notify {
		s.answerWaiters(n)
	}
}

// runHandler starts a ticket's before-acquire handler with Booth's
// environment; its end is reported to the engine.
func (s *Server) runHandler(ctx context.Context, name string) {
	var argv []string
	for _, tc := range s.cfg.Tickets {
		if tc.Name == name {
			argv = tc.BeforeAcquireHandler
		}
	}
	if len(argv) == 0 {
		s.arb.HandlerDone(name, true)
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	s.handlers[name] = cancel
	expires := "0"
	for _, v := range s.arb.Tickets() {
		if v.Name == name && v.Expires > 0 {
			expires = strconv.FormatInt(time.Now().Add(v.Expires-s.now()).Unix(), 10)
		}
	}
	cmd := exec.CommandContext(hctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BOOTH_TICKET="+name, "BOOTH_LOCAL="+s.arb.self.Address.String(),
		"BOOTH_CONF_NAME="+s.cfg.Name, "BOOTH_CONF_PATH="+s.cfg.Path, "BOOTH_TICKET_EXPIRES="+expires)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	go func() {
		err := cmd.Run()
		cancel()
		s.mu.Lock()
		delete(s.handlers, name)
		s.arb.HandlerDone(name, err == nil)
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("booth: before-acquire handler failed", "ticket", name, "handler", argv[0], "err", err)
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}()
}

// answerWaiters sends a ticket's outcome to its waiting clients; a final
// one (not More, nor Pending for a client that waits for the commit) ends
// their wait.
func (s *Server) answerWaiters(n Notice) {
	var keep []*waiter
	for _, w := range s.waiters[n.Ticket] {
		m := n.Msg
		m.From = s.arb.self.ID
		s.stamp(&m.Header)
		_ = w.conn.SetWriteDeadline(time.Now().Add(clientTimeout))
		_, err := w.conn.Write(Encode(m, s.key))
		if err == nil && (m.Result == ResultMore || m.Result == ResultPending && w.options&OptionWaitCommit != 0) {
			keep = append(keep, w)
			continue
		}
		close(w.done)
	}
	s.waiters[n.Ticket] = keep
	if len(keep) == 0 {
		s.arb.Waited(n.Ticket)
	}
}

// siteRequest answers a grant or revoke at a site: at once, or, while the
// outcome is pending, on the same connection when it comes (until a
// lease's time passed).
func (s *Server) siteRequest(ctx context.Context, c net.Conn, m Message) {
	s.mu.Lock()
	reply, wait := s.arb.SiteAnswer(s.now(), m)
	reply.From = s.arb.self.ID
	s.stamp(&reply.Header)
	s.met.clients.WithLabelValues(label(m.Cmd), label(reply.Result)).Inc()
	var w *waiter
	if wait {
		w = &waiter{conn: c, options: m.Options, done: make(chan struct{})}
		s.waiters[m.Ticket.Name] = append(s.waiters[m.Ticket.Name], w)
	}
	out := s.arb.flush()
	s.apply(ctx)
	s.mu.Unlock()
	s.send(out)
	if _, err := c.Write(Encode(reply, s.key)); err != nil || w == nil {
		return
	}
	limit := clientTimeout
	for _, tc := range s.cfg.Tickets {
		if tc.Name == m.Ticket.Name {
			limit = max(limit, tc.Expire+tc.AcquireAfter+2*tc.Timeout)
		}
	}
	_ = c.SetDeadline(time.Now().Add(limit))
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-time.After(limit):
	}
	s.mu.Lock()
	s.dropWaiter(m.Ticket.Name, w)
	s.mu.Unlock()
}

func (s *Server) dropWaiter(ticket string, w *waiter) {
	ws := s.waiters[ticket]
	for i, x := range ws {
		if x == w {
			s.waiters[ticket] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(s.waiters[ticket]) == 0 {
		s.arb.Waited(ticket)
	}
}
