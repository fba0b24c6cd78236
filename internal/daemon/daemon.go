// Package daemon assembles what every geoboothd runs, whatever its role:
// the ticket node, the HTTP API and metrics, and their lifecycle. The role
// packages (site, arbitrator) add their parts through Parts before Run.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/internal/alerts"
	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/dashboard"
	"github.com/geobooth/geobooth/internal/httpapi"
	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/kit/buildinfo"
	"github.com/geobooth/geobooth/kit/sdnotify"
)

// Service is a part of the daemon that runs beside the node (DNS server,
// membership, replication). Run blocks until ctx ends.
type Service interface {
	Run(ctx context.Context) error
}

// Parts are what a role adds to the common daemon.
type Parts struct {
	Resources  node.Resources
	Handover   node.Handover
	Membership node.Membership
	Services   []Service
	// Mount adds HTTP routes (DNS status, replication, dashboard).
	Mount []func(r chi.Router, auth func(http.Handler) http.Handler)
	// Observers follow ticket views (DNS answers).
	Observers []node.Observer
	// Sections are API paths the dashboard shows when present
	// (/api/v1/dns, /api/v1/replication).
	Sections []string
	// BeforeStart runs before the tickets start (CIB reconciliation).
	BeforeStart []func(ctx context.Context) error
	// ResourceTimeout bounds one Resources call, retries included.
	ResourceTimeout time.Duration
	// HandlerEnv is added to the before-acquire handler's environment.
	HandlerEnv []string
	// Check is the role's own check before acquiring and renewing the
	// tickets listed in LocalChecks (a site's replicas must hold good data).
	Check       node.Check
	LocalChecks map[string]bool
	// HandoverTimeout bounds a planned move's preparation (0: the node's
	// default).
	HandoverTimeout time.Duration
	// Running: tickets found granted in the local CIB at start, with the
	// lease end recorded there (filled by BeforeStart).
	Running map[string]time.Time
}

// Daemon is one running geoboothd.
type Daemon struct {
	Config   *config.File
	Log      *slog.Logger
	Registry *prometheus.Registry
	Clock    node.Clock
	Parts    Parts
	Node     *node.Node
	// AcceptMembershipChange: the operator stopped every member to change
	// the member list (geoboothd -accept-membership-change).
	AcceptMembershipChange bool
	// LogLevel, when set, is the level of Log, changed by Reload.
	LogLevel *slog.LevelVar

	member    *membership.Membership
	memberErr error
	failc     chan error
	reloadMu  sync.Mutex // guards dns against Reload
	dns       *dnsfail.Server
	hooks     *alerts.Hooks
	alerts    []alerts.Config          // the hooks' configuration in force
	tags      map[string]string        // serf's, of this member
	tokens    atomic.Pointer[[]string] // the API's, changed by Reload
}

// Fail stops the daemon with err (a part that cannot go on, such as a
// revoke the local CIB refuses): Run returns it and the process exits
// non-zero, so the local cluster can recover or fence this node.
func (d *Daemon) Fail(err error) {
	select {
	case d.failc <- err:
	default:
	}
}

// New prepares a daemon from a loaded configuration.
func New(cfg *config.File, log *slog.Logger) *Daemon {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &Daemon{Config: cfg, Log: log, Registry: reg, Clock: node.NewSystemClock(), failc: make(chan error, 1)}
	d.tokens.Store(&[]string{cfg.API.Token, cfg.API.NextToken})
	return d
}

// timeline gives the alert hooks the node's events.
func timeline(n *node.Node) alerts.Source {
	return func(seq uint64) ([]alerts.Event, bool, <-chan struct{}) {
		evs, gap, changed := n.EventsSince(seq)
		out := make([]alerts.Event, len(evs))
		for i, e := range evs {
			out[i] = alerts.Event{Seq: e.Seq, Time: e.Time, Ticket: e.Ticket, Kind: e.Kind, Term: e.Term, Owner: e.Owner, Reason: e.Reason}
		}
		return out, gap, changed
	}
}

// registerInfo adds geobooth_build_info and, on a DNS member, the count
// of members serving other zones.
func (d *Daemon) registerInfo(n *node.Node) {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_build_info",
		Help: "The running build: version, Go version and the protocol versions it speaks (always 1)."},
		[]string{"version", "goversion", "wire"})
	info.WithLabelValues(buildinfo.String(), runtime.Version(), Wire()).Set(1)
	d.Registry.MustRegister(info)
	if !d.Config.DNS.Enabled() {
		return
	}
	d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geobooth_dns_zones_mismatch_members",
		Help: "Members (as serf tells) that serve zones other than this member's: their zones files differ."},
		func() float64 {
			k := 0
			for _, p := range n.Peers() {
				if p.ZonesMismatch {
					k++
				}
			}
			return float64(k)
		}))
}

// Role returns the local member's role.
func (d *Daemon) Role() string { return d.Config.Cluster.Members[d.Config.Self].Role }

// Membership returns the serf member, created on first use (nil when the
// configuration runs none). Roles call it to subscribe before Run.
func (d *Daemon) Membership() (*membership.Membership, error) {
	if d.member == nil && d.memberErr == nil {
		d.member, d.memberErr = d.startMembership()
	}
	return d.member, d.memberErr
}

