package daemon

import (
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/internal/node"
)

// setupDNS adds the authoritative DNS server when the member has a [dns]
// section: it follows the tickets as this member sees them, shares its
// health checks with the other members through serf, and shows itself at
// GET /api/v1/dns and on the dashboard.
func (d *Daemon) setupDNS(mb *membership.Membership) error {
	if !d.Config.DNS.Enabled() {
		d.Parts.Mount = append(d.Parts.Mount, func(r chi.Router, _ func(http.Handler) http.Handler) {
			r.Get("/api/v1/dns", func(w http.ResponseWriter, r *http.Request) {
				httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "this member serves no DNS: its configuration has no [dns] section"})
			})
		})
		return nil
	}
	// The owner a member may answer with, and until when, is the ticket
	// core's rule (no answer outlives the owner's lease); DNS only reads it.
	owners := func(t string) (string, time.Time) {
		if d.Node == nil {
			return "", time.Time{}
		}
		return d.Node.Trusted(t)
	}
	opt := dnsfail.Options{Config: d.Config.DNS, Self: d.Config.Local, StateDir: filepath.Join(d.Config.StateDir, "dns"),
		Owners: owners, Log: d.Log.With("component", "dns"), Registry: d.Registry,
		Events: func(kind, detail string) {
			if n := d.Node; n != nil {
				n.Note("", kind, detail)
			}
		}}
	for _, m := range d.Config.Cluster.Members {
		opt.Members = append(opt.Members, m.Name)
	}
	if mb != nil {
		opt.Broadcast = mb.Broadcast
	}
	srv, err := dnsfail.New(opt)
	if err != nil {
		return fmt.Errorf("DNS: %w", err)
	}
	d.reloadMu.Lock()
	d.dns = srv
	d.tagZones(srv.ZonesDigest())
	d.reloadMu.Unlock()
	if mb != nil {
		mb.Subscribe(dnsfail.HealthEvent, srv.Receive)
		mb.Subscribe(dnsfail.SerialEvent, srv.ReceiveSerials)
	}
	d.Parts.Services = append(d.Parts.Services, srv)
	d.Parts.Observers = append(d.Parts.Observers, func(node.View) { srv.Changed() })
	d.Parts.Sections = append(d.Parts.Sections, "/api/v1/dns")
	d.Parts.Mount = append(d.Parts.Mount, func(r chi.Router, _ func(http.Handler) http.Handler) {
		r.Get("/api/v1/dns", func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, srv.Status())
		})
	})
	return nil
}
