package pacemaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// escalate is called when a revoke failed after every retry and the
	// configured action is exit.
	escalate func(error)

	// mu serialises every CIB operation: a CIB file has no locking.
	mu sync.Mutex

	state      sync.Mutex
	deadman    map[string]*time.Timer
	standbyFor map[string]bool
}

// NewDriver wraps a CIB. escalate is called (from a driver goroutine) when
// a revoke cannot be done and on_revoke_failure is exit.
func NewDriver(cib CIB, cfg Config, local, cfgName string, log *slog.Logger, reg prometheus.Registerer, escalate func(error)) *Driver {
	return &Driver{cib: cib, cfg: cfg, local: local, cfgName: cfgName, log: log, met: newMetrics(reg),
		escalate: escalate, deadman: map[string]*time.Timer{}, standbyFor: map[string]bool{}}
}

// CallBudget is how long one operation may take with all its retries.
func (d *Driver) CallBudget() time.Duration {
	return time.Duration(d.cfg.Retries+1)*(d.cfg.Timeout.D()+retryPause) + time.Second
}

const retryPause = 200 * time.Millisecond

// do runs op under the lock with the per-call timeout, retrying.
func (d *Driver) do(ctx context.Context, op, ticket string, f func(ctx context.Context) error) error {
	var err error
	for attempt := 0; attempt <= d.cfg.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s %s: %w (last error: %v)", op, ticket, ctx.Err(), err)
			case <-time.After(retryPause):
			}
		}
		err = d.once(ctx, op, f)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNoPacemaker) {
			return err
		}
		d.log.Warn("CIB operation failed", "op", op, "ticket", ticket, "attempt", attempt+1, "of", d.cfg.Retries+1, "err", err)
	}
	return fmt.Errorf("%s %s: %w", op, ticket, err)
}

func (d *Driver) once(ctx context.Context, op string, f func(ctx context.Context) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout.D())
	defer cancel()
	start := time.Now()
	err := f(cctx)
	d.met.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
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
	if t := d.deadman[ticket]; t != nil {
		t.Stop()
		delete(d.deadman, ticket)
	}
	activate := d.standbyFor[ticket]
	d.state.Unlock()
	// A deadman revoke that fired before the Stop above holds the state
	// lock while it runs; it saw its entry gone and did nothing, or it
	// finished before we got the lock. Either way the grant comes last.
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

// Renewed records the renewed lease end (Booth rewrites the grant).
func (d *Driver) Renewed(ctx context.Context, ticket string, term uint64, expires time.Time) error {
	return d.do(ctx, "renew", ticket, func(ctx context.Context) error {
		return d.cib.Grant(ctx, ticket, Grant{Owner: d.local, Term: term, Expires: expires, CfgName: d.cfgName})
	})
}

// Revoke revokes the ticket in the CIB. A revoke that fails after every
// retry is escalated: it must never be ignored silently.
func (d *Driver) Revoke(ctx context.Context, ticket string) error {
	err := d.do(ctx, "revoke", ticket, func(ctx context.Context) error {
		return d.cib.Revoke(ctx, ticket, Revoke{CfgName: d.cfgName})
	})
	if err == nil {
		d.met.granted.WithLabelValues(ticket).Set(0)
		d.log.Info("ticket revoked in the CIB", "ticket", ticket)
		return nil
	}
	if errors.Is(err, ErrNoPacemaker) {
		return nil
	}
	d.met.escalations.Inc()
	if d.cfg.OnRevokeFailure == "exit" && d.escalate != nil {
		d.log.Error("cannot revoke the ticket in the local CIB: escalating (the daemon exits so the local cluster recovers or fences this node)", "ticket", ticket, "err", err)
		d.escalate(err)
	} else {
		d.log.Error("cannot revoke the ticket in the local CIB: resources may still run here; the lease ends regardless", "ticket", ticket, "err", err)
	}
	return err
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

// Reconcile reads the ticket from the CIB and acts on what Reconcile
// decides: revoke now, or at the end of a lease of ours from before a
// restart unless the site is granted the ticket again before.
func (d *Driver) Reconcile(ctx context.Context, ticket, clusterOwner string) error {
	st, err := d.State(ctx, ticket)
	if err != nil {
		return err
	}
	if st.Granted {
		d.met.granted.WithLabelValues(ticket).Set(1)
	}
	action, at, why := Reconcile(st, d.local, clusterOwner, time.Now())
	switch action {
	case RevokeNow:
		d.log.Warn("reconciling the CIB: revoking", "ticket", ticket, "reason", why)
		return d.Revoke(ctx, ticket)
	case RevokeAt:
		d.log.Info("reconciling the CIB: will revoke when the old lease ends unless re-acquired", "ticket", ticket, "reason", why)
		d.state.Lock()
		if t := d.deadman[ticket]; t != nil {
			t.Stop()
		}
		var timer *time.Timer
		timer = time.AfterFunc(time.Until(at), func() {
			// Hold the state lock through the revoke: a Grant that comes
			// meanwhile waits for it, so it cannot be undone by it.
			d.state.Lock()
			defer d.state.Unlock()
			if d.deadman[ticket] != timer {
				return
			}
			delete(d.deadman, ticket)
			rctx, cancel := context.WithTimeout(context.Background(), d.CallBudget())
			defer cancel()
			d.log.Warn("old lease ended without the ticket being acquired again: revoking", "ticket", ticket)
			d.Revoke(rctx, ticket)
		})
		d.deadman[ticket] = timer
		d.state.Unlock()
	}
	return nil
}
