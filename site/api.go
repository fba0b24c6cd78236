package site

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/replication"
)

// mountReplication serves the volumes' state, and the role changes the
// OCF agent and the operator ask for. A promotion is only granted to the
// site that holds the volume's ticket: the API can never make a second
// primary.
func mountReplication(r chi.Router, auth func(http.Handler) http.Handler, d *daemon.Daemon, res *resources, vols []*replication.Volume) {
	byName := map[string]*replication.Volume{}
	for _, v := range vols {
		byName[v.Name()] = v
	}
	volume := func(w http.ResponseWriter, r *http.Request) *replication.Volume {
		v := byName[chi.URLParam(r, "volume")]
		if v == nil {
			httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "unknown volume " + chi.URLParam(r, "volume")})
		}
		return v
	}
	r.Get("/api/v1/replication", func(w http.ResponseWriter, r *http.Request) {
		out := make([]api.Volume, 0, len(vols))
		for _, v := range vols {
			out = append(out, v.Status())
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	})
	r.Get("/api/v1/replication/{volume}", func(w http.ResponseWriter, r *http.Request) {
		if v := volume(w, r); v != nil {
			httpapi.WriteJSON(w, http.StatusOK, v.Status())
		}
	})
	r.With(auth).Post("/api/v1/replication/{volume}/promote", func(w http.ResponseWriter, r *http.Request) {
		v := volume(w, r)
		if v == nil {
			return
		}
		t := v.Status().Ticket
		view := d.Node.View(t)
		if !view.HeldLocally {
			httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{
				Error: "ticket " + t + " is not held here (owner " + view.Owner + "): only its holder may be primary"})
			return
		}
		var end time.Time
		if view.Expires != nil {
			end = *view.Expires
		}
		res.setLease(t, end)
		if err := v.Promote(r.Context(), false); err != nil {
			httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: v.Name() + " is primary"})
	})
	r.With(auth).Post("/api/v1/replication/{volume}/demote", func(w http.ResponseWriter, r *http.Request) {
		v := volume(w, r)
		if v == nil {
			return
		}
		if err := v.Demote(r.Context()); err != nil {
			httpapi.WriteJSON(w, http.StatusInternalServerError, api.CommandResult{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: v.Name() + " is secondary"})
	})
	recovery := func(run func(*replication.Volume) error, done string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			v := volume(w, r)
			if v == nil {
				return
			}
			if err := run(v); err != nil {
				httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: err.Error()})
				return
			}
			httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: v.Name() + ": " + done})
		}
	}
	r.With(auth).Post("/api/v1/replication/{volume}/invalidate",
		recovery((*replication.Volume).Invalidate, "data discarded here: a full sync from the peer follows"))
	r.With(auth).Post("/api/v1/replication/{volume}/skip-initial-sync",
		recovery((*replication.Volume).SkipInitialSync, "the replicas are declared blank and equal: UpToDate without a full sync"))
	r.With(auth).Post("/api/v1/replication/{volume}/discard-my-data",
		recovery((*replication.Volume).DiscardMyData, "the changes made here since the split go at the next handshake: the peer's data wins"))
	r.With(auth).Post("/api/v1/replication/{volume}/resize", func(w http.ResponseWriter, r *http.Request) {
		v := volume(w, r)
		if v == nil {
			return
		}
		var req api.ResizeRequest
		if !httpapi.Decode(w, r, &req) {
			return
		}
		size, err := replication.ParseSize(req.Size)
		if err != nil {
			httpapi.WriteJSON(w, http.StatusBadRequest, api.CommandResult{Error: "size: " + err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := v.Resize(ctx, size); err != nil {
			httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: fmt.Sprintf("%s: %d bytes at every replica (set size in every member's configuration to match)", v.Name(), size)})
	})
	r.With(auth).Post("/api/v1/replication/{volume}/verify", func(w http.ResponseWriter, r *http.Request) {
		v := volume(w, r)
		if v == nil {
			return
		}
		var req api.VerifyRequest
		if !httpapi.Decode(w, r, &req) {
			return
		}
		// In the background: GET /api/v1/replication/{volume} follows it.
		job, err := v.StartVerify(req.Peer, req.Repair)
		if err != nil {
			code := http.StatusConflict
			if errors.Is(err, replication.ErrClosed) {
				code = http.StatusServiceUnavailable
			}
			httpapi.WriteJSON(w, code, api.CommandResult{Error: err.Error()})
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, job)
	})
}
