package site

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/replication"
)

// replicationAPI serves the volumes' state, and the role changes the OCF
// agent and the operator ask for. A promotion is only granted to the site
// that holds the volume's ticket: the API can never make a second primary.
type replicationAPI struct {
	node   *node.Node
	res    *resources
	vols   []*replication.Volume
	byName map[string]*replication.Volume
}

func mountReplication(r chi.Router, auth func(http.Handler) http.Handler, n *node.Node, res *resources, vols []*replication.Volume) {
	a := &replicationAPI{node: n, res: res, vols: vols, byName: map[string]*replication.Volume{}}
	for _, v := range vols {
		a.byName[v.Name()] = v
	}
	r.Get("/api/v1/replication", a.list)
	r.Get("/api/v1/replication/{volume}", a.get)
	r.With(auth).Post("/api/v1/replication/{volume}/promote", a.promote)
	r.With(auth).Post("/api/v1/replication/{volume}/demote", a.demote)
	r.With(auth).Post("/api/v1/replication/{volume}/invalidate",
		a.recovery((*replication.Volume).Invalidate, "data discarded here: a full sync from the peer follows"))
	r.With(auth).Post("/api/v1/replication/{volume}/skip-initial-sync",
		a.recovery((*replication.Volume).SkipInitialSync, "the replicas are declared blank and equal: UpToDate without a full sync"))
	r.With(auth).Post("/api/v1/replication/{volume}/discard-my-data",
		a.recovery((*replication.Volume).DiscardMyData, "the changes made here since the split go at the next handshake: the peer's data wins"))
	r.With(auth).Post("/api/v1/replication/{volume}/resize", a.resize)
	r.With(auth).Post("/api/v1/replication/{volume}/verify", a.verify)
}

// volume is the request's volume, or nil after a 404.
func (a *replicationAPI) volume(w http.ResponseWriter, r *http.Request) *replication.Volume {
	v := a.byName[chi.URLParam(r, "volume")]
	if v == nil {
		httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "unknown volume " + chi.URLParam(r, "volume")})
	}
	return v
}

// volumeAnd is the request's volume and its decoded body; ok is false
// once an error was answered.
func volumeAnd[T any](a *replicationAPI, w http.ResponseWriter, r *http.Request) (*replication.Volume, T, bool) {
	var req T
	v := a.volume(w, r)
	if v == nil || !httpapi.Decode(w, r, &req) {
		return nil, req, false
	}
	return v, req, true
}

func (a *replicationAPI) list(w http.ResponseWriter, r *http.Request) {
	out := make([]api.Volume, 0, len(a.vols))
	for _, v := range a.vols {
		out = append(out, v.Status())
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (a *replicationAPI) get(w http.ResponseWriter, r *http.Request) {
	if v := a.volume(w, r); v != nil {
		httpapi.WriteJSON(w, http.StatusOK, v.Status())
	}
}

func (a *replicationAPI) promote(w http.ResponseWriter, r *http.Request) {
	v := a.volume(w, r)
	if v == nil {
		return
	}
	t := v.Status().Ticket
	view := a.node.View(t)
	if !view.HeldLocally {
		httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{
			Error: "ticket " + t + " is not held here (owner " + view.Owner + "): only its holder may be primary"})
		return
	}
	var end time.Time
	if view.Expires != nil {
		end = *view.Expires
	}
	a.res.setLease(t, end)
	if err := v.Promote(r.Context(), false); err != nil {
		httpapi.WriteJSON(w, http.StatusConflict, api.CommandResult{Error: err.Error()})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: v.Name() + " is primary"})
}

func (a *replicationAPI) demote(w http.ResponseWriter, r *http.Request) {
	v := a.volume(w, r)
	if v == nil {
		return
	}
	if err := v.Demote(r.Context()); err != nil {
		httpapi.WriteJSON(w, http.StatusInternalServerError, api.CommandResult{Error: err.Error()})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: v.Name() + " is secondary"})
}

// recovery runs an operator's recovery command on the volume.
func (a *replicationAPI) recovery(run func(*replication.Volume) error, done string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := a.volume(w, r)
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

func (a *replicationAPI) resize(w http.ResponseWriter, r *http.Request) {
	v, req, ok := volumeAnd[api.ResizeRequest](a, w, r)
	if !ok {
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
}

// verify starts a verify in the background: GET
// /api/v1/replication/{volume} follows it.
func (a *replicationAPI) verify(w http.ResponseWriter, r *http.Request) {
	v, req, ok := volumeAnd[api.VerifyRequest](a, w, r)
	if !ok {
		return
	}
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
}
