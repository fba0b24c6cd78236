package node

import "github.com/prometheus/client_golang/prometheus"

// metrics of the ticket runtime, named geobooth_ticket_*.
type metrics struct {
	packetsReceived   *prometheus.CounterVec
	packetsSent       *prometheus.CounterVec
	held              *prometheus.GaugeVec
	term              *prometheus.GaugeVec
	leaseRemaining    *prometheus.GaugeVec
	renewals          *prometheus.CounterVec
	acquisitions      *prometheus.CounterVec
	losses            *prometheus.CounterVec
	failovers         *prometheus.CounterVec
	events            *prometheus.CounterVec
	handlerRuns       *prometheus.CounterVec
	persistSeconds    prometheus.Histogram
	resourceErrors    *prometheus.CounterVec
	electionsQueued   prometheus.Gauge
	electionsDeferred prometheus.Counter
	electionWindow    prometheus.Gauge
	persistFailures   prometheus.Counter
	unsaved           prometheus.Gauge
	escalations       *prometheus.CounterVec
	// deferredSeen: the engine's count of deferred elections already
	// added to electionsDeferred (the loop alone touches it).
	deferredSeen uint64
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		packetsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_packets_received_total",
			Help: "Peer datagrams received, by result (ok, auth, malformed, replay, stale, digest, address, unknown_member, overflow)."}, []string{"result"}),
		packetsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_packets_sent_total",
			Help: "Peer datagrams sent, by result."}, []string{"result"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_ticket_held",
			Help: "1 while this member holds the ticket with a valid lease."}, []string{"ticket"}),
		term: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_ticket_term",
			Help: "The ticket's current term as this member knows it."}, []string{"ticket"}),
		leaseRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_ticket_lease_remaining_seconds",
			Help: "Seconds left of the owner's lease as this member sees it (0: no owner)."}, []string{"ticket"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_renewals_total",
			Help: "Leases renewed by a majority while this member held the ticket."}, []string{"ticket"}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_acquisitions_total",
			Help: "Times this member acquired the ticket."}, []string{"ticket"}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_losses_total",
			Help: "Times this member lost the ticket because a majority did not renew its lease."}, []string{"ticket"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_failovers_total",
			Help: "Times this member saw the ticket go from one site to another."}, []string{"ticket"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_events_total",
			Help: "Ticket state changes, by kind."}, []string{"ticket", "kind"}),
		handlerRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_handler_runs_total",
			Help: "before_acquire_handler runs, by result (ok, failed, timeout)."}, []string{"ticket", "result"}),
		persistSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "geobooth_ticket_persist_seconds",
			Help: "Time to write and flush one group commit of tickets' durable state.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12)}),
		resourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_resource_errors_total",
			Help: "Failed calls to start or stop the local resources, by operation."}, []string{"ticket", "op"}),
		electionsQueued: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_ticket_elections_queued",
			Help: "Tickets waiting to start an election here while max_elections of ours are under way (mass failover)."}),
		electionsDeferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_ticket_elections_deferred_total",
			Help: "Elections held back because the pacing window of ours was full."}),
		electionWindow: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_ticket_election_window",
			Help: "How many elections of ours may run at once now (adapts between 1 and max_elections)."}),
		persistFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_ticket_persist_failures_total",
			Help: "Writes of a ticket's durable state that failed (the ticket is silent until one succeeds)."}),
		unsaved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_ticket_unsaved_tickets",
			Help: "Tickets whose last write failed: they send nothing and start nothing until a write succeeds."}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_ticket_stop_escalations_total",
			Help: "Stops not done by the end of the lease they ran under, escalated (on_revoke_failure)."}, []string{"ticket"}),
	}
	reg.MustRegister(m.packetsReceived, m.packetsSent, m.held, m.term, m.leaseRemaining, m.renewals,
		m.acquisitions, m.losses, m.failovers, m.events, m.handlerRuns, m.persistSeconds, m.resourceErrors, m.electionsQueued, m.electionsDeferred,
		m.electionWindow, m.persistFailures, m.unsaved, m.escalations)
	return m
}

// peerCollector exports what this member knows of the others from their
// datagrams: how long since each was last heard, and how many carry
// another cluster configuration.
type peerCollector struct {
	n         *Node
	lastHeard *prometheus.Desc
	mismatch  *prometheus.Desc
}

func newPeerCollector(n *Node) peerCollector {
	return peerCollector{n: n,
		lastHeard: prometheus.NewDesc("geobooth_ticket_peer_last_heard_seconds",
			"Seconds since the last authenticated datagram from a member (absent until one is heard).", []string{"member"}, nil),
		mismatch: prometheus.NewDesc("geobooth_ticket_config_mismatch_members",
			"Members whose datagrams carry another cluster configuration (they are refused).", nil, nil)}
}

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lastHeard; ch <- c.mismatch }

func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.n.clock.Wall()
	mismatches := 0
	for _, p := range c.n.Peers() {
		if p.ConfigMismatch {
			mismatches++
		}
		if p.LastHeard != nil {
			ch <- prometheus.MustNewConstMetric(c.lastHeard, prometheus.GaugeValue, now.Sub(*p.LastHeard).Seconds(), p.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.mismatch, prometheus.GaugeValue, float64(mismatches))
}
