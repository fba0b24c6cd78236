package node

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/geobooth/geobooth/ticket"
)

// Event is one entry of the timeline (the API's type).
type Event = api.Event

// View is one ticket as this member sees it, for the API, ticketctl, the
// dashboard and DNS. Times are wall clock.
type View struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`
	Owner string `json:"owner"`
	Term  uint64 `json:"term"`
	// State: granted, lost, waiting, acquiring, revoked, never granted,
	// restarting, starting.
	State       string `json:"state"`
	HeldLocally bool   `json:"held_locally"`
	Managed     bool   `json:"managed"`
	Local       string `json:"local"`
	// Expires is when the owner's lease ends as this member sees it.
	Expires *time.Time `json:"expires,omitempty"`
	// SafeUntil is until when this member acts on Owner (its DNS answers
	// with it): the core's rule (ticket.View.SafeUntil). Absent for a
	// manual ticket (no end) and before an owner's renewal reached this
	// member.
	SafeUntil  *time.Time        `json:"safe_until,omitempty"`
	LastChange *time.Time        `json:"last_change,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Attrs      map[string]string `json:"attrs"`
	Expire     float64           `json:"expire_s"`
	// Standby: the ticket's resources are in standby in this site's CIB.
	Standby bool `json:"standby,omitempty"`
	// safeForever: Owner may be acted on with no end (a manual ticket).
	safeForever bool
}

// LeaseRemaining is how long the lease still runs at now (0 when there is
// no lease: no owner, or a manual ticket).
func (v View) LeaseRemaining(now time.Time) time.Duration {
	if v.Expires == nil {
		return 0
	}
	if d := v.Expires.Sub(now); d > 0 {
		return d
	}
	return 0
}

// publish refreshes the ticket's view after a step and tells observers
// when it changed.
func (n *Node) publish(name string, r *rt, now time.Duration) {
	tv, _ := n.eng.View(name, now)
	v := View{Name: name, Mode: tv.Mode.String(), Term: tv.Term, State: tv.State, HeldLocally: tv.HeldLocally,
		Managed: tv.Managed, Local: n.cfg.local(), Reason: tv.Reason, Attrs: map[string]string{},
		Expire: r.cfg.Expire.Seconds()}
	if tv.Owner != ticket.None {
		v.Owner = r.cl.Members[tv.Owner].Name
		if tv.Mode == ticket.Auto {
			exp := wallOf(n.clock, tv.Expires)
			v.Expires = &exp
		}
		switch {
		case tv.SafeUntil == ticket.Forever:
			v.safeForever = true
		case tv.SafeUntil > 0:
			su := wallOf(n.clock, tv.SafeUntil)
			v.SafeUntil = &su
		}
	}
	if tv.LastChange > 0 {
		lc := wallOf(n.clock, tv.LastChange)
		v.LastChange = &lc
	}
	for _, a := range tv.Attrs {
		v.Attrs[a.Name] = a.Value
	}
	if tv.Owner != r.owner {
		if r.owner != ticket.None && tv.Owner != ticket.None {
			n.met.failovers.WithLabelValues(name).Inc()
		}
		if tv.Owner != ticket.None {
			r.owner = tv.Owner
		}
	}
	held := 0.0
	if tv.HeldLocally {
		held = 1
	}
	r.held.Set(held)
	r.term.Set(float64(tv.Term))
	if tv.Mode == ticket.Manual && tv.Owner != ticket.None {
		r.leaseRemaining.Set(0)
	} else {
		r.leaseRemaining.Set(tv.LeaseRemaining.Seconds())
	}
	n.mu.Lock()
	old, had := n.views[name]
	n.views[name] = v
	n.mu.Unlock()
	if !had || old.Owner != v.Owner || old.Term != v.Term || old.State != v.State || old.HeldLocally != v.HeldLocally || !sameExpiry(old.Expires, v.Expires) {
		for _, fn := range n.observers {
			fn(v)
		}
	}
}

