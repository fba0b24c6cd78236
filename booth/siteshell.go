package booth

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// CIB is a site's cluster information base, as a Booth site drives it.
type CIB interface {
	// Load reads a ticket as the CIB holds it.
	Load(ctx context.Context, ticket string) (CIBTicket, error)
	// Write is one atomic write of the ticket (expires on the wall clock).
	Write(ctx context.Context, w CIBWrite, expires time.Time) error
	// SetAttr and DeleteAttr keep a geostore attribute (booth attr).
	SetAttr(ctx context.Context, ticket, name, value string) error
	DeleteAttr(ctx context.Context, ticket, name string) error
}

// CIBTicket is a ticket as the CIB holds it: granted here, the owner's
// site id (0: none), the lease's end, the term and the geostore
// attributes.
type CIBTicket struct {
	Granted bool
	Owner   uint32
	Expires time.Time
	Term    uint32
	Attrs   map[string]string
}

// Guard is what a site keeps under its tickets besides the CIB:
// geoboothd's replicated volumes. Booth has no such thing; here the data
// follows the ticket as in geobooth's own protocol (docs/booth.md).
type Guard interface {
	// Check says whether this site may hold the ticket (its data is good):
	// it runs with the before-acquire handler, before an election and
	// before every renewal, and a failure steps the site down as a failed
	// handler does. It must not block.
	Check(ticket string) error
	// Lease is told at once of the ticket's lease as the engine holds it
	// here: held until expires (zero: without end, a manual ticket), or
	// not held (then writes stop at once). It must not block.
	Lease(ticket string, held bool, expires time.Time)
	// Acquire readies what the ticket guards before the CIB is written
	// granted; an error keeps the CIB as it was.
	Acquire(ctx context.Context, ticket string, expires time.Time) error
	// Release stops it before the CIB is written revoked.
	Release(ctx context.Context, ticket string) error
	// (Acquire and Release get at most guardTimeout each; the messages
	// of a revoke wait for its Release and CIB write.)
}

// cibTimeout bounds one CIB write or read; guardTimeout what the guard
// does before one (a release's drain).
const (
	cibTimeout   = 30 * time.Second
	guardTimeout = 2 * time.Minute
)

// siteShell is what a Server running a site adds.
type siteShell struct {
	cib CIB
	// pending is the last CIB write asked for each ticket, not yet done;
	// written signals the one goroutine that does them. Each write sets
	// every attribute, so only the last one per ticket matters.
	pending map[string]cibJob
	order   []string
	written chan struct{}
	// handlers: the running before-acquire handlers' cancels.
	handlers map[string]context.CancelFunc
	// waiters: the clients waiting on a ticket's grant or revoke.
	waiters map[string][]*waiter
	// guard, when set, follows the tickets (UseGuard).
	guard Guard
	// held: the tickets the CIB was last asked to grant here.
	held map[string]bool
	// unwritten: the revokes asked of the CIB and not yet written (each
	// closed once done). Nothing is sent before they are: a message of a
	// later step (a resent revoke, an answer) would tell the others too.
	unwritten []chan struct{}
}

type cibJob struct {
	w       CIBWrite
	expires time.Time
	// done are closed once the write was done (or failed): the messages
	// sent after a revoke here wait for them (apply).
	done []chan struct{}
}

// waiter is a client waiting on a ticket's outcome: the engine's results
// reach it through replies, and its own goroutine writes them, so that a
// slow client never holds up the engine.
type waiter struct {
	options uint32
	replies chan Message
}

// UseCIB makes the server a Booth site that keeps its tickets in cib
// (required when this member is a site; set before Run).
func (s *Server) UseCIB(cib CIB) {
	s.cib = cib
	s.pending, s.written = map[string]cibJob{}, make(chan struct{}, 1)
	s.handlers, s.waiters = map[string]context.CancelFunc{}, map[string][]*waiter{}
	s.held = map[string]bool{}
}

// UseGuard makes g follow the named tickets at this site (set after
// UseCIB, before Run): each of them gets g's check as a before-acquire
// handler of its own, run before the configured one.
func (s *Server) UseGuard(g Guard, tickets []string) {
	s.guard = g
	for _, name := range tickets {
		s.arb.Guarded(name)
	}
}

