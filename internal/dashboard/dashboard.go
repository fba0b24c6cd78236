// Package dashboard serves the status page every member shows at GET /:
// tickets with their lease countdown, members, DNS and replication when the
// daemon has them, and the recent events. The page is rendered on the
// server (it works without JavaScript) and a small script, embedded like
// everything else (no CDN, no external fonts), refreshes it from the API
// every second and offers operator actions behind the API token.
package dashboard

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/geobooth/geobooth/api"
)

//go:embed static
var static embed.FS

var page = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"pct": func(t api.Ticket) int {
		if t.Expire <= 0 {
			return 0
		}
		p := int(100 * t.LeaseRemaining / t.Expire)
		if p > 100 {
			p = 100
		}
		return p
	},
	"ago": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return time.Since(*t).Round(time.Second).String() + " ago"
	},
	"clock": func(t time.Time) string { return t.Format("15:04:05") },
	"dash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
}).ParseFS(static, "static/index.html"))

// Source is what the page shows, in the API's shapes.
type Source interface {
	Tickets(now time.Time) []api.Ticket
	Peers() []api.Peer
	Events() []api.Event
}

// Options configure the page.
type Options struct {
	Source       Source
	Member, Role string
	Digest       string
	Version      string
	// Sections the page asks the API for when they exist (DNS,
	// replication); each is an API path such as /api/v1/dns.
	Sections []string
	// ReadToken: reads need the API token, so the page is served as an
	// empty shell whose script asks for the token and fetches the data
	// with it.
	ReadToken bool
}

type pageData struct {
	Options
	Now     time.Time
	Tickets []api.Ticket
	Peers   []api.Peer
	Events  []api.Event
}

// Handler serves / and /static/.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	// Only the script and the style sheet: not the page's template, not a
	// listing of the folder.
	for _, name := range []string{"app.js", "style.css"} {
		mux.Handle("GET /static/"+name, files)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		d := pageData{Options: o, Now: now}
		if !o.ReadToken {
			d.Tickets, d.Peers, d.Events = o.Source.Tickets(now), o.Source.Peers(), o.Source.Events()
		}
		if len(d.Events) > 30 {
			d.Events = d.Events[:30]
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		if err := page.Execute(w, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}
