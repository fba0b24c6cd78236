package dnsfail

import "github.com/prometheus/client_golang/prometheus"

// metrics are named geobooth_dns_*.
type metrics struct {
	queries   *prometheus.CounterVec
	changes   *prometheus.CounterVec
	checks    *prometheus.CounterVec
	transfers *prometheus.CounterVec
	notifies  *prometheus.CounterVec
	updates   *prometheus.CounterVec
	fastHits  prometheus.Counter
	// reportsRefused: health reports refused (malformed, or claiming a
	// sender that is not another configured member).
	reportsRefused *prometheus.CounterVec
	tcpRefused     prometheus.Counter
	// rrlDropped, rrlSlipped: UDP answers over the response-rate limit.
	rrlDropped, rrlSlipped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		queries:   cv("geobooth_dns_queries_total", "DNS queries answered, by response code.", "rcode"),
		changes:   cv("geobooth_dns_answer_changes_total", "Changes of a zone's failover answers (each bumps the serial).", "zone"),
		checks:    cv("geobooth_dns_check_results_total", "Health check results of this member's probes.", "result"),
		transfers: cv("geobooth_dns_transfers_total", "Zone transfers served (AXFR, and IXFR answered in full).", "result"),
		notifies:  cv("geobooth_dns_notify_total", "NOTIFY messages sent to secondaries, by outcome.", "result"),
		updates:   cv("geobooth_dns_updates_total", "RFC 2136 UPDATEs sent to an external primary, by outcome.", "result"),
		fastHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_dns_cached_answers_total",
			Help: "UDP answers sent from the wire-format cache (the rest are built per query)."}),
		rrlDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_dns_rate_limited_total",
			Help: "UDP answers over the response-rate limit of their client network, by action.", ConstLabels: prometheus.Labels{"action": "dropped"}}),
		rrlSlipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_dns_rate_limited_total",
			Help: "UDP answers over the response-rate limit of their client network, by action.", ConstLabels: prometheus.Labels{"action": "slipped"}}),
		tcpRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_dns_tcp_connections_refused_total",
			Help: "DNS-over-TCP connections closed at accept because the maximum were open."}),
		reportsRefused: cv("geobooth_dns_health_reports_refused_total", "Health reports refused: malformed, or from a sender that is not another configured member.", "reason"),
	}
	serial := prometheus.NewDesc("geobooth_dns_serial", "The zone's current SOA serial.", []string{"zone"}, nil)
	targetUp := prometheus.NewDesc("geobooth_dns_target_up",
		"A checked failover target's health as the vantage points judge it (1 up, 0 down; absent while unknown).",
		[]string{"zone", "name", "site", "target"}, nil)
	reg.MustRegister(m.queries, m.changes, m.checks, m.transfers, m.notifies, m.updates, m.fastHits, m.reportsRefused, m.tcpRefused, m.rrlDropped, m.rrlSlipped,
		collectorFunc{desc: serial, collect: func(ch chan<- prometheus.Metric) {
			for _, z := range s.set.Load().zones {
				ch <- prometheus.MustNewConstMetric(serial, prometheus.GaugeValue, float64(s.serial(z)), z.origin)
			}
		}},
		collectorFunc{desc: targetUp, collect: func(ch chan<- prometheus.Metric) { s.collectTargets(ch, targetUp) }})
	return m
}

// collectTargets reports each checked target of every failover name: the
// combined state that decides whether it is served.
func (s *Server) collectTargets(ch chan<- prometheus.Metric, desc *prometheus.Desc) {
	set := s.set.Load()
	if set == nil {
		return
	}
	for _, z := range set.zones {
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			for site, st := range f.Sites {
				if st.Check == "" {
					continue
				}
				for _, t := range st.Targets {
					v := 0.0
					switch s.health.state(checkKey(f.Health, st.Check, t)) {
					case stateUp:
						v = 1
					case stateUnknown:
						continue
					}
					ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, z.origin, f.Name, site, t)
				}
			}
		}
	}
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