// loadCIB gives the engine each ticket as the CIB holds it.
func (s *Server) loadCIB(ctx context.Context) error {
	now, wall := s.now(), time.Now()
	for _, tc := range s.cfg.Tickets {
		lctx, cancel := context.WithTimeout(ctx, cibTimeout)
		ct, err := s.cib.Load(lctx, tc.Name)
		cancel()
		if err != nil {
			return fmt.Errorf("booth: read ticket %s from the CIB: %w", tc.Name, err)
		}
		var exp time.Duration
		if !ct.Expires.IsZero() && ct.Expires.After(wall) {
			exp = now + ct.Expires.Sub(wall)
		}
		s.arb.LoadCIB(tc.Name, ct.Granted, ct.Owner, exp, ct.Term, ct.Attrs)
		s.mu.Lock()
		s.held[tc.Name] = ct.Granted
		s.mu.Unlock()
		s.log.Info("booth: ticket read from the CIB", "ticket", tc.Name, "granted", ct.Granted, "owner", fmt.Sprintf("%#x", ct.Owner), "term", ct.Term, "expires", ct.Expires, "attributes", len(ct.Attrs))
	}
	return nil
}

// writeCIB does the CIB writes until ctx ends: each ticket's last one,
// in the order they were asked for.
func (s *Server) writeCIB(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.written:
		}
		s.mu.Lock()
		var jobs []cibJob
		for _, name := range s.order {
			jobs = append(jobs, s.pending[name])
		}
		clear(s.pending)
		s.order = s.order[:0]
		s.mu.Unlock()
		for _, j := range jobs {
			gctx, cancel := context.WithTimeout(ctx, guardTimeout)
			err := s.guarded(gctx, j)
			cancel()
			if err == nil {
				wctx, cancel := context.WithTimeout(ctx, cibTimeout)
				err = s.cib.Write(wctx, j.w, j.expires)
				cancel()
			}
			for _, d := range j.done {
				close(d)
			}
			if err != nil {
				s.log.Error("booth: CIB write failed", "ticket", j.w.Ticket, "granted", j.w.Granted, "err", err)
				continue
			}
			s.log.Info("booth: CIB written", "ticket", j.w.Ticket, "granted", j.w.Granted, "owner", j.w.Owner, "term", j.w.Term, "expires", j.expires.Format(time.DateTime))
		}
	}
}

// guarded readies the guard for a CIB write: what the ticket guards is
// acquired before a grant is written, released before a revoke.
func (s *Server) guarded(ctx context.Context, j cibJob) error {
	switch {
	case s.guard == nil:
		return nil
	case j.w.Granted:
		return s.guard.Acquire(ctx, j.w.Ticket, j.expires)
	}
	if err := s.guard.Release(ctx, j.w.Ticket); err != nil {
		// The revoke is written all the same: the lease's end already
		// stopped the writes (Lease), and Pacemaker must stop the rest.
		s.log.Error("booth: releasing what the ticket guards failed", "ticket", j.w.Ticket, "err", err)
	}
	return nil
}