// Run starts everything and runs until ctx ends or a part fails.
func (d *Daemon) Run(ctx context.Context) error {
	mb, err := d.Membership()
	if err != nil {
		return err
	}
	if mb != nil {
		d.Parts.Membership = serfStatus{mb}
		d.Parts.Services = append(d.Parts.Services, mb)
	}
	if err := d.setupDNS(mb); err != nil {
		return err
	}
	for _, f := range d.Parts.BeforeStart {
		if err := f(ctx); err != nil {
			return err
		}
	}
	n, err := node.New(node.Options{Config: nodeConfig(d.Config), Log: d.Log, Registry: d.Registry, Clock: d.Clock,
		Resources: d.Parts.Resources, Handover: d.Parts.Handover, ResourceTimeout: d.Parts.ResourceTimeout,
		HandlerEnv: d.Parts.HandlerEnv, Check: d.Parts.Check, LocalChecks: d.Parts.LocalChecks,
		HandoverTimeout: d.Parts.HandoverTimeout, Running: d.Parts.Running, AcceptMembershipChange: d.AcceptMembershipChange})
	if err != nil {
		return err
	}
	d.Node = n
	d.registerInfo(n)
	for _, o := range d.Parts.Observers {
		n.Observe(o)
	}
	if d.Parts.Membership != nil {
		n.SetMembership(d.Parts.Membership)
	}
	api := httpapi.New(httpapi.Options{Backend: n, Tokens: func() []string { return *d.tokens.Load() },
		ReadToken: d.Config.API.ReadToken, Gatherer: d.Registry, Member: d.Config.Local, Role: d.Role(), Version: buildinfo.String(),
		Mount: func(r chi.Router, auth func(http.Handler) http.Handler) {
			for _, m := range d.Parts.Mount {
				m(r, auth)
			}
			page := dashboard.Handler(dashboard.Options{Source: n, Member: d.Config.Local, Role: d.Role(),
				Digest: fmt.Sprintf("%016x", d.Config.Digest()), Version: buildinfo.String(), Sections: d.Parts.Sections,
				ReadToken: d.Config.API.ReadToken})
			r.Handle("/", page)
			r.Handle("/static/*", page)
		}})
	ln, err := net.Listen("tcp", d.Config.API.Listen)
	if err != nil {
		return fmt.Errorf("HTTP API: %w", err)
	}
	if src := d.Config.TLS.Source; src != nil {
		d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geobooth_tls_certificate_expiry_timestamp_seconds",
			Help: "When this member's TLS certificate expires (Unix time); the file is re-read when it changes."},
			func() float64 { return float64(src.NotAfter().Unix()) }))
		// HTTPS with the member's certificate; a client certificate of
		// the CA is verified when one is shown (the token still decides).
		ln = tls.NewListener(ln, src.Server(tls.VerifyClientCertIfGiven))
	}
	srv := newAPIServer(api, defaultAPILimits, d.Registry)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2+len(d.Parts.Services))
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	hooks := alerts.New(d.Config.Local, d.Config.Alerts, timeline(n), d.Log.With("component", "alerts"), d.Registry)
	d.reloadMu.Lock()
	d.hooks, d.alerts = hooks, d.Config.Alerts
	d.reloadMu.Unlock()
	run("alerts", func() error { return hooks.Run(ctx) })
	run("tickets", func() error { return n.Run(ctx) })
	run("HTTP API", func() error { return srv.Serve(ln) })
	for _, s := range d.Parts.Services {
		s := s
		name := fmt.Sprintf("%T", s)
		if n, ok := s.(interface{ Name() string }); ok {
			name = n.Name()
		}
		run(name, func() error { return s.Run(ctx) })
	}
	sd := sdnotify.FromEnv()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// "started" once every listener is bound and the ticket state read:
		// a port in use fails the start before it.
		notifyReady(ctx, sd, d.Log, d.Parts.Services, n.Alive, statusLine(d.Config.Local, d.Role()), sdnotify.WatchdogInterval(), func() {
			d.Log.Info("geoboothd started", "member", d.Config.Local, "role", d.Role(), "version", buildinfo.String(),
				"api", d.Config.API.Listen, "config_digest", fmt.Sprintf("%016x", d.Config.Digest()), "pid", os.Getpid())
		})
	}()
	select {
	case <-ctx.Done():
	case err := <-d.failc:
		errc <- err
		cancel()
	}
	if err := sd.Send("STOPPING=1"); err != nil {
		d.Log.Warn("cannot tell systemd the daemon stops", "err", err)
	}
	shut, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	srv.Shutdown(shut)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		d.Log.Info("geoboothd stopped", "member", d.Config.Local)
		return nil
	}
}

// nodeConfig is the ticket runtime's part of the configuration.
func nodeConfig(f *config.File) node.Config {
	c := node.Config{ClusterName: f.Cluster.Name, ConfigPath: f.Path, Self: f.Self, StateDir: f.StateDir,
		Tickets: f.Tickets, HandlerTimeouts: f.HandlerTimeouts, Digest: f.Digest(), MaxElections: f.MaxElections,
		MaxTimeSkew: f.Cluster.MaxTimeSkew.D(), Key: f.Key, NextKey: f.NextKey}
	cl := f.TicketCluster()
	for i, m := range f.Cluster.Members {
		c.Members = append(c.Members, node.Member{Name: m.Name, Role: cl.Members[i].Role, Weight: m.Weight,
			Address: m.Address, API: m.API})
	}
	return c
}
