package pacemaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Driver runs a site's CIB operations: one at a time, each time-limited,
// retried, logged and counted. It is what the ticket runtime calls to
// start (grant) and stop (revoke) a site's resources.
type Driver struct {
	cib     CIB
	cfg     Config
	local   string
	cfgName string
	log     *slog.Logger
	met     *metrics
	// escalate is called when a stop is escalated and the configured
	// action is exit.
	escalate func(error)

	// lock serialises the operations on a CIB file (it has no locking;
	// the live CIB serialises updates itself), revokes first.
	lock cibLock

	state      sync.Mutex
	standbyFor map[string]bool

	clock Clock
}

// NewDriver wraps a CIB. escalate is called when a stop is escalated and
// on_revoke_failure is exit.
func NewDriver(cib CIB, cfg Config, local, cfgName string, log *slog.Logger, reg prometheus.Registerer, escalate func(error)) *Driver {
	d := &Driver{cib: cib, cfg: cfg, local: local, cfgName: cfgName, log: log, met: newMetrics(reg),
		escalate: escalate, standbyFor: map[string]bool{}, clock: realClock{}}
	d.lock.cond = sync.NewCond(&d.lock.mu)
	d.lock.serial = cfg.CIBFile != ""
	d.lock.gauge = d.met.waiting
	return d
}

// cibLock lets one CIB operation run at a time when serial, an urgent one
// (a revoke) before any other that waits.
type cibLock struct {
	serial bool
	mu     sync.Mutex
	cond   *sync.Cond
	busy   bool
	// urgent and waiting count the operations waiting (urgent: revokes).
	urgent, waiting int
	gauge           prometheus.Gauge
}

func (l *cibLock) acquire(urgent bool) {
	if !l.serial {
		return
	}
	l.mu.Lock()
	if urgent {
		l.urgent++
	}
	l.waiting++
	l.gauge.Set(float64(l.waiting))
	for l.busy || !urgent && l.urgent > 0 {
		l.cond.Wait()
	}
	if urgent {
		l.urgent--
	}
	l.waiting--
	l.gauge.Set(float64(l.waiting))
	l.busy = true
	l.mu.Unlock()
}

// queued returns how many operations wait, and whether one runs.
func (l *cibLock) queued() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting, l.busy
}

func (l *cibLock) release() {
	if !l.serial {
		return
	}
	l.mu.Lock()
	l.busy = false
	l.cond.Broadcast()
	l.mu.Unlock()
}

// CallBudget is how long one operation may take with all its retries.
func (d *Driver) CallBudget() time.Duration {
	return time.Duration(d.cfg.Retries+1)*(d.cfg.Timeout.D()+retryPause) + time.Second
}

const retryPause = 200 * time.Millisecond

// do runs op under the lock with the per-call timeout, retrying.
func (d *Driver) do(ctx context.Context, op, ticket string, f func(ctx context.Context) error) error {
	return d.attempts(ctx, op, ticket, d.cfg.Retries, f)
}

func (d *Driver) attempts(ctx context.Context, op, ticket string, retries int, f func(ctx context.Context) error) error {
	var err error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s %s: %w (last error: %v)", op, ticket, ctx.Err(), err)
			case <-d.clock.After(retryPause):
			}
		}
		err = d.once(ctx, op, f)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNoPacemaker) {
			return err
		}
		d.log.Warn("CIB operation failed", "op", op, "ticket", ticket, "attempt", attempt+1, "of", retries+1, "err", err)
	}
	return fmt.Errorf("%s %s: %w", op, ticket, err)
}

func (d *Driver) once(ctx context.Context, op string, f func(ctx context.Context) error) error {
	d.lock.acquire(op == "revoke")
	defer d.lock.release()
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := d.clock.WithTimeout(ctx, d.cfg.Timeout.D())
	defer cancel()
	start := d.clock.Now()
	err := f(cctx)
	d.met.seconds.WithLabelValues(op).Observe(d.clock.Now().Sub(start).Seconds())
	switch {
	case err == nil:
		d.met.calls.WithLabelValues(op, "ok").Inc()
		d.met.lastOK.SetToCurrentTime()
	case cctx.Err() != nil:
		d.met.calls.WithLabelValues(op, "timeout").Inc()
		err = fmt.Errorf("no answer within %v: %w", d.cfg.Timeout.D(), err)
	default:
		d.met.calls.WithLabelValues(op, "error").Inc()
	}
	return err
}

// GrantTicket grants the ticket in the CIB for this site (term, lease end).
func (d *Driver) GrantTicket(ctx context.Context, ticket string, term uint64, expires time.Time) error {
	d.state.Lock()
	activate := d.standbyFor[ticket]
	d.state.Unlock()
	err := d.do(ctx, "grant", ticket, func(ctx context.Context) error {
		return d.cib.Grant(ctx, ticket, Grant{Owner: d.local, Term: term, Expires: expires, CfgName: d.cfgName, Activate: activate})
	})
	if err == nil {
		d.met.granted.WithLabelValues(ticket).Set(1)
		d.state.Lock()
		delete(d.standbyFor, ticket)
		d.state.Unlock()
		d.log.Info("ticket granted in the CIB", "ticket", ticket, "term", term, "expires", expires.Format(time.RFC3339))
	}
	return err
}

