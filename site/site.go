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

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/pacemaker"
)

// New prepares a site daemon: the common daemon plus the Pacemaker driver
// (crm_ticket, or nothing on a site without Pacemaker), reconciled with the
// CIB before the tickets start.
func New(cfg *config.File, log *slog.Logger) (*daemon.Daemon, error) {
	d := daemon.New(cfg, log)
	var cib pacemaker.CIB = pacemaker.Noop{}
	if cfg.Pacemaker.UseCrmTicket() {
		cib = &pacemaker.CrmTicket{Path: cfg.Pacemaker.CrmTicket, CIBFile: cfg.Pacemaker.CIBFile}
		if cfg.Pacemaker.CIBFile != "" {
			d.Parts.HandlerEnv = append(d.Parts.HandlerEnv, "CIB_file="+cfg.Pacemaker.CIBFile)
		}
		log.Info("Pacemaker: tickets go into the CIB with crm_ticket", "crm_ticket", cfg.Pacemaker.CrmTicket, "cib_file", cfg.Pacemaker.CIBFile)
	} else {
		log.Info("Pacemaker: none (driver = none, or crm_ticket not installed)")
	}
	driver := pacemaker.NewDriver(cib, cfg.Pacemaker, cfg.Local, cfg.Cluster.Name, log.With("component", "pacemaker"), d.Registry,
		func(err error) { d.Fail(fmt.Errorf("revoke in the local CIB failed: %w", err)) })
	d.Parts.Resources = driver
	d.Parts.Handover = driver
	d.Parts.ResourceTimeout = driver.CallBudget()
	d.Parts.BeforeStart = append(d.Parts.BeforeStart, func(ctx context.Context) error {
		for _, t := range cfg.Tickets {
			if err := driver.Reconcile(ctx, t.Name, ""); err != nil {
				return fmt.Errorf("reconcile ticket %q with the CIB: %w", t.Name, err)
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

// cibAction runs standby or activate on the local CIB.
func cibAction(d *daemon.Daemon, f func(context.Context, string) error, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		if d.Node == nil || d.Node.View(name).Name == "" {
			httpapi.WriteJSON(w, http.StatusNotFound, httpapi.CommandResult{Error: "unknown ticket " + name})
			return
		}
		if err := f(r.Context(), name); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, pacemaker.ErrNoPacemaker) {
				code = http.StatusConflict
			}
			httpapi.WriteJSON(w, code, httpapi.CommandResult{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, httpapi.CommandResult{OK: true, Detail: name + " " + what + " in the local CIB"})
	}
}
