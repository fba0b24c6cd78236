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

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/pacemaker"
	"github.com/geobooth/geobooth/replication"
)

// Site is a geoboothd running as a site: the common daemon (its ticket
// node first), the Pacemaker driver, the replicas, and what the node does
// with them for the tickets (the node.Site parts).
type Site struct {
	*daemon.Daemon
	driver  *pacemaker.Driver
	res     *resources
	volumes []*replication.Volume
	parts   node.Site
}

// New prepares a site: the common daemon, then the Pacemaker driver
// (crm_ticket, or nothing on a site without Pacemaker) and the replicas,
// built around its node.
func New(cfg *config.File, log *slog.Logger, opt daemon.Options) (*Site, error) {
	d, err := daemon.New(cfg, log, opt)
	if err != nil {
		return nil, err
	}
	s := &Site{Daemon: d}
	var cib pacemaker.CIB = pacemaker.Noop{}
	if cfg.Pacemaker.UseCrmTicket() {
		cib = &pacemaker.CrmTicket{Path: cfg.Pacemaker.CrmTicket, CrmMon: cfg.Pacemaker.CrmMon, CrmAttribute: cfg.Pacemaker.CrmAttribute, CIBFile: cfg.Pacemaker.CIBFile}
		if cfg.Pacemaker.CIBFile != "" {
			s.parts.HandlerEnv = append(s.parts.HandlerEnv, "CIB_file="+cfg.Pacemaker.CIBFile)
		}
		log.Info("Pacemaker: tickets go into the CIB with crm_ticket", "crm_ticket", cfg.Pacemaker.CrmTicket, "cib_file", cfg.Pacemaker.CIBFile)
	} else {
		log.Info("Pacemaker: none (driver = none, or crm_ticket not installed)")
	}
	s.driver = pacemaker.NewDriver(cib, cfg.Pacemaker, cfg.Local, cfg.Cluster.Name, log.With("component", "pacemaker"), d.Registry,
		func(err error) { d.Fail(fmt.Errorf("revoke in the local CIB failed: %w", err)) })
	s.res = &resources{cib: s.driver, volumes: map[string][]*replication.Volume{}, drain: map[string]time.Duration{},
		node: d.Node, log: log.With("component", "resources"), lease: map[string]time.Time{}}
	// A planned move's handover gets a minute, more when the volumes'
	// drains need it (openVolumes).
	s.parts.Resources, s.parts.Handover = s.res, s.res
	s.parts.ResourceTimeout, s.parts.HandoverTimeout = s.driver.CallBudget(), time.Minute
	if err := s.openVolumes(log); err != nil {
		return nil, err
	}
	return s, nil
}

// openVolumes opens the site's replicas. The tickets they follow get the
// built-in data check, and the planned-move budget covers their drains.
func (s *Site) openVolumes(log *slog.Logger) error {
	cfg := s.Config
	if len(cfg.Volumes) == 0 {
		return nil
	}
	budget := 2 * s.driver.CallBudget()
	for _, vc := range cfg.Volumes {
		ticketName := vc.Ticket
		opts := replication.Options{Config: vc, Self: cfg.Local, Key: cfg.Key,
			Log: log.With("component", "replication"), Registry: s.Registry,
			Events: func(kind, detail string) { s.res.note(ticketName, kind, detail) }}
		if cfg.TLS.Source != nil {
			opts.TLS = cfg.TLS.Source
		}
		v, err := replication.Open(opts)
		if err != nil {
			for _, o := range s.volumes {
				o.Close()
			}
			return fmt.Errorf("open volume %q: %w", vc.Name, err)
		}
		s.volumes = append(s.volumes, v)
		s.res.volumes[vc.Ticket] = append(s.res.volumes[vc.Ticket], v)
		s.res.drain[vc.Name] = time.Duration(vc.DrainTimeout)
		budget += time.Duration(vc.DrainTimeout)
		log.Info("volume opened", "volume", vc.Name, "ticket", vc.Ticket, "disk", v.Disk(), "size", v.Size(), "direct_io", v.DirectIO(), "nbd", vc.NBDListen)
	}
	s.parts.Check = s.res.check
	s.parts.HandoverTimeout = max(budget, s.parts.HandoverTimeout)
	s.res.renewal = map[string]time.Duration{}
	for _, t := range cfg.Tickets {
		s.res.renewal[t.Name] = t.RenewalFreq
	}
	if mb := s.Membership(); mb != nil {
		s.res.replicas = newReplicaViews(cfg.Local, cfg.Volumes, func(site string) bool {
			for _, m := range mb.Members() {
				if m.Name == site {
					return m.Status == "alive"
				}
			}
			return false
		}, log.With("component", "replicas"), s.Registry)
		mb.Subscribe(ReplicaEvent, s.res.replicas.Receive)
	}
	return nil
}