// apply carries out the engine's effects (with s.mu held). While a
// ticket granted here is being revoked in the CIB (this step or an
// earlier one), it returns a channel closed once those writes are done:
// the messages of this step go out after them, as Booth writes the CIB
// before it tells the others (a revoke, a step-down), and sends nothing
// while it writes.
func (s *Server) apply(ctx context.Context) <-chan struct{} {
	if s.cib == nil {
		return nil
	}
	eff := s.arb.TakeEffects()
	now, wall := s.now(), time.Now()
	for _, w := range eff.CIB {
		var exp time.Time
		if w.Expires > 0 {
			exp = wall.Add(w.Expires - now)
		}
		old, ok := s.pending[w.Ticket]
		if !ok {
			s.order = append(s.order, w.Ticket)
		}
		job := cibJob{w: w, expires: exp, done: old.done}
		if s.held[w.Ticket] && !w.Granted {
			after := make(chan struct{})
			job.done = append(job.done, after)
			s.unwritten = append(s.unwritten, after)
		}
		s.held[w.Ticket] = w.Granted
		s.pending[w.Ticket] = job
		if s.guard != nil {
			s.guard.Lease(w.Ticket, w.Granted, exp)
		}
	}
	if len(eff.CIB) > 0 {
		select {
		case s.written <- struct{}{}:
		default:
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
	return s.unwrittenLocked(ctx)
}

// unwrittenLocked returns a channel closed once every revoke asked of the
// CIB so far is written; nil when none is left.
func (s *Server) unwrittenLocked(ctx context.Context) <-chan struct{} {
	left := s.unwritten[:0]
	for _, c := range s.unwritten {
		select {
		case <-c:
		default:
			left = append(left, c)
		}
	}
	clear(s.unwritten[len(left):])
	s.unwritten = left
	switch len(left) {
	case 0:
		return nil
	case 1:
		return left[0]
	}
	all := make(chan struct{})
	go func(chs []chan struct{}) {
		for _, c := range chs {
			select {
			case <-c:
			case <-ctx.Done():
				return
			}
		}
		close(all)
	}(slices.Clone(left))
	return all
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
	if s.guard != nil {
		if err := s.guard.Check(name); err != nil {
			s.log.Warn("booth: this site's data cannot hold the ticket: the before-acquire check fails", "ticket", name, "err", err)
			s.arb.HandlerDone(name, false)
			s.kick()
			return
		}
	}
	if len(argv) == 0 {
		s.arb.HandlerDone(name, true)
		s.kick()
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
		s.kick()
	}()
}

// answerWaiters hands a ticket's outcome to its waiting clients; a final
// one (not More, nor Pending for a client that waits for the commit) ends
// their wait. A client too slow to take it is dropped.
func (s *Server) answerWaiters(n Notice) {
	m := n.Msg
	m.From = s.arb.self.ID
	s.stamp(&m.Header)
	var keep []*waiter
	for _, w := range s.waiters[n.Ticket] {
		select {
		case w.replies <- m:
		default:
			close(w.replies)
			continue
		}
		if final(m, w.options) {
			close(w.replies)
			continue
		}
		keep = append(keep, w)
	}
	s.waiters[n.Ticket] = keep
	if len(keep) == 0 {
		s.arb.Waited(n.Ticket)
	}
}

// final: the client's wait ends with this result.
func final(m Message, options uint32) bool {
	return m.Result != ResultMore && !(m.Result == ResultPending && options&OptionWaitCommit != 0)
}

// siteRequest answers a grant or revoke at a site: at once, or, while the
// outcome is pending, on the same connection when it comes (until a
// lease's time passed).
func (s *Server) siteRequest(ctx context.Context, c net.Conn, m Message) {
	reply, w := s.ask(m)
	if _, err := c.Write(Encode(reply, s.key)); err != nil || w == nil {
		if w != nil {
			s.dropWaiter(m.Ticket.Name, w)
		}
		return
	}
	limit := s.waitLimit(m.Ticket.Name)
	_ = c.SetDeadline(time.Now().Add(limit))
	s.follow(ctx, m.Ticket.Name, w, limit, func(r Message) bool {
		_, err := c.Write(Encode(r, s.key))
		return err == nil
	})
}

// ask hands a client's grant or revoke to the site's engine. It returns
// the first answer and, while the outcome is pending, the waiter that
// gets what follows (follow it, or drop it).
func (s *Server) ask(m Message) (Message, *waiter) {
	s.mu.Lock()
	reply, wait := s.arb.SiteAnswer(s.now(), m)
	reply.From = s.arb.self.ID
	s.stamp(&reply.Header)
	s.met.clients.WithLabelValues(label(m.Cmd), label(reply.Result)).Inc()
	var w *waiter
	if wait {
		w = &waiter{options: m.Options, replies: make(chan Message, 8)}
		s.waiters[m.Ticket.Name] = append(s.waiters[m.Ticket.Name], w)
	}
	out := s.arb.flush()
	after := s.apply(s.ctx)
	s.recordChanges(s.now(), time.Now())
	s.mu.Unlock()
	s.send(out, after)
	s.kick()
	return reply, w
}

// waitLimit is how long a client may wait for a ticket's outcome: a
// lease, acquire-after and two resends.
func (s *Server) waitLimit(ticket string) time.Duration {
	limit := clientTimeout
	for _, tc := range s.cfg.Tickets {
		if tc.Name == ticket {
			limit = max(limit, tc.Expire+tc.AcquireAfter+2*tc.Timeout)
		}
	}
	return limit
}

// follow passes w's answers to emit until the final one, emit fails, ctx
// ends or limit passes; then w is dropped.
func (s *Server) follow(ctx context.Context, ticket string, w *waiter, limit time.Duration, emit func(Message) bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	defer s.dropWaiter(ticket, w)
	for {
		select {
		case r, ok := <-w.replies:
			if !ok || !emit(r) || final(r, w.options) {
				return
			}
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		}
	}
}

// dropWaiter forgets a client that stopped waiting.
func (s *Server) dropWaiter(ticket string, w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
