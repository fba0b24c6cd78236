package daemon

import (
	"fmt"
	"net/http"
	"path/filepath"
	"time"

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
				httpapi.WriteJSON(w, http.StatusNotFound, httpapi.CommandResult{Error: "this member serves no DNS: its configuration has no [dns] section"})
			})
		})
		return nil
	}
	// A member that does not hold the ticket honours the owner's lease
	// for expire from when it processed the renewal; the owner itself
	// counts only expire·(1−d)/(1+d) from before it sent it, and the
	// renewal may have waited in queues in between. DNS at such a member
	// stops answering with the owner that much earlier, and a ticket
	// timeout more for the wait, so no answer outlives the owner's own
	// lease.
	margin := map[string]time.Duration{}
	for i := range d.Config.Tickets {
		tc := &d.Config.Tickets[i]
		margin[tc.Name] = tc.Expire - tc.LeaseLength() + tc.Timeout
	}
	owners := func(t string) (string, time.Time) {
		if d.Node == nil {
			return "", time.Time{}
		}
		v := d.Node.View(t)
		if v.Owner == "" {
			return "", time.Time{}
		}
		if v.Expires == nil {
			if v.Mode == "manual" {
				return v.Owner, time.Time{}
			}
			return "", time.Time{}
		}
		if v.HeldLocally {
			return v.Owner, *v.Expires
		}
		return v.Owner, v.Expires.Add(-margin[t])
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
