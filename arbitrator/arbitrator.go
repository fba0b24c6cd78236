// Package arbitrator wires a geoboothd that runs as an arbitrator: it votes
// on every ticket, runs health checks from its vantage point and serves
// DNS, but holds no ticket, runs no resources and keeps no data.
package arbitrator

import (
	"log/slog"
	"net/http"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
)

// New prepares an arbitrator daemon.
func New(cfg *config.File, log *slog.Logger) (*daemon.Daemon, error) {
	d := daemon.New(cfg, log)
	d.Parts.Mount = append(d.Parts.Mount, func(r chi.Router, auth func(http.Handler) http.Handler) {
		noCIB := func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: "an arbitrator has no CIB: standby and activate act on a site's local Pacemaker (ask the site)"})
		}
		r.With(auth).Post("/api/v1/tickets/{name}/standby", noCIB)
		r.With(auth).Post("/api/v1/tickets/{name}/activate", noCIB)
		// An arbitrator keeps no data: its list of volumes is empty, and a
		// volume asked by name is a site's.
		r.Get("/api/v1/replication", func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, []struct{}{})
		})
		noData := func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "an arbitrator holds no replicated volumes: ask a site"})
		}
		r.Get("/api/v1/replication/{volume}", noData)
		r.With(auth).Post("/api/v1/replication/{volume}/*", noData)
	})
	return d, nil
}
