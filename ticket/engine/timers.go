package engine

import (
	"container/heap"
	"slices"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// The tickets' timers: a min-heap of (instant, ticket), so the engine
// wakes for the earliest and ticks only the tickets that are due; a
// ticket's next instant changes only when it is stepped. Entries left
// behind by a ticket whose next instant moved are skipped when they
// surface.

type timerEntry struct {
	at   time.Duration
	name string
}

type timerHeap []timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].name < h[j].name
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// due returns when the ticket next needs the engine: a timer of its state
// machine, a write to try again, a stop's deadline, a held-back stop.
func (t *tk) due(now time.Duration) (time.Duration, bool) {
	// The state machine's timers count from when it was last stepped: one
	// may have fallen due since (a write reported meanwhile does not step
	// it), and must still fire.
	at, ok := t.st.NextTimer(t.stepped)
	set := func(x time.Duration) {
		if !ok || x < at {
			at, ok = x, true
		}
	}
	if t.retryAt > now && t.version > t.durable && t.writing == 0 {
		// (A retry already due waits for Ready, which starts it.)
		set(t.retryAt)
	}
	for _, d := range t.stops {
		if d > 0 {
			set(d)
		}
	}
	for _, d := range t.delayed {
		set(d.at)
	}
	return at, ok
}

// schedule records when the ticket is next due.
func (e *Engine) schedule(name string, t *tk, now time.Duration) {
	at, ok := t.due(now)
	if !ok {
		t.next = 0
		return
	}
	if at != t.next {
		t.next = at
		heap.Push(&e.timers, timerEntry{at: at, name: name})
	}
}

// dropStale removes entries of tickets whose next instant moved.
func (e *Engine) dropStale() {
	for e.timers.Len() > 0 && e.tickets[e.timers[0].name].next != e.timers[0].at {
		heap.Pop(&e.timers)
	}
}

// NextWake returns when the shell should call Tick next: the earliest due
// ticket, rounded up to a multiple of the slack, so that with thousands of
// tickets each due at its own instant the engine wakes a few hundred times
// a second for all of them instead of once for every one. The tickets
// brought their owner's stop forward by the slack, so a late tick is still
// in time. ok is false when nothing is due.
func (e *Engine) NextWake() (time.Duration, bool) {
	e.dropStale()
	if e.timers.Len() == 0 {
		return 0, false
	}
	next := e.timers[0].at
	if e.slack > 0 {
		next = (next + e.slack - 1) / e.slack * e.slack
	}
	return next, true
}

// Tick lets every due ticket's timers fire: stops past their deadline are
// escalated, held-back stops leave, and due tickets are stepped, except
// that an election due beyond the pacing window waits in the queue.
func (e *Engine) Tick(now time.Duration) {
	if !e.booted {
		return
	}
	for {
		e.dropStale()
		if e.timers.Len() == 0 || e.timers[0].at > now {
			return
		}
		name := heap.Pop(&e.timers).(timerEntry).name
		t := e.tickets[name]
		t.next = 0
		e.expireStops(t, now)
		e.step(t, ticket.Tick{}, now)
	}
}

// expireStops escalates the ticket's stops past their deadline and lets
// held-back stops leave.
func (e *Engine) expireStops(t *tk, now time.Duration) {
	var late []uint64
	for tok, d := range t.stops {
		if d > 0 && now >= d {
			late = append(late, tok)
		}
	}
	slices.Sort(late)
	for _, tok := range late {
		delete(t.stops, tok)
		e.out.Escalations = append(e.out.Escalations, Escalation{Ticket: t.cfg.Name, Token: tok,
			Reason: "the resources were not reported stopped by the end of the lease they ran under"})
	}
	kept := t.delayed[:0]
	for _, d := range t.delayed {
		if now >= d.at {
			e.out.Stops = append(e.out.Stops, d.stop)
		} else {
			kept = append(kept, d)
		}
	}
	t.delayed = kept
}

// admit starts queued elections while the window has room. A queued
// ticket that no longer needs one (it heard of an owner) leaves the queue.
func (e *Engine) admit(now time.Duration) {
	for len(e.queued) > 0 && e.pace.free() {
		name := e.queued[0]
		e.queued = e.queued[1:]
		t := e.tickets[name]
		t.queued = false
		e.step(t, ticket.Tick{}, now)
	}
}
