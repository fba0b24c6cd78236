package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/ticket"
)

type noTickets struct{}

func (noTickets) Views() []node.View         { return nil }
func (noTickets) View(name string) node.View { return node.View{Name: name} }
func (noTickets) Do(context.Context, string, ticket.Command) (ticket.Reply, error) {
	return ticket.Reply{}, nil
}
func (noTickets) MemberIndex(string) int { return -1 }
func (noTickets) Events() []api.Event    { return nil }
func (noTickets) Peers() []api.Peer      { return nil }
func (noTickets) EventsSince(uint64) ([]api.Event, bool, <-chan struct{}) {
	return nil, false, make(chan struct{})
}

// Issue 17, F7: with read_token, /, /metrics, /api/v1/dns and
// /api/v1/replication answered without a token. Now every read that shows
// state needs it, whoever mounted the route; only the liveness probe and
// the dashboard's shell do not.
func TestReadTokenCoversEveryRead(t *testing.T) {
	const token = "s3cret-token-for-reads"
	h := New(Options{Backend: noTickets{}, Tokens: func() []string { return []string{token} }, ReadToken: true, Gatherer: prometheus.NewRegistry(),
		Mount: func(r chi.Router, auth func(http.Handler) http.Handler) {
			ok := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }
			r.Get("/api/v1/dns", ok)
			r.Get("/api/v1/replication", ok)
			r.Get("/api/v1/replication/{volume}", ok)
			r.Get("/", ok)
			r.Get("/static/app.js", ok)
		}})
	do := func(path, tok string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, path := range []string{"/metrics", "/api/v1/tickets", "/api/v1/tickets/web", "/api/v1/peers", "/api/v1/events",
		"/api/v1/dns", "/api/v1/replication", "/api/v1/replication/data"} {
		if code := do(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
		if code := do(path, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code := do(path, token); code == http.StatusUnauthorized {
			t.Errorf("%s with the token: %d", path, code)
		}
	}
	for _, path := range []string{"/healthz", "/", "/static/app.js"} {
		if code := do(path, ""); code != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", path, code)
		}
	}
	// Without read_token, reads stay open.
	open := New(Options{Backend: noTickets{}, Tokens: func() []string { return []string{token} }, Gatherer: prometheus.NewRegistry()})
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/metrics without read_token: %d", rec.Code)
	}
}

// Issue 17, F11: the JSON decoder accepted trailing garbage after the
// object. A body is one object of known fields, or empty.
func TestCommandBodiesAreOneObject(t *testing.T) {
	const token = "s3cret-token-for-writes"
	h := New(Options{Backend: noTickets{}, Tokens: func() []string { return []string{token} }})
	for body, want := range map[string]int{
		`{"site":"west"} {"site":"east"}`: http.StatusBadRequest,
		`{"site":"west"}garbage`:          http.StatusBadRequest,
		`{"site":"west","extra":1}`:       http.StatusBadRequest,
		`{"site":"west"}` + "\n":          http.StatusBadRequest, // unknown site: past decoding
	} {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/tickets/web/grant", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%q: %d, want %d (%s)", body, rec.Code, want, rec.Body)
		}
		if body == `{"site":"west"}`+"\n" && !strings.Contains(rec.Body.String(), "unknown site") {
			t.Errorf("a well-formed body was refused while decoding: %s", rec.Body)
		}
		if strings.Contains(body, "garbage") || strings.Count(body, "{") == 2 {
			if !strings.Contains(rec.Body.String(), "bad request body") {
				t.Errorf("%q: refused for another reason: %s", body, rec.Body)
			}
		}
	}
}
