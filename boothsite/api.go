package boothsite

import (
	"net/http"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/internal/httpapi"
)

// Mount serves the volumes' state on mux, read-only, in the API's shapes
// (ticketctl repl status, the status page): GET /api/v1/replication and
// /api/v1/replication/{volume}. Nothing when there are no volumes.
func (vs *Volumes) Mount(mux *http.ServeMux) {
	if len(vs.list) == 0 {
		return
	}
	mux.HandleFunc("GET /api/v1/replication", func(w http.ResponseWriter, _ *http.Request) {
		out := make([]api.Volume, 0, len(vs.list))
		for _, v := range vs.list {
			out = append(out, v.Status())
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/v1/replication/{volume}", func(w http.ResponseWriter, r *http.Request) {
		for _, v := range vs.list {
			if v.Name() == r.PathValue("volume") {
				httpapi.WriteJSON(w, http.StatusOK, v.Status())
				return
			}
		}
		httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "unknown volume " + r.PathValue("volume")})
	})
}
