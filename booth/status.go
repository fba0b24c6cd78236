package booth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/geobooth/geobooth/api"
)

// metrics are the Booth arbitrator's counters (geobooth_booth_*).
type metrics struct {
	received *prometheus.CounterVec // by cmd
	refused  *prometheus.CounterVec // by reason
	sent     *prometheus.CounterVec // by cmd
	clients  *prometheus.CounterVec // by cmd and result
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_booth_messages_received_total",
			Help: "Booth peer messages accepted, by opcode."}, []string{"cmd"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_booth_messages_refused_total",
			Help: "Booth datagrams dropped: unknown_sender, malformed, auth, replay, invalid (unknown ticket or leader)."}, []string{"reason"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_booth_messages_sent_total",
			Help: "Booth peer messages sent, by opcode."}, []string{"cmd"}),
		clients: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geobooth_booth_client_requests_total",
			Help: "Booth client requests answered, by opcode and result."}, []string{"cmd", "result"}),
	}
	reg.MustRegister(m.received, m.refused, m.sent, m.clients, ticketCollector{s})
	return m
}

var (
	descRemaining = prometheus.NewDesc("geobooth_booth_ticket_lease_remaining_seconds",
		"Time left of the ticket's lease as this member follows it (0 without an owner).", []string{"ticket"}, nil)
	descTerm = prometheus.NewDesc("geobooth_booth_ticket_term",
		"The ticket's term as this member knows it.", []string{"ticket"}, nil)
	descLeader = prometheus.NewDesc("geobooth_booth_ticket_leader_info",
		"1 for the ticket's current leader (leader=\"\" when none).", []string{"ticket", "leader"}, nil)
	descUnit = prometheus.NewDesc("geobooth_booth_peer_time_unit_mismatch",
		"1 for a member whose lease updates show another time unit than this member's (its booth.conf differs).", []string{"peer"}, nil)
)

// ticketCollector reports the tickets' state at scrape time.
type ticketCollector struct{ s *Server }

func (c ticketCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRemaining
	ch <- descTerm
	ch <- descLeader
	ch <- descUnit
}

func (c ticketCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	now := c.s.now()
	views := c.s.arb.Tickets()
	mismatched := c.s.arb.UnitMismatches()
	c.s.mu.Unlock()
	for _, m := range mismatched {
		ch <- prometheus.MustNewConstMetric(descUnit, prometheus.GaugeValue, 1, m.Address.String())
	}
	for _, v := range views {
		left := 0.0
		if v.Leader.IsValid() && v.Expires > now {
			left = (v.Expires - now).Seconds()
		}
		leader := ""
		if v.Leader.IsValid() {
			leader = v.Leader.String()
		}
		ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, left, v.Name)
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(v.Term), v.Name)
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, 1, v.Name, leader)
	}
}

