package node

import (
	"container/heap"
	"time"
)

// The tickets' timers: a min-heap of (instant, ticket), so the loop wakes
// for the earliest and ticks only the tickets that are due; a ticket's
// next instant changes only when it is stepped. Entries left behind by a
// ticket whose next instant moved are skipped when they surface.

type timerEntry struct {
	at   time.Duration
	name string
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// schedule records when the ticket next needs a tick.
func (n *Node) schedule(name string, r *rt, now time.Duration) {
	at, ok := r.st.NextTimer(now)
	if !ok {
		r.next = 0
		return
	}
	if at != r.next {
		r.next = at
		heap.Push(&n.timers, timerEntry{at: at, name: name})
	}
}

// dropStale removes entries of tickets whose next instant moved.
func (n *Node) dropStale() {
	for n.timers.Len() > 0 && n.tickets[n.timers[0].name].next != n.timers[0].at {
		heap.Pop(&n.timers)
	}
}

// resetTimer arms t for the earliest due ticket (at most an hour away),
// rounded up to a multiple of the slack: with thousands of tickets each
// due at its own instant, the loop then wakes a few hundred times a second
// for all of them instead of once for every one. The tickets have brought
// their owner's stop forward by the slack, so a late tick is still in time.
func (n *Node) resetTimer(t *time.Timer) {
	now := n.clock.Mono()
	n.dropStale()
	next := now + time.Hour
	if n.timers.Len() > 0 {
		next = n.timers[0].at
		if n.slack > 0 {
			next = (next + n.slack - 1) / n.slack * n.slack
		}
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(max(0, next-now))
}

// due pops the tickets whose instant has come.
func (n *Node) due() []string {
	now := n.clock.Mono()
	var names []string
	for {
		n.dropStale()
		if n.timers.Len() == 0 || n.timers[0].at > now {
			return names
		}
		e := heap.Pop(&n.timers).(timerEntry)
		n.tickets[e.name].next = 0
		names = append(names, e.name)
	}
}
