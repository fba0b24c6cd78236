package site

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/pacemaker"
	"github.com/geobooth/geobooth/replication"
	"github.com/geobooth/geobooth/ticket"
)

// resources is what a ticket guards at a site: its replicated volumes and
// its Pacemaker resources. The data comes first: a volume is promoted
// before the services start and demoted as soon as the ticket goes; a
// planned move stops the services, then drains the data to the peers.
type resources struct {
	cib     *pacemaker.Driver
	volumes map[string][]*replication.Volume // by ticket
	drain   map[string]time.Duration         // by volume
	node    *node.Node
	log     *slog.Logger

	// replicas are the other sites' replica reports (nil without serf);
	// renewal is each ticket's renewal period.
	replicas *replicaViews
	renewal  map[string]time.Duration

	mu    sync.Mutex
	lease map[string]time.Time // by ticket: the lease end the volumes run under
}

func (r *resources) setLease(t string, end time.Time) {
	r.mu.Lock()
	r.lease[t] = end
	r.mu.Unlock()
	for _, v := range r.volumes[t] {
		v.SetWriteDeadline(end)
	}
}

// note puts an event in the node's timeline.
func (r *resources) note(t, kind, detail string) { r.node.Note(t, kind, detail) }

// standby shows the ticket's CIB standby in the node's view.
func (r *resources) standby(t string, on bool) { r.node.SetStandby(t, on) }

func (r *resources) leaseEnd(t string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease[t]
}

var (
	_ node.Resources = (*resources)(nil)
	_ node.Handover  = (*resources)(nil)
)

// Grant promotes the ticket's volumes (refused unless the data is good or
// the grant was forced), bounds their writes to the lease, then grants the
// ticket in the CIB. A volume that cannot be promoted gives the ticket up:
// another site may have good data.
func (r *resources) Grant(ctx context.Context, t string, g node.Grant) error {
	r.setLease(t, g.Expires)
	for _, v := range r.volumes[t] {
		if err := v.Promote(ctx, g.Forced); err != nil {
			err = fmt.Errorf("promote volume %q: %w", v.Name(), err)
			r.log.Error("the ticket's data cannot be served here: giving the ticket up", "ticket", t, "volume", v.Name(), "err", err)
			r.demote(ctx, t)
			r.node.Release(t, err.Error())
			return err
		}
	}
	r.standby(t, false) // a grant activates the ticket again
	return r.cib.GrantTicket(ctx, t, g.Term, g.Expires)
}

// Renewed moves the volumes' write deadline to the new lease end.
func (r *resources) Renewed(ctx context.Context, t string, term uint64, expires time.Time) error {
	r.setLease(t, expires)
	return r.cib.Renewed(ctx, t, term, expires)
}

// Stop fences the volumes' writes and stops their exports, revokes the
// ticket in the CIB, and waits until the cluster shows what the ticket
// guards stopped.
func (r *resources) Stop(ctx context.Context, t string) error {
	r.standby(t, false)
	err := errors.Join(r.demote(ctx, t), r.cib.Revoke(ctx, t))
	if err != nil {
		return err
	}
	return r.cib.WaitStopped(ctx, t)
}

// Escalate applies on_revoke_failure.
func (r *resources) Escalate(t, reason string) { r.cib.Escalate(t, reason) }

func (r *resources) demote(ctx context.Context, t string) error {
	var errs []error
	for _, v := range r.volumes[t] {
		if err := v.Demote(ctx); err != nil {
			errs = append(errs, fmt.Errorf("demote volume %q: %w", v.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// PrepareHandover readies a planned move: the services stop (standby),
// then each volume stops taking writes, flushes, and waits until every
// peer acknowledged every epoch, and becomes secondary, so the new owner
// promotes with nothing missing. If a drain does not finish within the
// volume's drain_timeout the move aborts: the volumes stay primary, the
// services are activated again, and this site keeps the ticket.
func (r *resources) PrepareHandover(ctx context.Context, t, to string) error {
	if err := r.cib.PrepareHandover(ctx, t, to); err != nil {
		return err
	}
	r.standby(t, true)
	r.note(t, "standby", "planned move to "+to+": services stopping, data draining")
	for i, v := range r.volumes[t] {
		dctx, cancel := context.WithTimeout(ctx, r.drain[v.Name()])
		err := v.Handover(dctx)
		cancel()
		if err == nil {
			continue
		}
		err = fmt.Errorf("drain volume %q to the peers: %w", v.Name(), err)
		r.log.Warn("planned move aborted: the data could not be drained in time; keeping the ticket", "ticket", t, "to", to, "err", err)
		for _, done := range r.volumes[t][:i] {
			done.SetWriteDeadline(r.leaseEnd(t))
			if perr := done.Promote(ctx, false); perr != nil {
				r.log.Error("cannot promote a drained volume again after an aborted move", "volume", done.Name(), "err", perr)
			}
		}
		r.standby(t, false)
		return errors.Join(err, r.cib.AbortHandover(ctx, t))
	}
	return nil
}

// check is the built-in prerequisite of a ticket with volumes: a site
// acquires it only when its replicas hold good data (UpToDate or
// Consistent), unless the operator forced the grant. So an automatic
// failover never goes to a site with an Inconsistent replica (in the
// middle of a resync) and the ticket goes to a site with good data when
// there is one. With three sites or more, a site also lets a live site
// holding more of the lost primary's writes take the ticket first, for
// one renewal period (see freshness.go).
func (r *resources) check(_ context.Context, t string, kind ticket.HandlerKind, force bool) error {
	if kind != ticket.HandlerAcquire || force {
		return nil
	}
	for _, v := range r.volumes[t] {
		switch d := v.Disk(); d {
		case replication.UpToDate, replication.Consistent:
		default:
			return fmt.Errorf("volume %q holds %s data here: not acquiring %s (grant with force to override)", v.Name(), d, t)
		}
	}
	if r.replicas == nil {
		return nil
	}
	for _, v := range r.volumes[t] {
		site, theirs := r.replicas.ahead(v.Name(), v.Freshness())
		if site == "" {
			continue
		}
		if r.replicas.deferTo(t, r.renewal[t]) {
			return fmt.Errorf("site %s holds a more recent replica of volume %q (generation %016x, epoch %d from %s): leaving %s to it for one renewal period",
				site, v.Name(), theirs.Generation, theirs.Epoch, theirs.Source, t)
		}
		r.log.Warn("a site with a more recent replica did not take the ticket: taking it with this replica", "ticket", t, "volume", v.Name(), "site", site)
		r.note(t, "replica", fmt.Sprintf("%s holds a more recent replica of %s but did not take %s: taken over with this site's", site, v.Name(), t))
	}
	return nil
}
