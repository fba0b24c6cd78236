package engine

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// Config is what the engine needs of a member's configuration.
type Config struct {
	// Members in configuration order: their indexes are the identities on
	// the wire, their names those on disk.
	Members []ticket.Member
	Self    int
	Tickets []ticket.Config
	// Digest summarises the cluster configuration; it is stored with each
	// ticket's state.
	Digest uint64
	// MaxElections bounds the elections of this member's own under way at
	// once (the pacing window's ceiling).
	MaxElections int
	// AcceptMembershipChange: the operator stopped every member to change
	// the member list, and starts this one with the new list.
	AcceptMembershipChange bool
}

// Engine runs the tickets of one member. It is not safe for concurrent
// use: one goroutine (the shell's loop) owns it.
type Engine struct {
	cfg     Config
	tickets map[string]*tk
	names   []string
	booted  bool
	timers  timerHeap
	// slack: the engine wakes for timers only at multiples of it (the
	// smallest TimerSlack of the tickets), once for all that fall due.
	slack time.Duration
	// saving is the write in flight (nil: none); saveID numbers writes.
	saving *Save
	saveID uint64
	out    Ready
	pace   pacer
	// queued holds tickets whose election waits for a slot, oldest first.
	queued []string
	// changed and dirty list the tickets stepped, and those whose state
	// changed, since the last Ready (each once); unsaved counts the
	// tickets whose last write failed. Ready's work stays proportional to
	// what happened, not to the number of tickets.
	changed, dirty []*tk
	unsaved        int
}

// tk is one ticket's runtime state.
type tk struct {
	cfg ticket.Config // State points at it: never copied after New
	cl  ticket.Cluster
	st  ticket.State
	// version counts the changes of the durable state; durable is the one
	// known to be on disk, writing the one in the write in flight (0:
	// none).
	version, durable, writing uint64
	// retryAt: a write failed; the next is not tried before (0: none).
	retryAt  time.Duration
	failures int
	// held: outputs that wait for their state to be durable.
	held []held
	// stops: the deadline of every stop asked for and not yet done (0:
	// none).
	stops map[uint64]time.Duration
	// delayed: stops the StopLatency mutation holds back (tests only).
	delayed []delayedStop
	// next: when the ticket is next due (0: nothing scheduled); stepped:
	// when its state machine was last stepped.
	next, stepped time.Duration
	// electing: an election of ours is under way (since electStart);
	// queued: it waits in Engine.queued to start one.
	electing, queued bool
	electStart       time.Duration
	changed, dirty   bool
}

type held struct {
	version uint64
	at      time.Duration // when the step produced them
	msgs    []ticket.Message
	effs    []ticket.Effect
}

type delayedStop struct {
	at   time.Duration
	stop Stop
}

// Ready is what the shell carries out after feeding inputs, in this order:
// start the write (and report it with Saved), start the stops, run the
// escalations and the effects, then send the messages.
type Ready struct {
	// Save, when set, is one group commit of changed states.
	Save *Save
	// Stops must start now, before anything else.
	Stops []Stop
	// Escalations: stops that missed their deadline.
	Escalations []Escalation
	// Effects: the other work the tickets ask for, in order.
	Effects []Effect
	// Send: the messages, whose state is durable.
	Send []ticket.Message
	// Changed: the tickets whose view may have changed.
	Changed []string
}

// Empty reports whether there is nothing to do.
func (r *Ready) Empty() bool {
	return r.Save == nil && len(r.Stops) == 0 && len(r.Escalations) == 0 && len(r.Effects) == 0 &&
		len(r.Send) == 0 && len(r.Changed) == 0
}

// Save is a set of records to make durable together.
type Save struct {
	ID      uint64
	Records []Record
}

// Stop asks for a ticket's resources to stop by Deadline (local
// monotonic; 0: none); the shell answers Stopped (or StopFailed) with
// Token.
type Stop struct {
	Ticket   string
	Token    uint64
	Reason   string
	Deadline time.Duration
}

