package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
)

type noSource struct{}

func (noSource) Tickets(time.Time) []api.Ticket { return nil }
func (noSource) Peers() []api.Peer              { return nil }
func (noSource) Events() []api.Event            { return nil }

// Issue 19: GET /static/ served the page's unrendered template (and a
// listing). Only the script and the style sheet are served there.
func TestStaticServesOnlyTheScriptAndStyle(t *testing.T) {
	h := Handler(Options{Source: noSource{}, Member: "east", Role: "site"})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, p := range []string{"/static/", "/static/index.html", "/static/nosuch.js"} {
		if code, body := get(p); code != http.StatusNotFound || strings.Contains(body, "{{") {
			t.Errorf("%s: %d %.60q", p, code, body)
		}
	}
	for _, p := range []string{"/static/app.js", "/static/style.css"} {
		if code, _ := get(p); code != http.StatusOK {
			t.Errorf("%s: %d", p, code)
		}
	}
	if code, body := get("/"); code != http.StatusOK || strings.Contains(body, "{{") || !strings.Contains(body, "east") {
		t.Errorf("/: %d, rendered: %v", code, !strings.Contains(body, "{{"))
	}
}