// Run checks that state_dir is this daemon's latest (checkIncarnation),
// reads what the CIB grants (it runs here: the ticket engine keeps it
// only under a lease of ours long enough to stop it in time, and stops it
// otherwise, as Booth re-reads its tickets from the CIB), hands the node
// the site's parts, and runs the daemon.
func (s *Site) Run(ctx context.Context) error {
	if err := s.checkIncarnation(ctx); err != nil {
		return err
	}
	s.parts.Running = map[string]time.Time{}
	for _, t := range s.Config.Tickets {
		st, err := s.driver.State(ctx, t.Name)
		if err != nil {
			return fmt.Errorf("read ticket %q from the CIB: %w", t.Name, err)
		}
		if st.Granted {
			s.parts.Running[t.Name] = st.Expires
			s.Log.Info("ticket granted in the CIB at start", "ticket", t.Name, "owner", st.Owner, "expires", st.Expires)
		}
	}
	s.Node.UseSite(s.parts)
	return s.Daemon.Run(ctx, s)
}

// Mount serves standby and activate on the local CIB and, with volumes,
// the replication API.
func (s *Site) Mount(r chi.Router, auth func(http.Handler) http.Handler) {
	r.With(auth).Post("/api/v1/tickets/{name}/standby", s.cibAction(s.driver.Standby, "standby"))
	r.With(auth).Post("/api/v1/tickets/{name}/activate", s.cibAction(s.driver.Activate, "activate"))
	if len(s.volumes) > 0 {
		mountReplication(r, auth, s.Node, s.res, s.volumes)
	}
}

// Sections: the dashboard shows the replicas when there are some.
func (s *Site) Sections() []string {
	if len(s.volumes) == 0 {
		return nil
	}
	return []string{"/api/v1/replication"}
}

// Services: the replication links run beside the node.
func (s *Site) Services() []daemon.Service {
	if len(s.volumes) == 0 {
		return nil
	}
	svcs := []daemon.Service{&volumeService{vols: s.volumes, ready: make(chan struct{})}}
	if mb := s.Membership(); mb != nil {
		svcs = append(svcs, reportService(func(ctx context.Context) error {
			broadcastReports(ctx, s.Config.Local, s.volumes, func(b []byte) error { return mb.Broadcast(ReplicaEvent, b) }, s.Log.With("component", "replicas"))
			return nil
		}))
	}
	return svcs
}

// reportService tells the other sites how recent the replicas are.
type reportService func(ctx context.Context) error

func (f reportService) Run(ctx context.Context) error { return f(ctx) }

// Name names the service in the daemon's errors.
func (reportService) Name() string { return "replica reports" }

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
func (s *Site) cibAction(f func(context.Context, string) error, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		if s.Node.View(name).Name == "" {
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
		s.Node.SetStandby(name, what == "standby")
		s.Node.Note(name, what, "in the local CIB, by the operator")
		httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: name + " " + what + " in the local CIB"})
	}
}