// Handler serves the read-only status of the Booth member in geobooth's
// API shapes (ticketctl list, peers and events read it), its
// metrics, and page (the status page) at / and /static/.
func (s *Server) Handler(g prometheus.Gatherer, page http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /static/", page)
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Events()) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /api/v1/tickets", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Tickets(time.Now())) })
	mux.HandleFunc("GET /api/v1/tickets/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, t := range s.Tickets(time.Now()) {
			if t.Name == r.PathValue("name") {
				writeJSON(w, t)
				return
			}
		}
		commandAnswer(w, http.StatusNotFound, api.CommandResult{Error: fmt.Sprintf("no ticket %q", r.PathValue("name"))})
	})
	mux.HandleFunc("GET /api/v1/peers", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Peers()) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	// Commands: grant and revoke at a site that accepts them (a token
	// set); the others (move, and everything at an arbitrator, which
	// Booth's protocol does not give it) are refused with what to do.
	if s.arb.site && s.token != "" {
		mux.HandleFunc("POST /api/v1/tickets/{name}/grant", s.command(CmdGrant))
		mux.HandleFunc("POST /api/v1/tickets/{name}/revoke", s.command(CmdClientRevoke))
	}
	refusal := api.CommandResult{Error: "this is the arbitrator of a Booth cluster (geoboothd -booth-config): it takes no commands",
		Detail: "grant and revoke at a site: booth grant -s SITE TICKET, or ticketctl at a site's geoboothd with -booth-token"}
	switch {
	case s.arb.site && s.token != "":
		refusal = api.CommandResult{Error: "Booth's protocol has grant and revoke only",
			Detail: "a planned move on Booth's protocol is a revoke here, then a grant at the other site"}
	case s.arb.site:
		refusal = api.CommandResult{Error: "this is a site of a Booth cluster (geoboothd -booth-config) without -booth-token: it takes commands from Booth's client only",
			Detail: fmt.Sprintf("booth grant -s %s TICKET (or booth revoke), or start geoboothd with -booth-token FILE for ticketctl; a planned move on Booth's protocol is a revoke, then a grant at the other site", s.arb.self.Address)}
	}
	mux.HandleFunc("POST /api/v1/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(refusal)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Tickets are the tickets in the API's shape, times on the wall clock
// (wall is the time now).
func (s *Server) Tickets(wall time.Time) []api.Ticket {
	s.mu.Lock()
	now := s.now()
	views := s.arb.Tickets()
	s.mu.Unlock()
	out := make([]api.Ticket, 0, len(views))
	for i, v := range views {
		t := api.Ticket{Name: v.Name, Term: uint64(v.Term), Mode: "auto", State: v.State.String(), Attrs: map[string]string{},
			Local: s.arb.self.Address.String(), Expire: s.cfg.Tickets[i].Expire.Seconds()}
		if v.Manual {
			t.Mode = "manual"
		}
		for k, a := range v.Attrs {
			t.Attrs[k] = a
		}
		if v.Leader.IsValid() {
			t.Owner = v.Leader.String()
			if v.Expires > now {
				t.LeaseRemaining = (v.Expires - now).Seconds()
			}
			exp := wall.Add(v.Expires - now)
			t.Expires = &exp
		}
		if v.SafeUntil > now {
			safe := wall.Add(v.SafeUntil - now)
			t.SafeUntil = &safe
		}
		out = append(out, t)
	}
	return out
}

// Peers are the members in the API's shape. A member is alive when a
// datagram from it came within the longest ticket expire, and unknown
// otherwise: on Booth's wire a follower sends nothing to an arbitrator
// unless asked, so silence says nothing.
func (s *Server) Peers() []api.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var window time.Duration
	for _, t := range s.cfg.Tickets {
		window = max(window, t.Expire)
	}
	out := make([]api.Peer, 0, len(s.cfg.Members))
	for _, m := range s.cfg.Members {
		p := api.Peer{Name: m.Address.String(), Role: "site", Address: net.JoinHostPort(m.Address.String(), strconv.Itoa(s.port)),
			Wire: "booth/0x00010003", Status: "unknown"}
		if m.Arbitrator {
			p.Role = "arbitrator"
		}
		if st := s.peers[m.ID]; st == nil {
			p.Status = "self"
		} else if !st.lastRecv.IsZero() {
			last := st.lastRecv
			p.LastHeard = &last
			if time.Since(last) < window {
				p.Status = "alive"
			}
		}
		out = append(out, p)
	}
	return out
}

// known are the opcodes and results metrics name; any other code is
// "other", so that a stranger's bytes cannot grow the label sets.
var known = map[Code]bool{
	CmdStatus: true, CmdMyIndex: true, CmdRequestVote: true, CmdVoteFor: true, CmdHeartbeat: true, CmdAck: true,
	CmdUpdate: true, CmdRevoke: true, CmdReject: true, CmdList: true, CmdGrant: true, CmdClientRevoke: true,
	CmdPeers: true, CmdResult: true, CmdListReply: true,
	ResultMore: true, ResultInvalid: true, ResultIdle: true, ResultOver: true, ResultAuth: true, ResultRedirect: true, 0: true,
}

func label(c Code) string {
	if known[c] {
		return c.String()
	}
	return "other"
}
