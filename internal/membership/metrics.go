package membership

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events  *prometheus.CounterVec
	dropped prometheus.Counter
}

// newMetrics registers the membership metrics; the member counts are read
// from serf at each scrape.
func newMetrics(reg prometheus.Registerer, m *Membership) *metrics {
	met := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_membership_events_total",
			Help: "Serf events seen, by type (member-join, member-leave, member-failed, member-update, member-reap, user)."}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_membership_user_events_dropped_total",
			Help: "User events dropped because their envelope was malformed."}),
	}
	members := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geobooth_membership_members_alive",
		Help: "Members serf sees alive, this one included."}, func() float64 {
		n := 0
		for _, mb := range m.Members() {
			if mb.Status == "alive" {
				n++
			}
		}
		return float64(n)
	})
	failed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geobooth_membership_members_failed",
		Help: "Members serf declared failed."}, func() float64 {
		n := 0
		for _, mb := range m.Members() {
			if mb.Status == "failed" {
				n++
			}
		}
		return float64(n)
	})
	reg.MustRegister(met.events, met.dropped, members, failed)
	return met
}
