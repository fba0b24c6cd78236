// Package daemon assembles what every geoboothd runs, whatever its role:
// the ticket node (built first), membership, DNS, the HTTP API and
// metrics, and their lifecycle. A role (site, arbitrator) builds its parts
// around the node and hands them to Run.
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/geobooth/geobooth/api"
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

// Role is what a site or an arbitrator adds to the daemon when it runs.
type Role interface {
	// Mount adds the role's HTTP routes.
	Mount(r chi.Router, auth func(http.Handler) http.Handler)
	// Sections are the API paths of the role's parts that the dashboard
	// shows (/api/v1/replication).
	Sections() []string
	// Services run beside the node while the daemon runs.
	Services() []Service
}

// Options are what the command line adds to the configuration.
type Options struct {
	// AcceptMembershipChange: the operator stopped every member to change
	// the member list (geoboothd -accept-membership-change).
	AcceptMembershipChange bool
	// LogLevel, when set, is the level of the log, changed by Reload.
	LogLevel *slog.LevelVar
}

// Daemon is one running geoboothd.
type Daemon struct {
	Config   *config.File
	Log      *slog.Logger
	Registry *prometheus.Registry
	// Node runs the member's tickets; it exists from New on.
	Node *node.Node
	// LogLevel, when set, is the level of Log, changed by Reload.
	LogLevel *slog.LevelVar

	member   *membership.Membership
	failc    chan error
	reloadMu sync.Mutex // guards dns against Reload
	dns      *dnsfail.Server
	hooks    *alerts.Hooks
	alerts   []alerts.Config          // the hooks' configuration in force
	tags     map[string]string        // serf's, of this member
	tokens   atomic.Pointer[[]string] // the API's, changed by Reload
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

// New prepares a daemon from a loaded configuration: its metrics, its
// serf member, the ticket node (its UDP socket bound) and, with a [dns]
// section, the DNS server that follows the node's tickets.
func New(cfg *config.File, log *slog.Logger, opt Options) (*Daemon, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &Daemon{Config: cfg, Log: log, Registry: reg, LogLevel: opt.LogLevel, failc: make(chan error, 1)}
	d.tokens.Store(&[]string{cfg.API.Token, cfg.API.NextToken})
	mb, err := d.startMembership()
	if err != nil {
		return nil, err
	}
	d.member = mb
	n, err := node.New(node.Options{Config: nodeConfig(cfg), Log: log, Registry: reg, Clock: node.NewSystemClock(),
		AcceptMembershipChange: opt.AcceptMembershipChange})
	if err != nil {
		return nil, err
	}
	d.Node = n
	d.registerInfo(n)
	if mb != nil {
		n.SetMembership(serfStatus{mb})
	}
	if err := d.setupDNS(); err != nil {
		return nil, err
	}
	return d, nil
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

// Membership returns the serf member (nil when the configuration runs
// none); a role subscribes to its events before Run.
func (d *Daemon) Membership() *membership.Membership { return d.member }

// Run runs the node, the role's parts and the daemon's own until ctx ends
// or a part fails.
func (d *Daemon) Run(ctx context.Context, role Role) error {
	n := d.Node
	services := role.Services()
	if d.member != nil {
		services = append(services, d.member)
	}
	sections := role.Sections()
	if d.dns != nil {
		services = append(services, d.dns)
		sections = append(sections, "/api/v1/dns")
	}
	ln, err := d.listenAPI()
	if err != nil {
		return err
	}
	srv := newAPIServer(d.apiHandler(role, sections), defaultAPILimits, d.Registry)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2+len(services))
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
	for _, s := range services {
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
		notifyReady(ctx, sd, d.Log, services, n.Alive, statusLine(d.Config.Local, d.Role()), sdnotify.WatchdogInterval(), func() {
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

// apiHandler is the HTTP API with the role's routes, DNS and the status
// page mounted.
func (d *Daemon) apiHandler(role Role, sections []string) http.Handler {
	n := d.Node
	return httpapi.New(httpapi.Options{Backend: n, Tokens: func() []string { return *d.tokens.Load() },
		ReadToken: d.Config.API.ReadToken, Gatherer: d.Registry, Member: d.Config.Local, Role: d.Role(), Version: buildinfo.String(),
		Mount: func(r chi.Router, auth func(http.Handler) http.Handler) {
			role.Mount(r, auth)
			d.mountDNS(r)
			page := dashboard.Handler(dashboard.Options{Source: pageSource{n}, Member: d.Config.Local, Role: d.Role(),
				Digest: fmt.Sprintf("%016x", d.Config.Digest()), Version: buildinfo.String(), Sections: sections,
				ReadToken: d.Config.API.ReadToken})
			r.Handle("/", page)
			r.Handle("/static/*", page)
		}})
}

// pageSource is the node as the status page reads it: its tickets in the
// API's shape.
type pageSource struct{ *node.Node }

func (p pageSource) Tickets(now time.Time) []api.Ticket {
	var out []api.Ticket
	for _, v := range p.Views() {
		out = append(out, httpapi.FromView(v, now))
	}
	return out
}

// listenAPI binds the API's address: HTTPS with the member's certificate
// when it has one.
func (d *Daemon) listenAPI() (net.Listener, error) {
	ln, err := net.Listen("tcp", d.Config.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("HTTP API: %w", err)
	}
	if src := d.Config.TLS.Source; src != nil {
		d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geobooth_tls_certificate_expiry_timestamp_seconds",
			Help: "When this member's TLS certificate expires (Unix time); the file is re-read when it changes."},
			func() float64 { return float64(src.NotAfter().Unix()) }))
		// HTTPS with the member's certificate; a client certificate of
		// the CA is verified when one is shown (the token still decides).
		ln = tls.NewListener(ln, src.Server(tls.VerifyClientCertIfGiven))
	}
	return ln, nil
}

// nodeConfig is the ticket runtime's part of the configuration. The
// tickets a volume follows ask for local checks (the replica's data must
// be good before acquiring).
func nodeConfig(f *config.File) node.Config {
	tickets := slices.Clone(f.Tickets)
	for i := range tickets {
		for _, v := range f.Volumes {
			if v.Ticket == tickets[i].Name {
				tickets[i].LocalChecks = true
			}
		}
	}
	c := node.Config{ClusterName: f.Cluster.Name, ConfigPath: f.Path, Self: f.Self, StateDir: f.StateDir,
		Tickets: tickets, HandlerTimeouts: f.HandlerTimeouts, Digest: f.Digest(), MaxElections: f.MaxElections,
		MaxTimeSkew: f.Cluster.MaxTimeSkew.D(), Key: f.Key, NextKey: f.NextKey}
	cl := f.TicketCluster()
	for i, m := range f.Cluster.Members {
		c.Members = append(c.Members, node.Member{Name: m.Name, Role: cl.Members[i].Role, Weight: m.Weight,
			Address: m.Address, API: m.API})
	}
	return c
}
