// Package httpapi is geoboothd's HTTP API (chi): ticket views and operator
// commands, peers, the event timeline, health and Prometheus metrics.
// Mutations need the bearer token; a wrong or missing token gets 401 and
// changes nothing. Reads are open unless configured otherwise.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/ticket"
)

// Backend is what the API reads and commands.
type Backend interface {
	Views() []node.View
	View(name string) node.View
	Do(ctx context.Context, name string, cmd ticket.Command) (ticket.Reply, error)
	MemberIndex(name string) int
	Events() []api.Event
	EventsSince(seq uint64) ([]api.Event, bool, <-chan struct{})
	Peers() []api.Peer
}

// Options configure the API.
type Options struct {
	Backend Backend
	// Tokens returns the tokens accepted for mutations (the current one,
	// and the next during a rotation), read at each request so that a
	// reload changes them. Empty strings are ignored.
	Tokens func() []string
	// ReadToken: reads need a token too.
	ReadToken bool
	Gatherer  prometheus.Gatherer
	Clock     func() time.Time
	// Mount adds routes of other parts of the daemon (DNS, replication,
	// dashboard) under the router.
	Mount        func(r chi.Router, auth func(http.Handler) http.Handler)
	Member, Role string
	// Version is the build's, in the OpenAPI document.
	Version string
}

// FromView renders a view at now.
func FromView(v node.View, now time.Time) api.Ticket {
	return api.Ticket{Name: v.Name, Owner: v.Owner, Term: v.Term, Mode: v.Mode, State: v.State,
		LeaseRemaining: v.LeaseRemaining(now).Round(time.Millisecond).Seconds(), HeldLocally: v.HeldLocally,
		Managed: v.Managed, Local: v.Local, Expires: v.Expires, SafeUntil: v.SafeUntil, LastChange: v.LastChange, Reason: v.Reason,
		Attrs: v.Attrs, Expire: v.Expire}
}

type server struct {
	Options
	streams chan struct{} // a slot per open event stream
}