// Escalation: the stop with Token was not done by its deadline. The
// resources may still run while the lease they ran under is over: the
// shell applies on_revoke_failure, so the local cluster stops them.
type Escalation struct {
	Ticket string
	Token  uint64
	Reason string
}

// Effect is one ticket's effect other than a stop or a write:
// StartResources, LeaseRenewed, RunHandler, PrepareHandover, Reply, Event.
type Effect struct {
	Ticket string
	Effect ticket.Effect
}

// ErrUnknownTicket: no ticket of that name is configured.
var ErrUnknownTicket = errors.New("unknown ticket")

// New prepares an engine; Boot starts it.
func New(cfg Config) (*Engine, error) {
	cl := ticket.Cluster{Members: cfg.Members, Self: cfg.Self}
	if err := cl.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxElections <= 0 {
		return nil, fmt.Errorf("max_elections %d: must be positive", cfg.MaxElections)
	}
	e := &Engine{cfg: cfg, tickets: map[string]*tk{}}
	for i, tc := range cfg.Tickets {
		if _, dup := e.tickets[tc.Name]; dup {
			return nil, fmt.Errorf("ticket %q is configured twice", tc.Name)
		}
		t := &tk{cfg: tc, cl: cl, stops: map[uint64]time.Duration{}}
		t.st = ticket.NewState(&t.cfg, &t.cl)
		if i == 0 || tc.TimerSlack < e.slack {
			e.slack = tc.TimerSlack
		}
		e.tickets[tc.Name] = t
		e.names = append(e.names, tc.Name)
	}
	sort.Strings(e.names)
	e.pace = newPacer(cfg.MaxElections)
	return e, nil
}

// Running describes resources found running at start (the ticket granted
// in the local CIB): LeaseEnd is the local instant their lease ends as
// recorded there (0: none recorded).
type Running struct {
	LeaseEnd time.Duration
}

