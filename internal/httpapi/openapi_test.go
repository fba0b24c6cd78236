package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// routeCall finds a route registration in the source: r.Get("/path", …),
// r.With(auth).Post(…), r.Method(http.MethodGet, "/metrics", …).
var routeCall = regexp.MustCompile(`\br(?:\.With\([a-z]+\))?\.(Get|Post|Put|Delete)\("(/[^"]*)"|r\.Method\(http\.Method(Get|Post), "(/[^"]*)"`)

// Issue 19: the API was documented nowhere. Every route any role mounts
// is in the OpenAPI table, and the table has no route the source lacks.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	root := filepath.Join("..", "..")
	inSource := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "test" || d.Name() == "bench" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		src := string(b)
		for _, m := range routeCall.FindAllStringSubmatch(src, -1) {
			method, path := strings.ToUpper(m[1]+m[3]), m[2]+m[4]
			// The API's own routes sit under r.Route("/api/v1", …).
			if strings.HasSuffix(p, filepath.Join("httpapi", "api.go")) && path != "/healthz" && path != "/metrics" {
				path = "/api/v1" + path
			}
			inSource[method+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The dashboard is mounted with Handle (every method); its files are
	// listed one by one.
	inSource["GET /"], inSource["GET /static/app.js"], inSource["GET /static/style.css"] = true, true, true
	documented := map[string]bool{}
	for _, r := range Routes {
		documented[r.Method+" "+r.Path] = true
	}
	for k := range inSource {
		if k == "POST /api/v1/replication/{volume}/*" {
			continue // the arbitrator's refusal of every volume operation
		}
		if !documented[k] {
			t.Errorf("%s is served but not in the OpenAPI table", k)
		}
	}
	for k := range documented {
		if !inSource[k] {
			t.Errorf("%s is documented but no source mounts it", k)
		}
	}
	if len(inSource) < 20 {
		t.Fatalf("found only %d routes in the source: the scan is broken", len(inSource))
	}
}

// The document is served without a token and is OpenAPI 3.1.
func TestOpenAPIServed(t *testing.T) {
	h := New(Options{Backend: noTickets{}, Tokens: func() []string { return []string{"t-0123456789abcdef"} }, ReadToken: true, Version: "v9"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Info    struct{ Version string }  `json:"info"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	if doc.OpenAPI != "3.1.0" || doc.Info.Version != "v9" || doc.Paths["/api/v1/tickets/{name}/grant"]["post"] == nil {
		t.Fatalf("document: %+v", doc)
	}
	var methods []string
	for m := range doc.Paths["/api/v1/tickets/{name}/attrs/{attr}"] {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	if strings.Join(methods, ",") != "delete,get,put" {
		t.Fatalf("attr methods %v", methods)
	}
}