// Renewed records the renewed lease end (Booth rewrites the grant). It is
// tried once: the next renewal comes soon, and a stop must not wait behind
// retries.
func (d *Driver) Renewed(ctx context.Context, ticket string, term uint64, expires time.Time) error {
	return d.attempts(ctx, "renew", ticket, 0, func(ctx context.Context) error {
		return d.cib.Grant(ctx, ticket, Grant{Owner: d.local, Term: term, Expires: expires, CfgName: d.cfgName})
	})
}

// Revoke revokes the ticket in the CIB, before any other operation that
// waits, retrying within ctx.
func (d *Driver) Revoke(ctx context.Context, ticket string) error {
	err := d.do(ctx, "revoke", ticket, func(ctx context.Context) error {
		return d.cib.Revoke(ctx, ticket, Revoke{CfgName: d.cfgName})
	})
	if err == nil || errors.Is(err, ErrNoPacemaker) {
		d.met.granted.WithLabelValues(ticket).Set(0)
		d.log.Info("ticket revoked in the CIB", "ticket", ticket)
		return nil
	}
	return err
}

// stoppedPoll is how often WaitStopped asks the cluster.
const stoppedPoll = 200 * time.Millisecond

// WaitStopped returns once the resources the ticket guards are stopped as
// the cluster sees them (crm_mon), or an error naming what still runs when
// ctx ends first.
func (d *Driver) WaitStopped(ctx context.Context, ticket string) error {
	var last error
	for {
		running, err := d.cib.Running(ctx, ticket)
		switch {
		case err == nil && len(running) == 0:
			return nil
		case err == nil:
			last = fmt.Errorf("still running: %s", strings.Join(running, ", "))
		case ctx.Err() == nil:
			last = err
			d.log.Warn("cannot tell whether the ticket's resources are stopped", "ticket", ticket, "err", err)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("resources of %s not stopped: %w", ticket, last)
		}
		select {
		case <-ctx.Done():
		case <-d.clock.After(stoppedPoll):
		}
	}
}

// Escalate applies on_revoke_failure to a stop that was not done by the
// end of the lease it ran under: exit (the daemon exits, so the local
// cluster recovers or fences this node) or log.
func (d *Driver) Escalate(ticket, reason string) {
	d.met.escalations.Inc()
	err := fmt.Errorf("ticket %s: %s", ticket, reason)
	if d.cfg.OnRevokeFailure == "exit" && d.escalate != nil {
		d.log.Error("the ticket's resources may still run after its lease: escalating (the daemon exits so the local cluster recovers or fences this node)", "ticket", ticket, "reason", reason)
		d.escalate(err)
		return
	}
	d.log.Error("the ticket's resources may still run after its lease (on_revoke_failure = log)", "ticket", ticket, "reason", reason)
}

// PrepareHandover puts the ticket in standby before a planned move, so its
// resources stop cleanly (Booth's advice) before it is revoked; the next
// grant here activates it again.
func (d *Driver) PrepareHandover(ctx context.Context, ticket, to string) error {
	if err := d.Standby(ctx, ticket); err != nil {
		if errors.Is(err, ErrNoPacemaker) {
			return nil
		}
		return err
	}
	d.state.Lock()
	d.standbyFor[ticket] = true
	d.state.Unlock()
	return nil
}

// AbortHandover undoes PrepareHandover when the move cannot go on (the
// data could not be drained): the ticket stays here and its resources are
// activated again.
func (d *Driver) AbortHandover(ctx context.Context, ticket string) error {
	d.state.Lock()
	was := d.standbyFor[ticket]
	delete(d.standbyFor, ticket)
	d.state.Unlock()
	if !was {
		return nil
	}
	return d.Activate(ctx, ticket)
}

// Standby puts the ticket in standby in the local CIB.
func (d *Driver) Standby(ctx context.Context, ticket string) error {
	return d.do(ctx, "standby", ticket, func(ctx context.Context) error { return d.cib.Standby(ctx, ticket) })
}

// Activate ends a standby in the local CIB.
func (d *Driver) Activate(ctx context.Context, ticket string) error {
	return d.do(ctx, "activate", ticket, func(ctx context.Context) error { return d.cib.Activate(ctx, ticket) })
}

// State reads the ticket from the local CIB.
func (d *Driver) State(ctx context.Context, ticket string) (TicketState, error) {
	var st TicketState
	err := d.do(ctx, "read", ticket, func(ctx context.Context) error {
		var err error
		st, err = d.cib.State(ctx, ticket)
		return err
	})
	return st, err
}

// SetAttr sets a ticket attribute in the local CIB.
func (d *Driver) SetAttr(ctx context.Context, ticket, name, value string) error {
	return d.do(ctx, "set-attr", ticket, func(ctx context.Context) error { return d.cib.SetAttr(ctx, ticket, name, value) })
}

// DeleteAttr deletes a ticket attribute in the local CIB.
func (d *Driver) DeleteAttr(ctx context.Context, ticket, name string) error {
	return d.do(ctx, "delete-attr", ticket, func(ctx context.Context) error { return d.cib.DeleteAttr(ctx, ticket, name) })
}
