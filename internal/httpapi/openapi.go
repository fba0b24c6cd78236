package httpapi

import (
	"net/http"
	"regexp"
	"strings"
)

// Route is one operation of the HTTP API, for its OpenAPI document. The
// table covers every route any role mounts (a test compares it with the
// routes in the source).
type Route struct {
	Method, Path, Summary string
	// Auth: "token" (the bearer token, always), "read" (the token when
	// read_token is set), "none".
	Auth string
	// Body names the JSON request body, when there is one.
	Body string
	// Roles that serve it (empty: every member).
	Roles []string
}

// Routes is the API.
var Routes = []Route{
	{"GET", "/healthz", "liveness: 200 while the daemon runs (not the service's health)", "none", "", nil},
	{"GET", "/metrics", "Prometheus metrics (geobooth_*)", "read", "", nil},
	{"GET", "/", "the status page (rendered on the server; without data when read_token is set)", "none", "", nil},
	{"GET", "/static/app.js", "the status page's script", "none", "", nil},
	{"GET", "/static/style.css", "the status page's style sheet", "none", "", nil},
	{"GET", "/api/v1/openapi.json", "this document", "none", "", nil},
	{"GET", "/api/v1/tickets", "every ticket as this member sees it", "read", "", nil},
	{"GET", "/api/v1/tickets/{name}", "one ticket", "read", "", nil},
	{"GET", "/api/v1/tickets/{name}/attrs", "a ticket's attributes", "read", "", nil},
	{"GET", "/api/v1/tickets/{name}/attrs/{attr}", "one attribute", "read", "", nil},
	{"PUT", "/api/v1/tickets/{name}/attrs/{attr}", "set an attribute", "token", "AttrRequest", nil},
	{"DELETE", "/api/v1/tickets/{name}/attrs/{attr}", "delete an attribute", "token", "", nil},
	{"POST", "/api/v1/tickets/{name}/grant", "grant the ticket to a site", "token", "GrantRequest", nil},
	{"POST", "/api/v1/tickets/{name}/revoke", "revoke the ticket (force: only at this member)", "token", "RevokeRequest", nil},
	{"POST", "/api/v1/tickets/{name}/move", "planned handover to a site", "token", "MoveRequest", nil},
	{"POST", "/api/v1/tickets/{name}/standby", "stop the ticket's resources in this site's CIB (409 at an arbitrator)", "token", "", nil},
	{"POST", "/api/v1/tickets/{name}/activate", "let them run again (409 at an arbitrator)", "token", "", nil},
	{"GET", "/api/v1/peers", "the members: status, clock offset, configuration and zones digests, version, wire", "read", "", nil},
	{"GET", "/api/v1/events", "recent events (newest first; ?since=SEQ: after SEQ, oldest first); Accept: text/event-stream or ?follow=1 streams them (Last-Event-ID resumes)", "read", "", nil},
	{"GET", "/api/v1/dns", "failover names, answers and why, checks per vantage point, serials, NOTIFY (404 without [dns])", "read", "", nil},
	{"GET", "/api/v1/replication", "the replicated volumes (empty at an arbitrator)", "read", "", nil},
	{"GET", "/api/v1/replication/{volume}", "one volume", "read", "", nil},
	{"POST", "/api/v1/replication/{volume}/promote", "make the volume primary here (only where its ticket is held)", "token", "", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/demote", "make the volume secondary here", "token", "", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/invalidate", "discard this replica's data and take a full sync from a connected peer (refused at a primary)", "token", "", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/resize", "grow the volume online to size (at the primary, every peer connected, the backing storage grown at every site first)", "token", "ResizeRequest", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/skip-initial-sync", "declare new, never-written replicas blank and equal: UpToDate at every site without the initial full sync (refused unless every peer is connected and new)", "token", "", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/discard-my-data", "resolve a split brain here: this replica's changes since the split go at the next handshake (refused at a primary)", "token", "", []string{"site"}},
	{"POST", "/api/v1/replication/{volume}/verify", "start an online compare with a peer's copy in the background (202; GET /api/v1/replication/{volume} follows it)", "token", "VerifyRequest", []string{"site"}},
}

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// OpenAPI is the API as an OpenAPI 3.1 document.
func OpenAPI(version string) map[string]any {
	paths := map[string]any{}
	for _, r := range Routes {
		op := map[string]any{"summary": r.Summary, "operationId": strings.ToLower(r.Method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(r.Path),
			"responses": map[string]any{"200": map[string]any{"description": "OK"}, "default": map[string]any{"description": "an error: {\"error\": \"…\"}"}}}
		switch r.Auth {
		case "token":
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		case "read":
			op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{}}
			op["description"] = "Needs the token when the member sets [api] read_token."
		}
		if len(r.Roles) > 0 {
			op["x-geobooth-roles"] = r.Roles
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.Body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{
				"schema": map[string]any{"$ref": "#/components/schemas/" + r.Body}}}}
		}
		item, _ := paths[r.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[r.Path] = item
		}
		item[strings.ToLower(r.Method)] = op
	}
	obj := func(props map[string]string) map[string]any {
		p := map[string]any{}
		for k, t := range props {
			p[k] = map[string]any{"type": t}
		}
		return map[string]any{"type": "object", "properties": p, "additionalProperties": false}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "geoboothd HTTP API", "version": version},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{
				"GrantRequest":  obj(map[string]string{"site": "string", "force": "boolean"}),
				"RevokeRequest": obj(map[string]string{"force": "boolean"}),
				"MoveRequest":   obj(map[string]string{"site": "string"}),
				"AttrRequest":   obj(map[string]string{"value": "string"}),
				"VerifyRequest": obj(map[string]string{"peer": "string", "repair": "boolean"}),
			},
		},
	}
}

func (a *server) openapi(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, OpenAPI(a.Version))
}
