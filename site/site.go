// Package site wires a geoboothd that runs as a site: a member that can
// hold tickets, runs the guarded resources (through Pacemaker), holds a
// replica of the data and serves DNS. It adds no protocol logic: ownership
// is decided by the ticket package alone.
package site

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/pacemaker"
	"github.com/geobooth/geobooth/replication"
)

// New prepares a site daemon: the common daemon plus the Pacemaker driver
// (crm_ticket, or nothing on a site without Pacemaker), reconciled with the
// CIB before the tickets start.
func New(cfg *config.File, log *slog.Logger) (*daemon.Daemon, error) {
	d := daemon.New(cfg, log)
	var cib pacemaker.CIB = pacemaker.Noop{}
	if cfg.Pacemaker.UseCrmTicket() {
		cib = &pacemaker.CrmTicket{Path: cfg.Pacemaker.CrmTicket, CrmMon: cfg.Pacemaker.CrmMon, CIBFile: cfg.Pacemaker.CIBFile}
		if cfg.Pacemaker.CIBFile != "" {
			d.Parts.HandlerEnv = append(d.Parts.HandlerEnv, "CIB_file="+cfg.Pacemaker.CIBFile)
		}
		log.Info("Pacemaker: tickets go into the CIB with crm_ticket", "crm_ticket", cfg.Pacemaker.CrmTicket, "cib_file", cfg.Pacemaker.CIBFile)
	} else {
		log.Info("Pacemaker: none (driver = none, or crm_ticket not installed)")
	}
	driver := pacemaker.NewDriver(cib, cfg.Pacemaker, cfg.Local, cfg.Cluster.Name, log.With("component", "pacemaker"), d.Registry,
		func(err error) { d.Fail(fmt.Errorf("revoke in the local CIB failed: %w", err)) })
	res, err := openVolumes(cfg, d, driver, log)
	if err != nil {
		return nil, err
	}
	d.Parts.Resources = res
	d.Parts.Handover = res
	d.Parts.ResourceTimeout = driver.CallBudget()
	d.Parts.BeforeStart = append(d.Parts.BeforeStart, func(ctx context.Context) error {
		// What the CIB grants runs here: the ticket engine keeps it only
		// under a lease of ours long enough to stop it in time, and stops
		// it otherwise (as Booth re-reads its tickets from the CIB).
		d.Parts.Running = map[string]time.Time{}
		for _, t := range cfg.Tickets {
			st, err := driver.State(ctx, t.Name)
			if err != nil {
				return fmt.Errorf("read ticket %q from the CIB: %w", t.Name, err)
			}
			if st.Granted {
				d.Parts.Running[t.Name] = st.Expires
				log.Info("ticket granted in the CIB at start", "ticket", t.Name, "owner", st.Owner, "expires", st.Expires)
			}
		}
		return nil
	})
	d.Parts.Mount = append(d.Parts.Mount, func(r chi.Router, auth func(http.Handler) http.Handler) {
		r.With(auth).Post("/api/v1/tickets/{name}/standby", cibAction(d, driver.Standby, "standby"))
		r.With(auth).Post("/api/v1/tickets/{name}/activate", cibAction(d, driver.Activate, "activate"))
	})
	return d, nil
}

// openVolumes opens the site's replicas. The tickets they follow get the
// built-in data check, and the planned-move budget covers their drains.
func openVolumes(cfg *config.File, d *daemon.Daemon, cib *pacemaker.Driver, log *slog.Logger) (*resources, error) {
	res := &resources{cib: cib, volumes: map[string][]*replication.Volume{}, drain: map[string]time.Duration{},
		node: func() *node.Node { return d.Node }, log: log.With("component", "resources"), lease: map[string]time.Time{}}
	if len(cfg.Volumes) == 0 {
		return res, nil
	}
	var all []*replication.Volume
	budget := 2 * cib.CallBudget()
	d.Parts.LocalChecks = map[string]bool{}
	for _, vc := range cfg.Volumes {
		ticketName := vc.Ticket
		opts := replication.Options{Config: vc, Self: cfg.Local, Key: cfg.Key,
			Log: log.With("component", "replication"), Registry: d.Registry,
			Events: func(kind, detail string) { res.note(ticketName, kind, detail) }}
		if cfg.TLS.Source != nil {
			opts.TLS = cfg.TLS.Source
		}
		v, err := replication.Open(opts)
		if err != nil {
			for _, o := range all {
				o.Close()
			}
			return nil, fmt.Errorf("open volume %q: %w", vc.Name, err)
		}
		all = append(all, v)
		res.volumes[vc.Ticket] = append(res.volumes[vc.Ticket], v)
		res.drain[vc.Name] = time.Duration(vc.DrainTimeout)
		budget += time.Duration(vc.DrainTimeout)
		d.Parts.LocalChecks[vc.Ticket] = true
		log.Info("volume opened", "volume", vc.Name, "ticket", vc.Ticket, "disk", v.Disk(), "size", v.Size(), "nbd", vc.NBDListen)
	}
	d.Parts.Check = res.check
	d.Parts.HandoverTimeout = max(budget, time.Minute)
	d.Parts.Services = append(d.Parts.Services, &volumeService{vols: all, ready: make(chan struct{})})
	d.Parts.Sections = append(d.Parts.Sections, "/api/v1/replication")
	d.Parts.Mount = append(d.Parts.Mount, func(r chi.Router, auth func(http.Handler) http.Handler) {
		mountReplication(r, auth, d, res, all)
	})
	return res, nil
}

// volumeService runs the replication links while the daemon runs, and
// closes the replicas cleanly when it stops.
type volumeService struct {
	vols  []*replication.Volume
	ready chan struct{} // closed once every volume listens
}

// Name names the service in the daemon's errors.
func (vs *volumeService) Name() string { return "volumes" }

// Ready is closed once every volume has started (NBD and replication
// listeners bound).
func (vs *volumeService) Ready() <-chan struct{} { return vs.ready }

func (vs *volumeService) Run(ctx context.Context) error {
	for _, v := range vs.vols {
		if err := v.Start(ctx); err != nil {
			return err
		}
	}
	close(vs.ready)
	<-ctx.Done()
	var errs []error
	for _, v := range vs.vols {
		errs = append(errs, v.Close())
	}
	return errors.Join(errs...)
}

// cibAction runs standby or activate on the local CIB.
func cibAction(d *daemon.Daemon, f func(context.Context, string) error, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		if d.Node == nil || d.Node.View(name).Name == "" {
			httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "unknown ticket " + name})
			return
		}
		if err := f(r.Context(), name); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, pacemaker.ErrNoPacemaker) {
				code = http.StatusConflict
			}
			httpapi.WriteJSON(w, code, api.CommandResult{Error: err.Error()})
			return
		}
		d.Node.SetStandby(name, what == "standby")
		d.Node.Note(name, what, "in the local CIB, by the operator")
		httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: name + " " + what + " in the local CIB"})
	}
}
