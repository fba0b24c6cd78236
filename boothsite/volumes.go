package boothsite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/booth"
	"github.com/geobooth/geobooth/replication"
)

// Volumes are a Booth site's replicas; they follow its tickets as the
// Booth engine holds them (a booth.Guard):
//
//   - a ticket's lease bounds its volumes' writes at once, and its end
//     stops them (Lease);
//   - the volumes are promoted before the CIB is written granted, and
//     demoted before it is written revoked (Acquire, Release);
//   - a site whose replica holds bad data fails the ticket's
//     before-acquire check, so it does not start to lead, and a leader
//     steps down at its next renewal (Check).
type Volumes struct {
	list     []*replication.Volume
	byTicket map[string][]*replication.Volume
	log      *slog.Logger

	// drain bounds each volume's drain at a release (its drain_timeout).
	drain map[*replication.Volume]time.Duration

	mu sync.Mutex
	// failed: the ticket's last promotion failed, and why.
	failed map[string]error
	// leaseEnd: the end of the ticket's last lease held here.
	leaseEnd map[string]time.Time
}

var _ booth.Guard = (*Volumes)(nil)

// Open opens the file's volumes; note puts a volume's events (split
// brains, discarded writes) in the ticket's timeline.
func Open(f *File, log *slog.Logger, reg prometheus.Registerer, note func(ticket, kind, detail string)) (*Volumes, error) {
	vs := &Volumes{byTicket: map[string][]*replication.Volume{}, log: log, failed: map[string]error{},
		drain: map[*replication.Volume]time.Duration{}, leaseEnd: map[string]time.Time{}}
	for _, vc := range f.Volumes {
		ticketName := vc.Ticket
		opts := replication.Options{Config: vc, Self: f.Self, Key: f.Key, Log: log, Registry: reg,
			Events: func(kind, detail string) { note(ticketName, kind, detail) }}
		if f.Source != nil {
			opts.TLS = f.Source
		}
		v, err := replication.Open(opts)
		if err != nil {
			vs.Close()
			return nil, fmt.Errorf("open volume %q: %w", vc.Name, err)
		}
		vs.list = append(vs.list, v)
		vs.drain[v] = time.Duration(vc.DrainTimeout)
		vs.byTicket[vc.Ticket] = append(vs.byTicket[vc.Ticket], v)
		log.Info("volume opened", "volume", vc.Name, "ticket", vc.Ticket, "disk", v.Disk(), "size", v.Size(), "direct_io", v.DirectIO(), "nbd", vc.NBDListen)
	}
	return vs, nil
}

// Tickets are the tickets with volumes.
func (vs *Volumes) Tickets() []string {
	out := make([]string, 0, len(vs.byTicket))
	for t := range vs.byTicket {
		out = append(out, t)
	}
	return out
}

// List is every volume, in the file's order.
func (vs *Volumes) List() []*replication.Volume { return vs.list }

