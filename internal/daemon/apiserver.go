package daemon

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiLimits bound what the HTTP API takes in from a hostile network.
type apiLimits struct {
	// MaxConns: connections open at once. Beyond it a new connection
	// closes the oldest one that is idle or has sent nothing yet, or is
	// refused when every one is busy with a request.
	MaxConns int
	// ReadHeader, Read, Write and Idle are http.Server's timeouts. Write
	// covers the longest request (a planned move waits for the
	// replication to drain).
	ReadHeader, Read, Write, Idle time.Duration
}

var defaultAPILimits = apiLimits{MaxConns: 256, ReadHeader: 10 * time.Second, Read: 30 * time.Second,
	Write: 2 * time.Minute, Idle: time.Minute}

// newAPIServer is the API's http.Server with lim applied; its metrics go
// to reg.
func newAPIServer(h http.Handler, lim apiLimits, reg prometheus.Registerer) *http.Server {
	t := &connTracker{max: lim.MaxConns, conns: map[net.Conn]*tracked{},
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_api_connections_closed_total",
			Help: "API connections closed by the server's limits: evicted (idle or silent, to make room), refused (every slot busy)."},
			[]string{"reason"})}
	reg.MustRegister(t.closed)
	return &http.Server{Handler: h, ReadHeaderTimeout: lim.ReadHeader, ReadTimeout: lim.Read,
		WriteTimeout: lim.Write, IdleTimeout: lim.Idle, ConnState: t.state}
}

// connTracker caps the connections of an http.Server through its
// ConnState hook.
type connTracker struct {
	max    int
	closed *prometheus.CounterVec
	mu     sync.Mutex
	conns  map[net.Conn]*tracked
}

type tracked struct {
	busy  bool
	since time.Time
}

func (t *connTracker) state(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateNew:
		if len(t.conns) >= t.max {
			victim := t.oldestQuietLocked()
			if victim == nil {
				t.closed.WithLabelValues("refused").Inc()
				c.Close()
				return
			}
			delete(t.conns, victim)
			victim.Close()
			t.closed.WithLabelValues("evicted").Inc()
		}
		t.conns[c] = &tracked{since: time.Now()}
	case http.StateActive:
		if e := t.conns[c]; e != nil {
			e.busy = true
		}
	case http.StateIdle:
		if e := t.conns[c]; e != nil {
			e.busy, e.since = false, time.Now()
		}
	case http.StateHijacked, http.StateClosed:
		delete(t.conns, c)
	}
}

// oldestQuietLocked is the connection that has been idle, or silent since
// it was accepted, the longest.
func (t *connTracker) oldestQuietLocked() net.Conn {
	var victim net.Conn
	var since time.Time
	for c, e := range t.conns {
		if !e.busy && (victim == nil || e.since.Before(since)) {
			victim, since = c, e.since
		}
	}
	return victim
}