// Boot starts every ticket from its stored record (nil or absent: none, a
// first start or a lost disk) and from what runs locally. seed drives the
// tickets' election jitter. It refuses a configuration change that is not
// safe online, saying what to do.
func (e *Engine) Boot(now time.Duration, stored map[string]*Record, running map[string]Running, seed uint64) error {
	if e.booted {
		return errors.New("engine already booted")
	}
	boots := map[string]ticket.Boot{}
	var errs []error
	for i, name := range e.names {
		t := e.tickets[name]
		b := ticket.Boot{Seed: splitmix(seed + uint64(i))}
		if r := stored[name]; r != nil {
			p, err := e.persistent(t, r, e.cfg.AcceptMembershipChange)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.Persisted = p
		}
		if r, ok := running[name]; ok {
			b.Running, b.LeaseEnd = true, r.LeaseEnd
		}
		boots[name] = b
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.booted = true
	for _, name := range e.names {
		t := e.tickets[name]
		if boots[name].Persisted != nil {
			// What was read back is on disk already.
			t.version, t.durable = 1, 1
		}
		e.step(t, boots[name], now)
	}
	return nil
}

// splitmix derives a well-mixed seed (splitmix64).
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Receive feeds an authenticated peer message; false when its ticket is
// unknown here.
func (e *Engine) Receive(now time.Duration, m ticket.Message) bool {
	t := e.tickets[m.Ticket]
	if t == nil || !e.booted {
		return false
	}
	e.step(t, ticket.Receive{Msg: m}, now)
	return true
}

// Command feeds an operator's command; its Reply comes as an effect.
func (e *Engine) Command(now time.Duration, name string, c ticket.Command) error {
	t := e.tickets[name]
	if t == nil {
		return fmt.Errorf("%w: %q", ErrUnknownTicket, name)
	}
	e.step(t, c, now)
	return nil
}

// Done feeds the result of work a ticket asked for: HandlerDone,
// HandoverDone or Stopped.
func (e *Engine) Done(now time.Duration, name string, in ticket.Input) error {
	t := e.tickets[name]
	if t == nil {
		return fmt.Errorf("%w: %q", ErrUnknownTicket, name)
	}
	if s, ok := in.(ticket.Stopped); ok {
		delete(t.stops, s.Token)
	}
	e.step(t, in, now)
	return nil
}

// StopFailed reports that the shell gave up on a stop: it is escalated at
// once (if it was not already).
func (e *Engine) StopFailed(now time.Duration, name string, token uint64, why string) {
	t := e.tickets[name]
	if t == nil {
		return
	}
	if _, ok := t.stops[token]; ok {
		delete(t.stops, token)
		e.out.Escalations = append(e.out.Escalations, Escalation{Ticket: name, Token: token, Reason: why})
		e.schedule(name, t, now)
	}
}

// Overloaded reports that datagrams were dropped for want of room (the
// receive queue overflowed): elections of ours are paced down.
func (e *Engine) Overloaded(now time.Duration) { e.pace.dropped(now) }

// step feeds one input to a ticket and sorts out what it produced.
func (e *Engine) step(t *tk, in ticket.Input, now time.Duration) {
	// An election falling due beyond the pacing window waits its turn.
	t.st.Pace(!t.electing && !e.pace.free())
	st, msgs, effs := ticket.Step(t.st, in, now)
	t.st, t.stepped = st, now
	if !t.queued && t.st.AcquireDue(now) {
		t.queued = true
		e.queued = append(e.queued, t.cfg.Name)
		e.pace.deferred++
	}
	var later []ticket.Effect
	for _, ef := range effs {
		switch ef := ef.(type) {
		case ticket.Persist:
			t.version++
			e.markDirty(t)
		case ticket.StopResources:
			e.stop(t, ef, now)
		case ticket.Reply, ticket.Event:
			e.out.Effects = append(e.out.Effects, Effect{Ticket: t.cfg.Name, Effect: ef})
		default:
			later = append(later, ef)
		}
	}
	if len(msgs) > 0 || len(later) > 0 {
		if t.durable >= t.version {
			e.release(t, msgs, later)
		} else {
			t.held = append(t.held, held{version: t.version, at: now, msgs: msgs, effs: later})
		}
	}
	e.track(t, now)
	if !t.changed {
		t.changed = true
		e.changed = append(e.changed, t)
	}
	e.schedule(t.cfg.Name, t, now)
}

// markDirty lists a ticket whose state must be written.
func (e *Engine) markDirty(t *tk) {
	if !t.dirty {
		t.dirty = true
		e.dirty = append(e.dirty, t)
	}
}

// stop starts a stop at once, after dropping the ticket's starts and
// renewals that still wait for their state: the stop supersedes them.
func (e *Engine) stop(t *tk, s ticket.StopResources, now time.Duration) {
	for i := range t.held {
		kept := t.held[i].effs[:0]
		for _, ef := range t.held[i].effs {
			switch ef.(type) {
			case ticket.StartResources, ticket.LeaseRenewed:
			default:
				kept = append(kept, ef)
			}
		}
		t.held[i].effs = kept
	}
	t.stops[s.Token] = s.Deadline
	stop := Stop{Ticket: t.cfg.Name, Token: s.Token, Reason: s.Reason, Deadline: s.Deadline}
	if d := t.cfg.Mutations.StopLatency; d > 0 {
		t.delayed = append(t.delayed, delayedStop{at: now + d, stop: stop})
		return
	}
	e.out.Stops = append(e.out.Stops, stop)
}

// release hands durable outputs to the shell.
func (e *Engine) release(t *tk, msgs []ticket.Message, effs []ticket.Effect) {
	for _, ef := range effs {
		e.out.Effects = append(e.out.Effects, Effect{Ticket: t.cfg.Name, Effect: ef})
	}
	e.out.Send = append(e.out.Send, msgs...)
}

// aged returns messages that waited d for their state to be written, with
// the durations they carry (a lease's or a promise's remaining time, as of
// when they were made) shortened by that wait, so that no member trusts
// an owner, or waits on a promise, for longer than the sender meant.
func aged(msgs []ticket.Message, d time.Duration) []ticket.Message {
	for i := range msgs {
		if r := msgs[i].Remaining; r > 0 && r != ticket.Forever {
			msgs[i].Remaining = max(0, r-d)
		}
	}
	return msgs
}

// track follows whether an acquisition of ours (its handler, then its
// election) is under way, for pacing.
func (e *Engine) track(t *tk, now time.Duration) {
	electing := t.st.Acquiring()
	if electing == t.electing {
		return
	}
	t.electing = electing
	if electing {
		t.electStart = now
		e.pace.started()
		return
	}
	e.pace.ended(t.st.ElectionUnanswered(), t.electStart, now)
}

// Ready returns what to carry out and forgets it. now is when it is called
// (a write whose retry is due starts then).
func (e *Engine) Ready(now time.Duration) Ready {
	e.admit(now)
	if e.saving == nil {
		e.startSave(now)
	}
	for _, t := range e.changed {
		t.changed = false
		e.out.Changed = append(e.out.Changed, t.cfg.Name)
	}
	e.changed = e.changed[:0]
	rd := e.out
	e.out = Ready{}
	return rd
}

// startSave gathers the changed states not yet written into one write.
func (e *Engine) startSave(now time.Duration) {
	var recs []Record
	kept := e.dirty[:0]
	for _, t := range e.dirty {
		switch {
		case t.version <= t.durable:
			t.dirty = false
		case t.writing == 0 && (t.retryAt == 0 || now >= t.retryAt):
			t.writing = t.version
			t.dirty = false
			recs = append(recs, e.record(t))
		default:
			kept = append(kept, t)
		}
	}
	e.dirty = kept
	if len(recs) == 0 {
		return
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Ticket < recs[j].Ticket })
	e.saveID++
	e.saving = &Save{ID: e.saveID, Records: recs}
	e.out.Save = e.saving
}

