package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// Resources starts and stops what a ticket guards at this site (Pacemaker:
// crm_ticket grant and revoke; the replicated volumes). Calls for one
// ticket come one at a time, a stop before anything queued.
type Resources interface {
	Grant(ctx context.Context, t string, g Grant) error
	Renewed(ctx context.Context, t string, term uint64, expires time.Time) error
	// Stop stops what the ticket guards and returns once it is down; an
	// error says it could not make sure of that (ctx ends at the stop's
	// deadline).
	Stop(ctx context.Context, t string) error
	// Escalate: a stop was not done by the end of the lease it ran under,
	// and the resources may still run: apply on_revoke_failure, so the
	// local cluster stops them (the daemon exits) or at least says so.
	Escalate(t, reason string)
}

// Grant describes an acquisition.
type Grant struct {
	Term uint64
	// Expires is when the lease ends (zero for a manual ticket).
	Expires time.Time
	// Forced: through an operator's forced grant.
	Forced bool
}

// Check is the runtime's own check before acquiring (kind acquire) and at
// every renewal (kind renew), run before the configured handler; an error
// refuses (or relinquishes). force: an operator forced the grant.
type Check func(ctx context.Context, t string, kind ticket.HandlerKind, force bool) error

// Handover prepares a planned move of a ticket to another site: stop the
// services (standby), drain replication. A nil error means ready.
type Handover interface {
	PrepareHandover(ctx context.Context, t, to string) error
}

// Observer is told about every view change (DNS follows owners with it).
type Observer func(View)

// Options wire a Node.
type Options struct {
	Config    Config
	Log       *slog.Logger
	Registry  prometheus.Registerer
	Clock     Clock
	Transport Transport // nil: UDP on the member's configured address
	// AcceptMembershipChange: the operator stopped every member to change
	// the member list (see engine.ErrMembershipChanged).
	AcceptMembershipChange bool
	Site
}

// Site is what a site's runtime does for its tickets; an arbitrator has
// none of it. The site gives it with UseSite once it has built its parts
// around the node.
type Site struct {
	Resources Resources // nil: nothing to start (arbitrators, sites without Pacemaker)
	Handover  Handover  // nil: ready at once
	// HandoverTimeout bounds PrepareHandover (required with Handover).
	HandoverTimeout time.Duration
	// ResourceTimeout bounds one Grant or Renewed call (required with
	// Resources).
	ResourceTimeout time.Duration
	// HandlerEnv is added to the before-acquire handler's environment
	// (CIB_file when the site's Pacemaker works on a file).
	HandlerEnv []string
	// Check runs before the handler of the tickets whose configuration
	// asks for local checks (ticket.Config.LocalChecks: a site's replicas
	// must hold good data).
	Check Check
	// Running lists the tickets found granted in the local CIB at start,
	// with the lease end recorded there (zero: none recorded).
	Running map[string]time.Time
}

// Node runs the tickets of one member: the shell around the deterministic
// engine. One goroutine (Run) owns the engine; it feeds it peer messages,
// commands, timer ticks and the results of the work it asked for, and
// carries out what it returns without ever blocking: writes go to the
// store's goroutine, resource calls to each ticket's worker, handlers and
// handovers to goroutines of their own.
type Node struct {
	opt   Options
	cfg   Config
	log   *slog.Logger
	clock Clock
	tr    Transport
	store *store
	met   *metrics
	eng   *engine.Engine
	names []string
	rts   map[string]*rt

	inputs   chan func(now time.Duration)
	commands chan commandReq
	saves    chan *engine.Save
	// stopped: stops of a member without resources, done at once (the
	// loop feeds them back before it waits again).
	stopped []engine.Stop

	mu         sync.Mutex
	views      map[string]View
	events     *eventRing
	observers  []Observer
	standby    map[string]bool // guarded by mu
	started    time.Time
	pending    map[uint64]chan ticket.Reply
	nextCmdID  uint64
	done       chan struct{}
	membership Membership
}

// rt is what the shell keeps of one ticket.
type rt struct {
	cfg    ticket.Config
	cl     ticket.Cluster
	worker *worker
	owner  int // last owner seen, for failover counting
	// The ticket's gauges, looked up once.
	held, term, leaseRemaining prometheus.Gauge
}

type commandReq struct {
	ticket string
	cmd    ticket.Command
	reply  chan ticket.Reply
}