// New returns the API's handler.
func New(o Options) http.Handler {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Tokens == nil {
		o.Tokens = func() []string { return nil }
	}
	a := &server{Options: o, streams: make(chan struct{}, maxStreams)}
	r := chi.NewRouter()
	r.Use(limitBody)
	if o.ReadToken {
		r.Use(a.readGuard)
	}
	r.Get("/healthz", a.health)
	if o.Gatherer != nil {
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	r.Route("/api/v1", func(r chi.Router) {
		r.Group(func(r chi.Router) {
			r.Get("/tickets", a.list)
			r.Get("/tickets/{name}", a.get)
			r.Get("/tickets/{name}/attrs", a.attrs)
			r.Get("/tickets/{name}/attrs/{attr}", a.attr)
			r.Get("/peers", a.peers)
			r.Get("/events", a.events)
			r.Get("/openapi.json", a.openapi)
		})
		r.Group(func(r chi.Router) {
			r.Use(a.auth)
			r.Post("/tickets/{name}/grant", a.grant)
			r.Post("/tickets/{name}/revoke", a.revoke)
			r.Post("/tickets/{name}/move", a.move)
			r.Put("/tickets/{name}/attrs/{attr}", a.setAttr)
			r.Delete("/tickets/{name}/attrs/{attr}", a.deleteAttr)
		})
	})
	if o.Mount != nil {
		o.Mount(r, a.auth)
	}
	return r
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

// readGuard, with read_token, requires the token of every read that
// shows state: the API, the metrics and every route a role mounts. Only
// the liveness probe and the dashboard's shell (its page, rendered
// without data in this mode, and its static files) answer without it.
func (a *server) readGuard(next http.Handler) http.Handler {
	guarded := a.auth(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/static/") || r.URL.Path == "/api/v1/openapi.json" {
			next.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// auth requires "Authorization: Bearer TOKEN" with a configured token.
func (a *server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !a.tokenOK(got) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="geobooth"`)
			WriteJSON(w, http.StatusUnauthorized, api.CommandResult{Error: "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *server) tokenOK(got string) bool {
	match := 0
	for _, t := range a.Tokens() {
		if t != "" {
			match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
		}
	}
	return match == 1
}

// WriteJSON writes v as an indented JSON answer.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (a *server) health(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "member": a.Member, "role": a.Role})
}

func (a *server) list(w http.ResponseWriter, r *http.Request) {
	now := a.Clock()
	out := []api.Ticket{}
	for _, v := range a.Backend.Views() {
		out = append(out, FromView(v, now))
	}
	WriteJSON(w, http.StatusOK, out)
}

// view finds the ticket named in the path, or answers 404.
func (a *server) view(w http.ResponseWriter, r *http.Request) (node.View, bool) {
	name := chi.URLParam(r, "name")
	v := a.Backend.View(name)
	if v.Name == "" {
		WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "unknown ticket " + name})
		return v, false
	}
	return v, true
}

func (a *server) get(w http.ResponseWriter, r *http.Request) {
	if v, ok := a.view(w, r); ok {
		WriteJSON(w, http.StatusOK, FromView(v, a.Clock()))
	}
}

func (a *server) attrs(w http.ResponseWriter, r *http.Request) {
	if v, ok := a.view(w, r); ok {
		WriteJSON(w, http.StatusOK, v.Attrs)
	}
}

func (a *server) attr(w http.ResponseWriter, r *http.Request) {
	v, ok := a.view(w, r)
	if !ok {
		return
	}
	name := chi.URLParam(r, "attr")
	val, ok := v.Attrs[name]
	if !ok {
		WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "no attribute " + name})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"name": name, "value": val})
}

func (a *server) peers(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, a.Backend.Peers())
}

// maxStreams bounds the event streams open at once (each holds a
// connection for as long as its client follows).
const maxStreams = 32

// events answers the recent events, newest first; with ?since=SEQ those
// after SEQ, oldest first; as a stream (Server-Sent Events) when asked
// with Accept: text/event-stream or ?follow=1, resuming after
// Last-Event-ID or ?since.
func (a *server) events(w http.ResponseWriter, r *http.Request) {
	var since uint64
	cursor := r.URL.Query().Get("since")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		cursor = id
	}
	if cursor != "" {
		var err error
		if since, err = strconv.ParseUint(cursor, 10, 64); err != nil {
			WriteJSON(w, http.StatusBadRequest, api.CommandResult{Error: "since / Last-Event-ID: a number (an event's seq)"})
			return
		}
	}
	if r.URL.Query().Get("follow") != "1" && !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		if cursor == "" {
			WriteJSON(w, http.StatusOK, a.Backend.Events())
			return
		}
		evs, _, _ := a.Backend.EventsSince(since)
		if evs == nil {
			evs = []api.Event{}
		}
		WriteJSON(w, http.StatusOK, evs)
		return
	}
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		WriteJSON(w, http.StatusServiceUnavailable, api.CommandResult{Error: fmt.Sprintf("%d event streams are open already", maxStreams)})
		return
	}
	a.stream(w, r, since)
}

// stream writes events as Server-Sent Events until the client goes: each
// with its seq as id, a "gap" event when some after the cursor were
// dropped, and a comment every 15 s that keeps proxies from closing an
// idle stream.
func (a *server) stream(w http.ResponseWriter, r *http.Request, since uint64) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	write := func(f func() error) bool {
		// Each write gets its own deadline: the server's write timeout
		// bounds one request, not a stream.
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if f() != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		evs, gap, changed := a.Backend.EventsSince(since)
		if gap && !write(func() error {
			_, err := fmt.Fprintf(w, "event: gap\ndata: {\"after\":%d,\"next\":%d}\n\n", since, evs[0].Seq)
			return err
		}) {
			return
		}
		for _, e := range evs {
			b, _ := json.Marshal(e)
			if !write(func() error {
				_, err := fmt.Fprintf(w, "id: %d\nevent: event\ndata: %s\n\n", e.Seq, b)
				return err
			}) {
				return
			}
			since = e.Seq
		}
		if len(evs) == 0 && !write(func() error { return nil }) {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-keepalive.C:
			if !write(func() error { _, err := io.WriteString(w, ": keepalive\n\n"); return err }) {
				return
			}
		}
	}
}

// Decode reads a request body: one JSON object of known fields (an empty
// body is an empty object), and nothing after it.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, after := dec.Token(); !errors.Is(after, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	} else if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		WriteJSON(w, http.StatusBadRequest, api.CommandResult{Error: "bad request body: " + err.Error()})
		return false
	}
	return true
}

func (a *server) site(w http.ResponseWriter, name string) (int, bool) {
	i := a.Backend.MemberIndex(name)
	if i < 0 {
		WriteJSON(w, http.StatusBadRequest, api.CommandResult{Error: "unknown site " + name})
		return 0, false
	}
	return i, true
}

func (a *server) grant(w http.ResponseWriter, r *http.Request) {
	var req api.GrantRequest
	if _, ok := a.view(w, r); !ok || !Decode(w, r, &req) {
		return
	}
	if req.Site == "" {
		req.Site = a.Member
	}
	i, ok := a.site(w, req.Site)
	if !ok {
		return
	}
	a.do(w, r, ticket.Command{Op: ticket.OpGrant, Site: i, Force: req.Force})
}

func (a *server) revoke(w http.ResponseWriter, r *http.Request) {
	var req api.RevokeRequest
	if _, ok := a.view(w, r); !ok || !Decode(w, r, &req) {
		return
	}
	a.do(w, r, ticket.Command{Op: ticket.OpRevoke, Force: req.Force})
}

func (a *server) move(w http.ResponseWriter, r *http.Request) {
	var req api.MoveRequest
	if _, ok := a.view(w, r); !ok || !Decode(w, r, &req) {
		return
	}
	i, ok := a.site(w, req.Site)
	if !ok {
		return
	}
	a.do(w, r, ticket.Command{Op: ticket.OpMove, Site: i})
}

func (a *server) setAttr(w http.ResponseWriter, r *http.Request) {
	var req api.AttrRequest
	if _, ok := a.view(w, r); !ok || !Decode(w, r, &req) {
		return
	}
	a.do(w, r, ticket.Command{Op: ticket.OpAttrSet, Attr: chi.URLParam(r, "attr"), Value: req.Value})
}

func (a *server) deleteAttr(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.view(w, r); !ok {
		return
	}
	a.do(w, r, ticket.Command{Op: ticket.OpAttrDelete, Attr: chi.URLParam(r, "attr")})
}

// do runs a command and maps the state machine's answer to a status:
// 200 done or under way, 409 refused by the protocol's rules, 400 bad input.
func (a *server) do(w http.ResponseWriter, r *http.Request, cmd ticket.Command) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rep, err := a.Backend.Do(ctx, chi.URLParam(r, "name"), cmd)
	switch {
	case errors.Is(err, node.ErrUnknownTicket):
		WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: err.Error()})
	case err != nil:
		WriteJSON(w, http.StatusServiceUnavailable, api.CommandResult{Error: err.Error()})
	case rep.Err == nil:
		WriteJSON(w, http.StatusOK, api.CommandResult{OK: true, Detail: rep.Detail})
	case errors.Is(rep.Err, ticket.ErrBadAttr), errors.Is(rep.Err, ticket.ErrNotSite), errors.Is(rep.Err, ticket.ErrTooManyAttrs):
		WriteJSON(w, http.StatusBadRequest, api.CommandResult{Error: rep.Err.Error(), Detail: rep.Detail})
	default:
		WriteJSON(w, http.StatusConflict, api.CommandResult{Error: rep.Err.Error(), Detail: rep.Detail})
	}
}