// Start binds the volumes' replication listeners and connects to the
// peers, until ctx ends.
func (vs *Volumes) Start(ctx context.Context) error {
	for _, v := range vs.list {
		if err := v.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close demotes and closes every volume.
func (vs *Volumes) Close() error {
	var errs []error
	for _, v := range vs.list {
		errs = append(errs, v.Close())
	}
	return errors.Join(errs...)
}

// Check: this site may lead the ticket only with good data in each of its
// volumes (UpToDate or Consistent), as a geobooth site acquires, and
// after a promotion that did not fail.
func (vs *Volumes) Check(ticket string) error {
	vs.mu.Lock()
	err := vs.failed[ticket]
	vs.mu.Unlock()
	if err != nil {
		return err
	}
	for _, v := range vs.byTicket[ticket] {
		switch d := v.Disk(); d {
		case replication.UpToDate, replication.Consistent:
		default:
			return fmt.Errorf("volume %q holds %s data here", v.Name(), d)
		}
	}
	return nil
}

// Lease bounds the ticket's volumes' writes to the lease; when it is not
// held here, they stop at once (a primary demotes in Release).
func (vs *Volumes) Lease(ticket string, held bool, expires time.Time) {
	if held {
		vs.mu.Lock()
		vs.leaseEnd[ticket] = expires
		vs.mu.Unlock()
	} else {
		expires = time.Now()
	}
	for _, v := range vs.byTicket[ticket] {
		v.SetWriteDeadline(expires)
	}
}

// promoteRetry is how often Acquire tries again while a peer still shows
// itself primary (its demotion on its way after a revoke), for at most
// promoteWait: the peer demoted before its revoke was sent, and only its
// word of it can still be on the way.
const (
	promoteRetry = 200 * time.Millisecond
	promoteWait  = 10 * time.Second
)

// Acquire promotes the ticket's volumes under the lease. A replica with
// bad data is not promoted; a peer still primary (it is demoting after a
// revoke) is waited for, a while. On a failure, the volumes
// promoted are demoted again.
func (vs *Volumes) Acquire(ctx context.Context, ticket string, expires time.Time) error {
	err := vs.promote(ctx, ticket, expires)
	vs.mu.Lock()
	vs.failed[ticket] = err
	vs.mu.Unlock()
	return err
}

func (vs *Volumes) promote(ctx context.Context, ticket string, expires time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, promoteWait)
	defer cancel()
	for i, v := range vs.byTicket[ticket] {
		v.SetWriteDeadline(expires)
		err := v.Promote(ctx, false)
		for err != nil && !errors.Is(err, replication.ErrNotUpToDate) && !errors.Is(err, replication.ErrClosed) {
			select {
			case <-ctx.Done():
			case <-time.After(promoteRetry):
				err = v.Promote(ctx, false)
				continue
			}
			break
		}
		if err != nil {
			err = fmt.Errorf("promote volume %q: %w", v.Name(), err)
			vs.log.Error("the ticket's data cannot be served here: the CIB is not granted, and the ticket's check fails at the next renewal", "ticket", ticket, "err", err)
			for _, done := range vs.byTicket[ticket][:i] {
				if derr := done.Demote(ctx); derr != nil {
					vs.log.Error("demote after a failed promotion", "volume", done.Name(), "err", derr)
				}
			}
			return err
		}
	}
	return nil
}

// connected: every peer of v is connected (a drain waits for no other).
func connected(v *replication.Volume) bool {
	for _, p := range v.Status().Peers {
		if !p.Connected {
			return false
		}
	}
	return true
}

// releaseMargin is the part of a lease a release's drain leaves for the
// CIB's revoke.
const releaseMargin = time.Second

// Release demotes the ticket's volumes. While the lease held here has
// time left (a revoke, a step-down), each volume whose peers are all
// connected first drains: they get every write it acknowledged, within
// its drain_timeout and the lease less releaseMargin; then, or at once
// when the lease is over or a peer is away, it is demoted. A failed promotion is forgotten: the next time this site
// leads, it tries again.
func (vs *Volumes) Release(ctx context.Context, ticket string) error {
	vs.mu.Lock()
	delete(vs.failed, ticket)
	end := vs.leaseEnd[ticket]
	delete(vs.leaseEnd, ticket)
	vs.mu.Unlock()
	var errs []error
	for _, v := range vs.byTicket[ticket] {
		left := time.Duration(0)
		if !end.IsZero() {
			left = time.Until(end) - releaseMargin
		}
		if budget := min(left, vs.drain[v]); budget > 0 && v.Role() == replication.Primary && connected(v) {
			dctx, cancel := context.WithTimeout(ctx, budget)
			err := v.Handover(dctx)
			cancel()
			if err == nil {
				continue
			}
			vs.log.Warn("the volume could not drain to its peers before the lease ends: demoted with writes they lack", "ticket", ticket, "volume", v.Name(), "err", err)
		}
		if err := v.Demote(ctx); err != nil {
			errs = append(errs, fmt.Errorf("demote volume %q: %w", v.Name(), err))
		}
	}
	return errors.Join(errs...)
}