// New prepares a node; Run starts it.
func New(opt Options) (*Node, error) {
	cfg := opt.Config
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Clock == nil {
		opt.Clock = NewSystemClock()
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	n := &Node{opt: opt, cfg: cfg, log: opt.Log, clock: opt.Clock, met: newMetrics(opt.Registry),
		rts: map[string]*rt{}, inputs: make(chan func(time.Duration), 1024), commands: make(chan commandReq),
		saves: make(chan *engine.Save, 1), views: map[string]View{}, events: newEventRing(200, time.Now()),
		pending: map[uint64]chan ticket.Reply{}, started: opt.Clock.Wall(), done: make(chan struct{})}
	st, err := newStore(cfg.StateDir, cfg.cluster())
	if err != nil {
		return nil, err
	}
	n.store = st
	if err := opt.Registry.Register(newPeerCollector(n)); err != nil {
		return nil, fmt.Errorf("register peer metrics: %w", err)
	}
	cl := cfg.cluster()
	var tickets []ticket.Config
	for _, tc := range cfg.Tickets {
		tickets = append(tickets, tc)
		n.rts[tc.Name] = &rt{cfg: tc, cl: cl, owner: ticket.None, worker: newWorker(),
			held: n.met.held.WithLabelValues(tc.Name), term: n.met.term.WithLabelValues(tc.Name),
			leaseRemaining: n.met.leaseRemaining.WithLabelValues(tc.Name)}
	}
	n.eng, err = engine.New(engine.Config{Members: cl.Members, Self: cl.Self, Tickets: tickets, Digest: cfg.Digest,
		MaxElections: cfg.MaxElections, AcceptMembershipChange: opt.AcceptMembershipChange})
	if err != nil {
		return nil, err
	}
	n.names = n.eng.Names()
	for _, name := range n.names {
		// Known from the start: the API answers for a ticket before the
		// loop has booted it, and its commands wait for the loop.
		r := n.rts[name]
		n.views[name] = View{Name: name, Mode: r.cfg.Mode.String(), State: "starting", Local: cfg.local(),
			Attrs: map[string]string{}, Expire: r.cfg.Expire.Seconds()}
	}
	n.tr = opt.Transport
	if n.tr == nil {
		addrs := make([]string, len(cfg.Members))
		for i, m := range cfg.Members {
			addrs[i] = m.Address
		}
		keys := [][]byte{cfg.Key}
		if len(cfg.NextKey) > 0 {
			keys = append(keys, cfg.NextKey)
		}
		tr, err := listenUDP(addrs, cfg.Self, keys, cfg.Digest, cfg.MaxTimeSkew, n.clock, n.log, n.met)
		if err != nil {
			return nil, err
		}
		n.tr = tr
	}
	return n, nil
}

// Observe registers fn to be called with every changed ticket view. Call
// before Run.
func (n *Node) Observe(fn Observer) { n.observers = append(n.observers, fn) }

// maxBatch bounds the inputs fed to the engine before its outputs are
// carried out (one group commit for all of them).
const maxBatch = 2048

// Run boots every ticket from its stored state and runs until ctx ends. It
// returns at once with an error when the stored state cannot be used (a
// configuration change that is not safe online).
func (n *Node) Run(ctx context.Context) error {
	defer close(n.done)
	defer n.tr.Close()
	if err := n.opt.Site.validate(); err != nil {
		return err
	}
	if err := n.boot(); err != nil {
		return err
	}
	var workers sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(context.Background())
	for _, name := range n.names {
		workers.Add(1)
		go func() {
			defer workers.Done()
			n.runWorker(wctx, name, n.rts[name])
		}()
	}
	workers.Add(1)
	go func() {
		defer workers.Done()
		n.runStore(wctx)
	}()
	defer func() {
		stopWorkers()
		workers.Wait()
	}()
	n.ready(n.clock.Mono())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var dropped uint64
	for {
		n.arm(timer)
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-n.tr.Recv():
			if !ok {
				return errors.New("peer transport closed")
			}
			now := n.clock.Mono()
			n.receive(now, m)
			if err := n.drain(now); err != nil {
				return err
			}
		case f := <-n.inputs:
			now := n.clock.Mono()
			f(now)
			if err := n.drain(now); err != nil {
				return err
			}
		case c := <-n.commands:
			n.command(n.clock.Mono(), c)
		case <-timer.C:
			n.eng.Tick(n.clock.Mono())
		}
		now := n.clock.Mono()
		if d := n.tr.Dropped(); d > dropped {
			dropped = d
			n.eng.Overloaded(now)
		}
		n.ready(now)
	}
}

// ready carries out what the engine returns, until nothing is left that
// the loop itself answers (the stops of a member without resources).
func (n *Node) ready(now time.Duration) {
	n.carry(n.eng.Ready(now))
	for len(n.stopped) > 0 {
		for _, s := range n.stopped {
			n.eng.Done(now, s.Ticket, ticket.Stopped{Token: s.Token})
		}
		n.stopped = n.stopped[:0]
		n.carry(n.eng.Ready(now))
	}
}

