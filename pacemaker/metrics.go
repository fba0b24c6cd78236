package pacemaker

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	calls       *prometheus.CounterVec
	seconds     *prometheus.HistogramVec
	lastOK      prometheus.Gauge
	escalations prometheus.Counter
	granted     *prometheus.GaugeVec
	waiting     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_pacemaker_calls_total",
			Help: "CIB operations, by operation and result (ok, error, timeout)."}, []string{"op", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "geobooth_pacemaker_call_duration_seconds",
			Help: "Duration of one CIB operation (one crm_ticket run).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{"op"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_pacemaker_last_success_timestamp_seconds",
			Help: "When a CIB operation last succeeded (Unix time)."}),
		escalations: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_pacemaker_escalations_total",
			Help: "Stops not done by the end of the lease they ran under, escalated (on_revoke_failure)."}),
		granted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_pacemaker_ticket_granted",
			Help: "1 while geobooth has the ticket granted in the local CIB."}, []string{"ticket"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_pacemaker_calls_waiting",
			Help: "CIB operations waiting for another to end (a CIB file takes one at a time; revokes go first)."}),
	}
	reg.MustRegister(m.calls, m.seconds, m.lastOK, m.escalations, m.granted, m.waiting)
	return m
}
