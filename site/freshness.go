package site

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/replication"
)

// With three sites or more, a lost primary's secondaries may each hold a
// different prefix of its writes (one was cut off a moment earlier, or
// lags). Each site tells the others, over serf, how recent its replicas
// are; a site about to take a ticket over lets a live site whose replica
// of the lost primary is ahead of its own take it first, for one renewal
// period, then acquires anyway (that site may be unable to). So the
// failover loses the least, and the others resync from the new primary.
// Only a preference: which site may hold the ticket is still decided by
// the ticket's votes alone.

// ReplicaEvent is the serf user event carrying a site's replica freshness.
const ReplicaEvent = "replica"

// replicaReport is one volume's freshness at the sending site.
type replicaReport struct {
	Volume string `json:"volume"`
	replication.Freshness
}

// reportsFresh bounds how old a report may be to count; sites repeat
// theirs every reportRepeat.
const (
	reportsFresh = 30 * time.Second
	reportRepeat = 10 * time.Second
)

// replicaViews holds the other sites' reports and decides when a site
// defers a failover to another.
type replicaViews struct {
	self  string
	peers map[string][]string // by volume: the sites allowed to report on it
	alive func(site string) bool
	now   func() time.Time
	log   *slog.Logger

	mu       sync.Mutex
	reports  map[string]map[string]seenReport // volume → site → latest
	deferred map[string]time.Time             // by ticket: when this site last deferred
	refused  prometheus.Counter
	deferals prometheus.Counter
}

type seenReport struct {
	f  replication.Freshness
	at time.Time
}

func newReplicaViews(self string, vols []replication.VolumeConfig, alive func(string) bool, log *slog.Logger, reg prometheus.Registerer) *replicaViews {
	rv := &replicaViews{self: self, peers: map[string][]string{}, alive: alive, now: time.Now, log: log,
		reports: map[string]map[string]seenReport{}, deferred: map[string]time.Time{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_replication_freshness_reports_refused_total",
			Help: "Replica freshness reports refused: malformed, or from a site that is not a peer of the volume."}),
		deferals: prometheus.NewCounter(prometheus.CounterOpts{Name: "geobooth_replication_failover_deferrals_total",
			Help: "Takeovers this site postponed for a renewal period because a live site holds a more recent replica."})}
	for _, vc := range vols {
		for _, p := range vc.Peers {
			rv.peers[vc.Name] = append(rv.peers[vc.Name], p.Name)
		}
	}
	if reg != nil {
		reg.MustRegister(rv.refused, rv.deferals)
	}
	return rv
}

// encodeReport is what a site broadcasts for one volume.
func encodeReport(volume string, f replication.Freshness) ([]byte, error) {
	b, err := json.Marshal(replicaReport{Volume: volume, Freshness: f})
	if err != nil {
		return nil, fmt.Errorf("encode the freshness of volume %q: %w", volume, err)
	}
	return b, nil
}

// decodeReport reads a report strictly.
func decodeReport(b []byte) (replicaReport, error) {
	var r replicaReport
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("replica report: %w", err)
	}
	if d.More() {
		return r, fmt.Errorf("replica report: data after the report")
	}
	return r, nil
}

// Receive takes a site's report (the serf subscription): only from a site
// that is a peer of the volume, never about this one.
func (rv *replicaViews) Receive(from string, payload []byte) {
	r, err := decodeReport(payload)
	if err == nil && (from == rv.self || !slices.Contains(rv.peers[r.Volume], from)) {
		err = fmt.Errorf("report on volume %q from %q, which is not one of its peers", r.Volume, from)
	}
	if err == nil && len(r.History) > 64 {
		err = fmt.Errorf("report on volume %q from %q: history of %d generations", r.Volume, from, len(r.History))
	}
	if err != nil {
		if from != rv.self {
			rv.refused.Inc()
			rv.log.Debug("replica report refused", "from", from, "err", err)
		}
		return
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.reports[r.Volume] == nil {
		rv.reports[r.Volume] = map[string]seenReport{}
	}
	rv.reports[r.Volume][from] = seenReport{f: r.Freshness, at: rv.now()}
}

// ahead names a live site whose replica of volume, taken from a primary
// other than itself, is ahead of mine ("" when none). A site's report on
// data it wrote as primary does not count: that is the primary that was
// lost (or the one handing the ticket over, which drained it first).
func (rv *replicaViews) ahead(volume string, mine replication.Freshness) (string, replication.Freshness) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	now := rv.now()
	for _, site := range rv.peers[volume] {
		s, ok := rv.reports[volume][site]
		if !ok || now.Sub(s.at) > reportsFresh || s.f.Source == site || !s.f.Ahead(mine) || !rv.alive(site) {
			continue
		}
		return site, s.f
	}
	return "", replication.Freshness{}
}

// deferTo decides, for ticket t whose volume a live site holds more
// recently: the first time in a window of three renewal periods this
// site defers (the check fails and the ticket core retries a renewal
// period later); the retry acquires, so a site that cannot take the
// ticket does not keep it from every other.
func (rv *replicaViews) deferTo(t string, renewal time.Duration) bool {
	if renewal <= 0 {
		return false
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	now := rv.now()
	if last, ok := rv.deferred[t]; ok && now.Sub(last) < 3*renewal {
		return false
	}
	rv.deferred[t] = now
	rv.deferals.Inc()
	return true
}

// broadcastReports sends this site's reports: a volume's when it changed
// (at most once a second) and every reportRepeat, so a site that joins
// late or missed one learns it. A primary's own writes are not reported
// (see ahead).
func broadcastReports(ctx context.Context, self string, vols []*replication.Volume, send func([]byte) error, log *slog.Logger) {
	type sent struct {
		f  replication.Freshness
		at time.Time
	}
	last := map[string]sent{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, v := range vols {
			f := v.Freshness()
			if f.Source == self {
				continue
			}
			l, ok := last[v.Name()]
			if ok && l.f.Generation == f.Generation && l.f.Source == f.Source && l.f.Epoch == f.Epoch &&
				l.f.Disk == f.Disk && time.Since(l.at) < reportRepeat {
				continue
			}
			b, err := encodeReport(v.Name(), f)
			if err == nil {
				err = send(b)
			}
			if err != nil {
				log.Warn("cannot tell the other sites how recent a replica is", "volume", v.Name(), "err", err)
				continue
			}
			last[v.Name()] = sent{f: f, at: time.Now()}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
