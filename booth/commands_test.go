package booth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/booth/boothconf"
)

// ticketctl at a site's status listener: only with the token; a grant
// only to the site itself, no local-only revoke; Booth's outcomes as
// HTTP answers; a ticket read by its name.
func TestASiteTakesTicketctlCommandsWithItsToken(t *testing.T) {
	s := quietServer(t, testConf(t, timed), east)
	s.AcceptCommands("0123456789abcdef")
	h := s.Handler(prometheus.NewRegistry(), http.NotFoundHandler())
	do := func(method, path, token, body string) (int, api.CommandResult) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var r api.CommandResult
		_ = json.Unmarshal(rec.Body.Bytes(), &r)
		return rec.Code, r
	}
	for _, c := range []struct {
		path, token, body string
		code              int
		want              string
	}{
		{"/api/v1/tickets/web/grant", "", `{}`, http.StatusUnauthorized, "bearer token"},
		{"/api/v1/tickets/web/grant", "0123456789abcdeX", `{}`, http.StatusUnauthorized, "bearer token"},
		{"/api/v1/tickets/web/grant", "0123456789abcdef", `{"site": "192.0.2.2"}`, http.StatusConflict, "to itself only: ask 192.0.2.2"},
		{"/api/v1/tickets/web/revoke", "0123456789abcdef", `{"force": true}`, http.StatusConflict, "no revoke at one member only"},
		{"/api/v1/tickets/web/grant", "0123456789abcdef", `{"site": `, http.StatusBadRequest, "bad request body"},
		{"/api/v1/tickets/web/move", "0123456789abcdef", `{"site": "192.0.2.2"}`, http.StatusConflict, "grant and revoke only"},
		{"/api/v1/tickets/web/grant", "0123456789abcdef", `{}`, http.StatusServiceUnavailable, "starting"},
	} {
		if code, r := do(http.MethodPost, c.path, c.token, c.body); code != c.code || !strings.Contains(r.Error, c.want) {
			t.Errorf("POST %s %s: %d %+v, want %d %q", c.path, c.body, code, r, c.code, c.want)
		}
	}
	west := boothconf.SiteID(west)
	for _, c := range []struct {
		cmd    Code
		result Code
		code   int
		want   string
	}{
		{CmdGrant, 0, http.StatusOK, "granted"},
		{CmdGrant, ResultPending, http.StatusAccepted, "after expire + acquire-after"},
		{CmdGrant, ResultMore, http.StatusAccepted, "under way"},
		{CmdGrant, ResultOver, http.StatusConflict, "held by 192.0.2.2"},
		{CmdClientRevoke, ResultRedirect, http.StatusConflict, "192.0.2.2 leads it"},
		{CmdClientRevoke, ResultIdle, http.StatusOK, "not granted"},
		{CmdGrant, ResultAttrPrereq, http.StatusConflict, "grant refused"},
	} {
		m := Message{Header: Header{Result: c.result}, HasTicket: true, Ticket: Ticket{Name: "web", Leader: west}}
		code, r := s.outcome(c.cmd, m)
		if code != c.code || !strings.Contains(r.Detail+r.Error, c.want) {
			t.Errorf("outcome of %v %v: %d %+v, want %d %q", c.cmd, c.result, code, r, c.code, c.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/tickets/web", nil))
	var tk api.Ticket
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tk) != nil || tk.Name != "web" || tk.Local != "192.0.2.1" {
		t.Fatalf("GET web: %d %s", rec.Code, rec.Body)
	}
	if code, _ := do(http.MethodGet, "/api/v1/tickets/nosuch", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET nosuch: %d", code)
	}
}