// Saved reports how the write with this ID ended: the tickets in failed
// could not be written. The others' waiting outputs are released; the
// failed ones wait, and are written again after a backoff.
func (e *Engine) Saved(now time.Duration, id uint64, failed map[string]error) {
	if e.saving == nil || e.saving.ID != id {
		return
	}
	recs := e.saving.Records
	e.saving = nil
	for _, r := range recs {
		t := e.tickets[r.Ticket]
		v := t.writing
		t.writing = 0
		if failed[r.Ticket] != nil && !t.cfg.Mutations.IgnorePersistFailure {
			if t.failures == 0 {
				e.unsaved++
			}
			t.failures++
			t.retryAt = now + min(time.Second, 50*time.Millisecond<<min(t.failures-1, 5))
			e.markDirty(t)
			e.schedule(r.Ticket, t, now)
			continue
		}
		if t.failures > 0 {
			e.unsaved--
		}
		t.failures, t.retryAt = 0, 0
		t.durable = v
		if t.version > t.durable {
			e.markDirty(t)
		}
		n := 0
		for _, h := range t.held {
			if h.version > v {
				break
			}
			msgs := h.msgs
			if !t.cfg.Mutations.UnagedMessages {
				msgs = aged(msgs, now-h.at)
			}
			e.release(t, msgs, h.effs)
			n++
		}
		t.held = t.held[n:]
		e.schedule(r.Ticket, t, now)
	}
}

// Unsaved counts the tickets whose last write failed (they are silent
// until one succeeds).
func (e *Engine) Unsaved() int { return e.unsaved }

// View returns a ticket's view at now.
func (e *Engine) View(name string, now time.Duration) (ticket.View, bool) {
	t := e.tickets[name]
	if t == nil {
		return ticket.View{}, false
	}
	return t.st.View(now), true
}

// State returns a ticket's state (read only: the simulator checks it).
func (e *Engine) State(name string) *ticket.State {
	if t := e.tickets[name]; t != nil {
		return &t.st
	}
	return nil
}

// Names lists the tickets in name order.
func (e *Engine) Names() []string { return e.names }

// Stats are counters for metrics.
type Stats struct {
	Electing, Queued int
	Window           int
	Deferred         uint64
	Unsaved          int
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{Electing: e.pace.running, Queued: len(e.queued), Window: e.pace.limit(), Deferred: e.pace.deferred, Unsaved: e.Unsaved()}
}