func sameExpiry(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// View returns the named ticket's current view.
func (n *Node) View(name string) View {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.local(n.views[name])
}

// Trusted returns the owner of the named ticket this member may act on
// (answer DNS with), and until when (the zero time: no end, a manual
// ticket); no owner when there is none to act on. The rule is the core's
// (ticket.View.SafeUntil); this only reads it.
func (n *Node) Trusted(name string) (string, time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v := n.views[name]
	switch {
	case v.Owner == "":
		return "", time.Time{}
	case v.safeForever:
		return v.Owner, time.Time{}
	case v.SafeUntil != nil:
		return v.Owner, *v.SafeUntil
	}
	return "", time.Time{}
}

// SetStandby records that the ticket's resources are in standby in this
// site's CIB (a planned move, or the operator's standby): a ticket held
// here then shows the state "standby".
func (n *Node) SetStandby(name string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.standby == nil {
		n.standby = map[string]bool{}
	}
	n.standby[name] = on
}

// local adds what only this site knows to a view (n.mu held).
func (n *Node) local(v View) View {
	if n.standby[v.Name] {
		v.Standby = true
		if v.HeldLocally {
			v.State = "standby"
		}
	}
	return v
}

// Views returns every ticket's view, in name order.
func (n *Node) Views() []View {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]View, 0, len(n.names))
	for _, name := range n.names {
		out = append(out, n.local(n.views[name]))
	}
	return out
}

// Note records an event the ticket engine does not see (a split brain of
// the ticket's data, a standby in the local CIB) in the timeline, the
// events metric and the log.
func (n *Node) Note(ticketName, kind, reason string) {
	n.met.events.WithLabelValues(ticketName, kind).Inc()
	n.events.add(Event{Time: n.clock.Wall(), Ticket: ticketName, Kind: kind, Reason: reason})
	if ticketName == "" {
		n.log.Info("event "+kind, "reason", reason)
		return
	}
	n.log.Warn("ticket "+kind, "ticket", ticketName, "reason", reason)
}

// eventRing keeps the most recent events, numbered, and wakes those who
// follow them.
type eventRing struct {
	mu      sync.Mutex
	buf     []Event
	next    int
	full    bool
	seq     uint64
	changed chan struct{} // closed at the next add
}

// newEventRing keeps n events; numbers start above what an earlier run
// of this member can have given (microseconds of the wall clock).
func newEventRing(n int, now time.Time) *eventRing {
	return &eventRing{buf: make([]Event, n), seq: uint64(now.UnixMicro()), changed: make(chan struct{})}
}

func (r *eventRing) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq = r.seq
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// list returns the events, newest first.
func (r *eventRing) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

func (r *eventRing) listLocked() []Event {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// since returns the events after seq, oldest first, whether some were
// already dropped from the ring (a gap), and a channel closed at the next
// event.
func (r *eventRing) since(seq uint64) ([]Event, bool, <-chan struct{}) {
	r.mu.Lock()
	all, changed := r.listLocked(), r.changed
	r.mu.Unlock()
	var out []Event
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Seq > seq {
			out = append(out, all[i])
		}
	}
	gap := len(out) > 0 && len(out) == len(all) && seq != 0 && out[0].Seq > seq+1
	return out, gap, changed
}

// EventsSince returns this member's events after seq, oldest first;
// gap says that events after seq were dropped (only the most recent are
// kept); changed is closed when the next event arrives.
func (n *Node) EventsSince(seq uint64) (events []Event, gap bool, changed <-chan struct{}) {
	return n.events.since(seq)
}

// Events returns the recent ticket events, newest first.
func (n *Node) Events() []Event { return n.events.list() }

// onEvent logs a ticket state change as one line and records it.
func (n *Node) onEvent(name string, r *rt, e ticket.Event) {
	owner := ""
	if e.Owner != ticket.None && e.Owner < len(r.cl.Members) {
		owner = r.cl.Members[e.Owner].Name
	}
	kind := e.Kind.String()
	n.met.events.WithLabelValues(name, kind).Inc()
	if e.Kind == ticket.EvLost && e.Owner == r.cl.Self {
		n.met.losses.WithLabelValues(name).Inc()
	}
	n.events.add(Event{Time: n.clock.Wall(), Ticket: name, Kind: kind, Term: e.Term, Owner: owner, Reason: e.Reason})
	level := slog.LevelInfo
	switch e.Kind {
	case ticket.EvLost, ticket.EvForced, ticket.EvHandlerFailed, ticket.EvYielded, ticket.EvMoveAborted:
		level = slog.LevelWarn
	}
	n.log.Log(context.Background(), level, "ticket "+kind, "ticket", name, "term", e.Term, "owner", owner, "reason", e.Reason)
}
