package dnsfail

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/geobooth/geobooth/api"
)

// The server's state for GET /api/v1/dns and the dashboard.

// Status is what GET /api/v1/dns shows, and its parts: the API's types.
type (
	Status      = api.DNS
	ZoneStatus  = api.DNSZone
	NameStatus  = api.DNSName
	CheckStatus = api.DNSCheck
)

// Status returns the server's state.
func (s *Server) Status() Status {
	now := time.Now()
	st := Status{Listen: s.opt.Config.Listen}
	for _, z := range s.set.Load().zones {
		zs := ZoneStatus{Origin: z.origin, Serial: s.serial(z), Vantages: map[string]int{}, DS: z.DS()}
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			d := s.decide(f, now)
			zs.Names = append(zs.Names, NameStatus{Name: f.Name, Type: f.Type, Ticket: f.Ticket,
				Targets: d.Targets, TTL: d.TTL, Owner: d.Owner, Why: d.Why})
			for _, site := range f.siteNames() {
				t := f.Sites[site]
				for _, target := range t.Targets {
					key := checkKey(f.Health, t.Check, target)
					cs := CheckStatus{Check: key, Site: site, Target: target, State: s.health.state(key)}
					if key != "" {
						s.health.mu.Lock()
						cs.Vantages = s.health.votes(key, now)
						if c := s.health.local[key]; c != nil {
							cs.Local = c.last
							if c.ok > 0 && c.state != stateUp {
								cs.Progress = fmt.Sprintf("rise %d/%d", c.ok, c.hc.Rise)
							} else if c.failed > 0 && c.state != stateDown {
								cs.Progress = fmt.Sprintf("fall %d/%d", c.failed, c.hc.Fall)
							}
						}
						s.health.mu.Unlock()
					}
					zs.Checks = append(zs.Checks, cs)
				}
			}
		}
		s.health.mu.Lock()
		for v, r := range s.health.reports {
			zs.Vantages[v] = int(now.Sub(r.At).Seconds())
		}
		s.health.mu.Unlock()
		s.mu.Lock()
		for k, n := range s.notify {
			if strings.HasPrefix(k, z.origin+" ") {
				zs.Notify = append(zs.Notify, *n)
			}
		}
		if u := s.update[z.origin]; u != nil {
			c := *u
			zs.Update = &c
		}
		for _, c := range s.changes {
			if c.Zone == z.origin {
				zs.Changes = append(zs.Changes, c)
			}
		}
		s.mu.Unlock()
		sort.Slice(zs.Notify, func(i, j int) bool { return zs.Notify[i].Target < zs.Notify[j].Target })
		st.Zones = append(st.Zones, zs)
	}
	return st
}
