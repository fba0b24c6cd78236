package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/ticket"
)

// Resources starts and stops what a ticket guards at this site (Pacemaker:
// crm_ticket grant and revoke; the replicated volumes). Calls for one
// ticket come one at a time.
type Resources interface {
	Grant(ctx context.Context, t string, g Grant) error
	Renewed(ctx context.Context, t string, term uint64, expires time.Time) error
	Revoke(ctx context.Context, t string) error
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
	Config    *config.File
	Log       *slog.Logger
	Registry  prometheus.Registerer
	Clock     Clock
	Transport Transport // nil: UDP on the member's configured address
	Resources Resources // nil: nothing to start (arbitrators, sites without Pacemaker)
	Handover  Handover  // nil: ready at once
	// HandoverTimeout bounds PrepareHandover (default 60 s).
	HandoverTimeout time.Duration
	// ResourceTimeout bounds one Grant/Revoke call (default 30 s).
	ResourceTimeout time.Duration
	// HandlerEnv is added to the before-acquire handler's environment
	// (CIB_file when the site's Pacemaker works on a file).
	HandlerEnv []string
	// Check runs before the handler; LocalChecks lists the tickets it
	// concerns (their state machines then always ask for it).
	Check       Check
	LocalChecks map[string]bool
}

// Node runs the tickets of one member.
type Node struct {
	opt     Options
	cfg     *config.File
	log     *slog.Logger
	clock   Clock
	tr      Transport
	store   *store
	met     *metrics
	tickets map[string]*rt
	names   []string
	timers  timerHeap
	// slack: the loop wakes for timers only at multiples of it (the
	// smallest TimerSlack of the tickets), once for all that fall due.
	slack time.Duration
	// electing counts the tickets with an election of ours under way;
	// queued holds those whose election waits for a free slot.
	electing int
	queued   []string

	inputs   chan taggedInput
	commands chan commandReq

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

// rt is one ticket's runtime state, owned by the loop goroutine.
type rt struct {
	cfg   ticket.Config
	cl    ticket.Cluster
	st    ticket.State
	work  chan func()   // the ticket's resource calls, one at a time
	owner int           // last owner seen, for failover counting
	next  time.Duration // when it next needs a tick (0: nothing scheduled)
	// electing: an election of ours is under way; queued: it waits in
	// Node.queued to start one.
	electing, queued bool
	// The ticket's gauges, looked up once.
	held, term, leaseRemaining prometheus.Gauge
}

type taggedInput struct {
	ticket string
	in     ticket.Input
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
	if opt.HandoverTimeout == 0 {
		opt.HandoverTimeout = 60 * time.Second
	}
	if opt.ResourceTimeout == 0 {
		opt.ResourceTimeout = 30 * time.Second
	}
	n := &Node{opt: opt, cfg: cfg, log: opt.Log, clock: opt.Clock, met: newMetrics(opt.Registry),
		tickets: map[string]*rt{}, inputs: make(chan taggedInput, 256), commands: make(chan commandReq),
		views: map[string]View{}, events: newEventRing(200), pending: map[uint64]chan ticket.Reply{},
		started: opt.Clock.Wall(), done: make(chan struct{})}
	st, err := newStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	n.store = st
	if err := opt.Registry.Register(newPeerCollector(n)); err != nil {
		return nil, fmt.Errorf("register peer metrics: %w", err)
	}
	cl := cfg.TicketCluster()
	for _, tc := range cfg.Tickets {
		tc := tc
		tc.LocalChecks = opt.LocalChecks[tc.Name]
		r := &rt{cfg: tc, cl: cl, work: make(chan func(), 64), owner: ticket.None,
			held: n.met.held.WithLabelValues(tc.Name), term: n.met.term.WithLabelValues(tc.Name),
			leaseRemaining: n.met.leaseRemaining.WithLabelValues(tc.Name)}
		r.st = ticket.NewState(&r.cfg, &r.cl)
		if len(n.names) == 0 || tc.TimerSlack < n.slack {
			n.slack = tc.TimerSlack
		}
		n.tickets[tc.Name] = r
		n.names = append(n.names, tc.Name)
	}
	sort.Strings(n.names)
	n.tr = opt.Transport
	if n.tr == nil {
		addrs := make([]string, len(cfg.Cluster.Members))
		for i, m := range cfg.Cluster.Members {
			addrs[i] = m.Address
		}
		keys := [][]byte{cfg.Key}
		if len(cfg.NextKey) > 0 {
			keys = append(keys, cfg.NextKey)
		}
		tr, err := listenUDP(addrs, cfg.Self, keys, cfg.Digest(), cfg.Cluster.MaxTimeSkew.D(), n.clock, n.log, n.met)
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

// Run boots every ticket from its persisted state and runs until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.done)
	defer n.tr.Close()
	wctx, stopWorkers := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	for _, name := range n.names {
		r := n.tickets[name]
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case f := <-r.work:
					f()
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	defer func() {
		stopWorkers()
		workers.Wait()
	}()
	for _, name := range n.names {
		p, err := n.store.load(name)
		if err != nil {
			return err
		}
		var seed [8]byte
		if _, err := rand.Read(seed[:]); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		if p == nil {
			n.log.Info("ticket has no persisted state: abstaining for one lease", "ticket", name)
		}
		n.step(name, ticket.Boot{Persisted: p, Seed: binary.BigEndian.Uint64(seed[:])})
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.resetTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-n.tr.Recv():
			if !ok {
				return errors.New("peer transport closed")
			}
			batch := n.gather(m, nil)
			if err := n.drain(&batch); err != nil {
				return err
			}
			n.stepBatch(batch)
		case in := <-n.inputs:
			batch := []taggedInput{in}
			if err := n.drain(&batch); err != nil {
				return err
			}
			n.stepBatch(batch)
		case c := <-n.commands:
			n.mu.Lock()
			n.nextCmdID++
			c.cmd.ID = n.nextCmdID
			n.pending[c.cmd.ID] = c.reply
			n.mu.Unlock()
			n.step(c.ticket, c.cmd)
		case <-timer.C:
			var batch []taggedInput
			now, starting := n.clock.Mono(), 0
			for _, name := range n.due() {
				r := n.tickets[name]
				// At most max_elections of our own at once: when
				// thousands of tickets fail over together, the others
				// wait their turn (oldest first) instead of flooding the
				// voters, whose receive queues would overflow and fail
				// every election.
				if r.st.AcquireDue(now) {
					if n.electing+starting >= n.cfg.MaxElections {
						n.enqueue(name, r)
						continue
					}
					starting++
				}
				batch = append(batch, taggedInput{ticket: name, in: ticket.Tick{}})
			}
			n.tickAll(batch)
		}
		n.admit()
	}
}

func (n *Node) tickAll(batch []taggedInput) {
	for len(batch) > 0 {
		k := min(len(batch), maxBatch)
		n.stepBatch(batch[:k])
		batch = batch[k:]
	}
}

// enqueue holds back a ticket whose election is due.
func (n *Node) enqueue(name string, r *rt) {
	if !r.queued {
		r.queued = true
		n.queued = append(n.queued, name)
		n.met.electionsQueued.Set(float64(len(n.queued)))
		n.met.electionsDeferred.Inc()
	}
}

// admit starts queued elections while slots are free. A queued ticket
// that no longer needs one (it heard of a new owner) leaves the queue.
func (n *Node) admit() {
	if len(n.queued) == 0 {
		return
	}
	now := n.clock.Mono()
	var batch []taggedInput
	for len(n.queued) > 0 && n.electing+len(batch) < n.cfg.MaxElections {
		name := n.queued[0]
		n.queued = n.queued[1:]
		r := n.tickets[name]
		r.queued = false
		if r.st.AcquireDue(now) {
			batch = append(batch, taggedInput{ticket: name, in: ticket.Tick{}})
		}
	}
	n.met.electionsQueued.Set(float64(len(n.queued)))
	n.tickAll(batch)
}

// step feeds one input to a ticket (see stepBatch).
func (n *Node) step(name string, in ticket.Input) {
	n.stepBatch([]taggedInput{{ticket: name, in: in}})
}

// maxBatch bounds the inputs stepped before one group commit.
const maxBatch = 2048

// stepBatch feeds inputs to their tickets in order and carries out the
// outputs: the states to persist first, all in one group commit (one
// flush for the batch instead of one per state), then the effects, then
// the messages. A ticket whose state could not be made durable sends
// nothing that depends on it.
func (n *Node) stepBatch(items []taggedInput) {
	type output struct {
		name string
		r    *rt
		now  time.Duration
		msgs []ticket.Message
		effs []ticket.Effect
	}
	outs := make([]output, 0, len(items))
	var save []namedState
	for _, it := range items {
		r := n.tickets[it.ticket]
		o := output{name: it.ticket, r: r, now: n.clock.Mono()}
		r.st, o.msgs, o.effs = ticket.Step(r.st, it.in, o.now)
		for _, e := range o.effs {
			if p, ok := e.(ticket.Persist); ok {
				save = append(save, namedState{name: it.ticket, state: p.State})
			}
		}
		outs = append(outs, o)
	}
	var failed map[string]error
	if len(save) > 0 {
		start := time.Now()
		failed = n.store.saveAll(save)
		n.met.persistSeconds.Observe(time.Since(start).Seconds())
		for name, err := range failed {
			// Without durable state a vote could be cast twice after a
			// crash: send nothing that depends on it.
			n.log.Error("cannot persist ticket state: not sending", "ticket", name, "err", err)
		}
	}
	var sends []ticket.Message
	for _, o := range outs {
		for _, e := range o.effs {
			n.effect(o.name, o.r, e)
		}
		if failed[o.name] == nil {
			sends = append(sends, o.msgs...)
		}
		if e := o.r.st.Electing(); e != o.r.electing {
			o.r.electing = e
			if e {
				n.electing++
			} else {
				n.electing--
			}
		}
		n.publish(o.name, o.r, o.now)
		n.schedule(o.name, o.r, o.now)
	}
	// The batch's messages leave together: one sendmmsg per 64.
	n.tr.Send(sends)
}

// gather adds a received message to a batch, unless its ticket is unknown.
func (n *Node) gather(m ticket.Message, batch []taggedInput) []taggedInput {
	if _, known := n.tickets[m.Ticket]; !known {
		n.met.packetsReceived.WithLabelValues("unknown_ticket").Inc()
		return batch
	}
	return append(batch, taggedInput{ticket: m.Ticket, in: ticket.Receive{Msg: m}})
}

// drain adds what is already waiting (messages, worker results) to the
// batch, up to maxBatch, without blocking.
func (n *Node) drain(batch *[]taggedInput) error {
	for len(*batch) < maxBatch {
		select {
		case m, ok := <-n.tr.Recv():
			if !ok {
				return errors.New("peer transport closed")
			}
			*batch = n.gather(m, *batch)
		case in := <-n.inputs:
			*batch = append(*batch, in)
		default:
			return nil
		}
	}
	return nil
}

// send queues an input from a worker back to the loop.
func (n *Node) send(name string, in ticket.Input) {
	select {
	case n.inputs <- taggedInput{ticket: name, in: in}:
	case <-n.done:
	}
}

// Do runs an operator command on a ticket and returns the state machine's
// reply.
func (n *Node) Do(ctx context.Context, name string, cmd ticket.Command) (ticket.Reply, error) {
	if _, ok := n.tickets[name]; !ok {
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

// ErrUnknownTicket: no ticket of that name is configured.
var ErrUnknownTicket = errors.New("unknown ticket")

// MemberIndex returns the index of the named member, or -1.
func (n *Node) MemberIndex(name string) int {
	for i, m := range n.cfg.Cluster.Members {
		if m.Name == name {
			return i
		}
	}
	return -1
}
