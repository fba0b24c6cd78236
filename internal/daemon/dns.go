package daemon

import (
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/go-chi/chi/v5"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/node"
)

// setupDNS adds the authoritative DNS server when the member has a [dns]
// section: it answers with the owner the node may act on (the ticket
// core's rule: no answer outlives the owner's lease), shares its health
// checks with the other members through serf, and shows itself at
// GET /api/v1/dns and on the dashboard.
func (d *Daemon) setupDNS() error {
	if !d.Config.DNS.Enabled() {
		return nil
	}
	n, mb := d.Node, d.member
	opt := dnsfail.Options{Config: d.Config.DNS, Self: d.Config.Local, StateDir: filepath.Join(d.Config.StateDir, "dns"),
		Owners: n.Trusted, Log: d.Log.With("component", "dns"), Registry: d.Registry,
		Events: func(kind, detail string) { n.Note("", kind, detail) }}
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
	n.Observe(func(node.View) { srv.Changed() })
	return nil
}

// mountDNS serves GET /api/v1/dns: the server's state, or a 404 saying
// this member serves no DNS.
func (d *Daemon) mountDNS(r chi.Router) {
	r.Get("/api/v1/dns", func(w http.ResponseWriter, r *http.Request) {
		if d.dns == nil {
			httpapi.WriteJSON(w, http.StatusNotFound, api.CommandResult{Error: "this member serves no DNS: its configuration has no [dns] section"})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, d.dns.Status())
	})
}
