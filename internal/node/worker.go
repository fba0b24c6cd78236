package node

import (
	"context"
	"sync"
	"time"

	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// A ticket's worker makes its resource calls one at a time, in the order
// the engine asked, except that a stop goes first: it drops the grants and
// renewals still queued (the stop supersedes them) and cancels a renewal
// under way. The loop hands work over without ever waiting.
type worker struct {
	mu      sync.Mutex
	queue   []job
	cancel  context.CancelFunc // of the job under way, if it may be cut short
	current jobKind
	wake    chan struct{}
}

type jobKind uint8

const (
	noJob jobKind = iota
	grantJob
	renewJob
	stopJob
)

type job struct {
	kind     jobKind
	grant    Grant
	term     uint64
	expires  time.Time
	stop     engine.Stop
	deadline time.Time
}

func newWorker() *worker { return &worker{wake: make(chan struct{}, 1)} }

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) grant(g Grant) {
	w.mu.Lock()
	w.queue = append(w.queue, job{kind: grantJob, grant: g})
	w.mu.Unlock()
	w.signal()
}

// renew queues a renewal; one already queued is replaced (only the last
// lease end matters).
func (w *worker) renew(term uint64, expires time.Time) {
	w.mu.Lock()
	j := job{kind: renewJob, term: term, expires: expires}
	replaced := false
	for i := range w.queue {
		if w.queue[i].kind == renewJob {
			w.queue[i], replaced = j, true
		}
	}
	if !replaced {
		w.queue = append(w.queue, j)
	}
	w.mu.Unlock()
	w.signal()
}

// stop puts a stop first: queued grants and renewals are dropped, a
// renewal or grant under way is cancelled (the stop revokes after it).
func (w *worker) stop(s engine.Stop, deadline time.Time) {
	w.mu.Lock()
	kept := []job{{kind: stopJob, stop: s, deadline: deadline}}
	for _, j := range w.queue {
		if j.kind == stopJob {
			kept = append(kept, j)
		}
	}
	w.queue = kept
	if w.cancel != nil && w.current != stopJob {
		w.cancel()
	}
	w.mu.Unlock()
	w.signal()
}

// next takes the first job; false when there is none.
func (w *worker) next(ctx context.Context, resourceTimeout time.Duration) (job, context.Context, context.CancelFunc, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return job{}, nil, nil, false
	}
	j := w.queue[0]
	w.queue = w.queue[1:]
	var jctx context.Context
	var cancel context.CancelFunc
	if j.kind == stopJob && !j.deadline.IsZero() {
		jctx, cancel = context.WithDeadline(ctx, j.deadline)
	} else {
		jctx, cancel = context.WithTimeout(ctx, resourceTimeout)
	}
	w.cancel, w.current = cancel, j.kind
	return j, jctx, cancel, true
}

func (w *worker) finished() {
	w.mu.Lock()
	w.cancel, w.current = nil, noJob
	w.mu.Unlock()
}

// runWorker runs the ticket's jobs until ctx ends.
func (n *Node) runWorker(ctx context.Context, name string, r *rt) {
	w := r.worker
	for {
		j, jctx, cancel, ok := w.next(ctx, n.opt.ResourceTimeout)
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		n.runJob(jctx, name, j)
		cancel()
		w.finished()
	}
}

func (n *Node) runJob(ctx context.Context, name string, j job) {
	res := n.opt.Resources
	switch j.kind {
	case grantJob:
		if res == nil {
			return
		}
		if err := res.Grant(ctx, name, j.grant); err != nil {
			n.met.resourceErrors.WithLabelValues(name, "grant").Inc()
			n.log.Error("granting the ticket locally failed", "ticket", name, "term", j.grant.Term, "err", err)
		}
	case renewJob:
		if res == nil {
			return
		}
		if err := res.Renewed(ctx, name, j.term, j.expires); err != nil {
			n.met.resourceErrors.WithLabelValues(name, "renew").Inc()
			n.log.Warn("recording the renewed lease locally failed", "ticket", name, "err", err)
		}
	case stopJob:
		tok := j.stop.Token
		if res != nil {
			if err := res.Stop(ctx, name); err != nil {
				n.met.resourceErrors.WithLabelValues(name, "stop").Inc()
				n.log.Error("stopping the ticket's resources failed", "ticket", name, "reason", j.stop.Reason, "err", err)
				n.input(func(now time.Duration) { n.eng.StopFailed(now, name, tok, err.Error()) })
				return
			}
		}
		n.doneWith(name, ticket.Stopped{Token: tok})
	}
}