// boot reads every ticket's stored state and starts the engine.
func (n *Node) boot() error {
	stored := map[string]*engine.Record{}
	for _, name := range n.names {
		r, err := n.store.load(name)
		if err != nil {
			return err
		}
		stored[name] = r
	}
	if err := n.importBooth(stored); err != nil {
		return err
	}
	for _, name := range n.names {
		r := stored[name]
		if r == nil {
			n.log.Info("ticket has no stored state: abstaining for one lease", "ticket", name)
		} else if r.Digest != 0 && r.Digest != n.cfg.Digest {
			n.log.Warn("the cluster configuration changed since this member last ran: it abstains for the longer of the old and the new lease",
				"ticket", name, "was", fmt.Sprintf("%016x", r.Digest), "now", fmt.Sprintf("%016x", n.cfg.Digest))
		}
	}
	now := n.clock.Mono()
	running := map[string]engine.Running{}
	for name, end := range n.opt.Running {
		r := engine.Running{}
		if !end.IsZero() {
			r.LeaseEnd = now + end.Sub(n.clock.Wall())
		}
		running[name] = r
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return n.eng.Boot(now, stored, running, binary.BigEndian.Uint64(seed[:]))
}

// arm sets the timer for the engine's next wake-up.
func (n *Node) arm(t *time.Timer) {
	now := n.clock.Mono()
	next := now + time.Hour
	if at, ok := n.eng.NextWake(); ok {
		next = at
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(max(0, next-now))
}

func (n *Node) receive(now time.Duration, m ticket.Message) {
	if !n.eng.Receive(now, m) {
		n.met.packetsReceived.WithLabelValues("unknown_ticket").Inc()
	}
}

// drain feeds what is already waiting (messages, results), up to
// maxBatch, without blocking.
func (n *Node) drain(now time.Duration) error {
	for k := 0; k < maxBatch; k++ {
		select {
		case m, ok := <-n.tr.Recv():
			if !ok {
				return errors.New("peer transport closed")
			}
			n.receive(now, m)
		case f := <-n.inputs:
			f(now)
		default:
			return nil
		}
	}
	return nil
}

func (n *Node) command(now time.Duration, c commandReq) {
	n.mu.Lock()
	n.nextCmdID++
	c.cmd.ID = n.nextCmdID
	n.pending[c.cmd.ID] = c.reply
	n.mu.Unlock()
	if err := n.eng.Command(now, c.ticket, c.cmd); err != nil {
		n.reply(ticket.Reply{ID: c.cmd.ID, Err: err})
	}
}

// input queues work for the loop from another goroutine.
func (n *Node) input(f func(now time.Duration)) {
	select {
	case n.inputs <- f:
	case <-n.done:
	}
}

// done reports a result of work a ticket asked for.
func (n *Node) doneWith(name string, in ticket.Input) {
	n.input(func(now time.Duration) { n.eng.Done(now, name, in) })
}

// Do runs an operator command on a ticket and returns the state machine's
// reply.
func (n *Node) Do(ctx context.Context, name string, cmd ticket.Command) (ticket.Reply, error) {
	if _, ok := n.rts[name]; !ok {
		return ticket.Reply{}, fmt.Errorf("%w: %q", ErrUnknownTicket, name)
	}
	req := commandReq{ticket: name, cmd: cmd, reply: make(chan ticket.Reply, 1)}
	select {
	case n.commands <- req:
	case <-ctx.Done():
		return ticket.Reply{}, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r, nil
	case <-ctx.Done():
		return ticket.Reply{}, ctx.Err()
	}
}

// Alive returns once the ticket loop has run a no-op of its own, or with
// ctx's error: the loop has booted (stored state read) and is not stuck.
// The systemd watchdog is fed from it.
func (n *Node) Alive(ctx context.Context) error {
	ran := make(chan struct{})
	select {
	case n.inputs <- func(time.Duration) { close(ran) }:
	case <-n.done:
		return errors.New("the ticket loop has ended")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-n.done:
		return errors.New("the ticket loop has ended")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives a held ticket up without revoking it (this site cannot run
// what it guards); another site may acquire it.
func (n *Node) Release(name, why string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.Do(ctx, name, ticket.Command{Op: ticket.OpRelease, Value: why}); err != nil {
			n.log.Error("cannot release the ticket", "ticket", name, "err", err)
		}
	}()
}

// validate: the site that gives resources or a handover bounds their
// calls (it knows its driver's budget; the node has no default for it).
func (s *Site) validate() error {
	if s.Resources != nil && s.ResourceTimeout <= 0 {
		return errors.New("site resources without a resource timeout")
	}
	if s.Handover != nil && s.HandoverTimeout <= 0 {
		return errors.New("site handover without a handover timeout")
	}
	return nil
}

// Forget removes every ticket's stored state, durably, before Run: the
// member then starts as one that lost its state, and abstains for a lease
// (a site found its state_dir superseded by a run elsewhere; see
// site.checkIncarnation). It reports how many tickets had state.
func (n *Node) Forget() (int, error) {
	had := 0
	for _, name := range n.names {
		if _, err := os.Stat(n.store.path(name)); err == nil {
			had++
		}
	}
	if err := n.store.remove(n.names); err != nil {
		return had, fmt.Errorf("forget the stored ticket state: %w", err)
	}
	return had, nil
}

// UseSite gives the node a site's parts. Call before Run.
func (n *Node) UseSite(s Site) { n.opt.Site = s }

// ErrUnknownTicket: no ticket of that name is configured.
var ErrUnknownTicket = engine.ErrUnknownTicket

// MemberIndex returns the index of the named member, or -1.
func (n *Node) MemberIndex(name string) int {
	for i, m := range n.cfg.Members {
		if m.Name == name {
			return i
		}
	}
	return -1
}
