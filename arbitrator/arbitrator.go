// Package arbitrator wires a geoboothd that runs as an arbitrator: it votes
// on every ticket, runs health checks from its vantage point and serves
// DNS, but holds no ticket, runs no resources and keeps no data.
package arbitrator

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
)

// Arbitrator is a geoboothd running as an arbitrator: the common daemon,
// and answers that say what it does not have.
type Arbitrator struct {
	*daemon.Daemon
}

// New prepares an arbitrator.
func New(cfg *config.File, log *slog.Logger, opt daemon.Options) (*Arbitrator, error) {
	d, err := daemon.New(cfg, log, opt)
	if err != nil {
		return nil, err
	}
	return &Arbitrator{Daemon: d}, nil
}

// Run runs the daemon.
func (a *Arbitrator) Run(ctx context.Context) error { return a.Daemon.Run(ctx, a) }

// Mount answers the site-only routes: an arbitrator has no CIB and keeps
// no data.
func (a *Arbitrator) Mount(r chi.Router, auth func(http.Handler) http.Handler) {
	noCIB := func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: "an arbitrator has no CIB: standby and activate act on a site's local Pacemaker (ask the site)"})
	}
	r.With(auth).Post("/api/v1/tickets/{name}/standby", noCIB)
	r.With(auth).Post("/api/v1/tickets/{name}/activate", noCIB)
	// Its list of volumes is empty, and a volume asked by name is a site's.
	r.Get("/api/v1/replication", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, []struct{}{})
	})
	noData := func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "an arbitrator holds no replicated volumes: ask a site"})
	}
	r.Get("/api/v1/replication/{volume}", noData)
	r.With(auth).Post("/api/v1/replication/{volume}/*", noData)
}

// Sections: nothing of its own on the dashboard.
func (a *Arbitrator) Sections() []string { return nil }

// Services: nothing of its own runs beside the node.
func (a *Arbitrator) Services() []daemon.Service { return nil }
