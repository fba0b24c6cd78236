package replication

import "github.com/prometheus/client_golang/prometheus"

// volumeMetrics are named geobooth_replication_*, labelled by volume (and
// peer where it applies).
type volumeMetrics struct {
	reg          prometheus.Registerer
	collectors   []prometheus.Collector
	bytesWritten prometheus.Counter
	shipped      *prometheus.CounterVec
	resynced     *prometheus.CounterVec
	ackSeconds   *prometheus.HistogramVec
	epochs       prometheus.Counter
	splitBrains  prometheus.Counter
	discarded    prometheus.Counter
	pullAheads   prometheus.Counter
	// congestionWaits counts writes that waited for a peer to drain
	// (on_congestion "block").
	congestionWaits prometheus.Counter
	badFrames       prometheus.Counter
	authFailures    prometheus.Counter
	applyErrors     prometheus.Counter
	verifyDiffs     prometheus.Counter
	// verifyProgress: the share of the volume the running (or last)
	// verify has compared.
	verifyProgress prometheus.Gauge
	// leaseRefusals: writes refused because the primary's lease ended.
	leaseRefusals prometheus.Counter
	nbdRefused    prometheus.Counter
	connRefused   prometheus.Counter
}

func newVolumeMetrics(reg prometheus.Registerer, v *Volume) *volumeMetrics {
	l := prometheus.Labels{"volume": v.cfg.Name}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l})
	}
	m := &volumeMetrics{reg: reg,
		bytesWritten: c("geobooth_replication_written_bytes_total", "Bytes written to the volume while primary."),
		shipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_replication_shipped_bytes_total",
			Help: "Data bytes sent to a peer (writes and resync).", ConstLabels: l}, []string{"peer"}),
		resynced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_replication_resynced_bytes_total",
			Help: "Resync bytes a peer acknowledged.", ConstLabels: l}, []string{"peer"}),
		ackSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "geobooth_replication_ack_seconds",
			Help:        "Replication lag of each epoch: from its first write to the peer's durable acknowledgement.",
			ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.0001, 1.5, 36)}, []string{"peer"}),
		epochs:          c("geobooth_replication_epochs_total", "Epochs closed (flush, FUA, or max_epoch)."),
		splitBrains:     c("geobooth_replication_split_brain_total", "Split brains detected at connect."),
		discarded:       c("geobooth_replication_discarded_blocks_total", "Blocks this replica wrote that a resync replaced with different data from the peer (a split brain lost, a crash as primary with writes not replicated)."),
		pullAheads:      c("geobooth_replication_pull_ahead_total", "Times a peer fell behind and was tracked in the bitmap only."),
		congestionWaits: c("geobooth_replication_congestion_waits_total", "Writes that waited for a peer to drain below send_buffer (on_congestion block)."),
		badFrames:       c("geobooth_replication_bad_frames_total", "Connections dropped for a bad frame (checksum, sequence, format)."),
		authFailures:    c("geobooth_replication_auth_failures_total", "Connections refused because the peer did not prove the key."),
		applyErrors:     c("geobooth_replication_apply_errors_total", "Replicated writes this replica failed to apply (ENOSPC, EIO)."),
		verifyDiffs:     c("geobooth_replication_verify_differing_blocks_total", "Blocks online verify found different."),
		verifyProgress: prometheus.NewGauge(prometheus.GaugeOpts{Name: "geobooth_replication_verify_progress_ratio",
			Help: "The share of the volume the running (or last) online verify has compared.", ConstLabels: l}),
		leaseRefusals: c("geobooth_replication_lease_refused_writes_total",
			"Writes refused because this primary's lease had ended (a site that lost its ticket never accepts a write)."),
		connRefused: c("geobooth_replication_connections_refused_total", "Replication connections closed at accept because the maximum were open."),
		nbdRefused:  c("geobooth_replication_nbd_connections_refused_total", "NBD connections closed at accept because the export had its maximum open."),
	}
	lagBytes := prometheus.NewDesc("geobooth_replication_lag_bytes", "Bytes a peer has not acknowledged (queued, in flight, or only in the bitmap).", []string{"peer"}, l)
	lagSecs := prometheus.NewDesc("geobooth_replication_lag_seconds", "Age of the oldest write a peer has not acknowledged.", []string{"peer"}, l)
	resync := prometheus.NewDesc("geobooth_replication_resync_remaining_bytes", "Bytes still to resync to a peer.", []string{"peer"}, l)
	connected := prometheus.NewDesc("geobooth_replication_peer_connected", "1 while the replication link with a peer is up.", []string{"peer"}, l)
	primary := prometheus.NewDesc("geobooth_replication_primary", "1 while this replica is primary.", nil, l)
	upToDate := prometheus.NewDesc("geobooth_replication_disk_up_to_date", "1 while this replica is UpToDate.", nil, l)
	alWrites := prometheus.NewDesc("geobooth_replication_al_writes_total", "Activity log writes (each a device cache flush).", nil, l)
	alWaits := prometheus.NewDesc("geobooth_replication_al_waits_total", "Writes that waited for an activity log write (a stream faster than the log written ahead of it, or a random write to an extent not in the log).", nil, l)
	m.collectors = []prometheus.Collector{m.bytesWritten, m.shipped, m.resynced, m.ackSeconds, m.epochs, m.splitBrains, m.discarded, m.pullAheads, m.congestionWaits,
		m.badFrames, m.authFailures, m.applyErrors, m.verifyDiffs, m.verifyProgress, m.leaseRefusals, m.nbdRefused, m.connRefused,
		collectorFunc{descs: []*prometheus.Desc{lagBytes, lagSecs, resync, connected, primary, upToDate, alWrites, alWaits}, collect: func(ch chan<- prometheus.Metric) {
			st := v.Status()
			writes, waits := v.al.counts()
			ch <- prometheus.MustNewConstMetric(alWrites, prometheus.CounterValue, float64(writes))
			ch <- prometheus.MustNewConstMetric(alWaits, prometheus.CounterValue, float64(waits))
			b := func(x bool) float64 {
				if x {
					return 1
				}
				return 0
			}
			ch <- prometheus.MustNewConstMetric(primary, prometheus.GaugeValue, b(st.Role == Primary))
			ch <- prometheus.MustNewConstMetric(upToDate, prometheus.GaugeValue, b(st.Disk == UpToDate))
			for _, p := range st.Peers {
				ch <- prometheus.MustNewConstMetric(lagBytes, prometheus.GaugeValue, float64(p.LagBytes), p.Name)
				ch <- prometheus.MustNewConstMetric(lagSecs, prometheus.GaugeValue, p.LagSeconds, p.Name)
				ch <- prometheus.MustNewConstMetric(resync, prometheus.GaugeValue, float64(p.ResyncRemaining), p.Name)
				ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, b(p.Connected), p.Name)
			}
		}}}
	for _, col := range m.collectors {
		reg.MustRegister(col)
	}
	return m
}

func (m *volumeMetrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// collectorFunc is a collector computed at scrape time.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
