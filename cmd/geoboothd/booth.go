package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/geobooth/geobooth/booth"
	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/boothsite"
	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/internal/alerts"
	"github.com/geobooth/geobooth/internal/dashboard"
	"github.com/geobooth/geobooth/kit/buildinfo"
	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/netcap"
	"github.com/geobooth/geobooth/pacemaker"
)

// boothOptions are the flags of the Booth mode.
type boothOptions struct {
	config, address string
	// status: the loopback address:port of the status listener.
	status string
	// dns, zones: the DNS listener and the zones file, for DNS failover
	// following the Booth tickets; stateDir keeps its serials and the
	// tickets' state left for the cut-over to geobooth's own protocol.
	dns, zones, stateDir string
	// alerts: a file of [[alerts]] hooks run on the tickets' events.
	alerts string
	// token: the bearer token file with which ticketctl may grant and
	// revoke at a site's status listener.
	token string
	// volumes: a site's replicated volumes under the Booth tickets.
	volumes string
}

// runBooth runs geoboothd as a member of a Booth cluster (a site or the
// arbitrator, as its booth.conf says), from that booth.conf (docs/booth.md); it also serves its status and metrics over
// HTTP and DNS failover on the Booth tickets when asked. With check, it
// only validates what it would load and says so.
func runBooth(ctx context.Context, o boothOptions, check bool, log *slog.Logger) int {
	p, err := loadBoothParts(o, check)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
	}
	cfg, self, hooks, token := p.cfg, p.self, p.hooks, p.token
	if check {
		fmt.Printf("%s: ok (%s %s, %d tickets, authfile %v, DNS %v, %d volumes)\n", cfg.Path, role(cfg, self), self, len(cfg.Tickets), cfg.Authfile != "", o.dns != "", len(p.volumes.Volumes))
		return 0
	}
	reg := prometheus.NewRegistry()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geobooth_build_info",
		Help: "The running build: version, Go version and the protocol it speaks (here Booth's)."}, []string{"version", "goversion", "wire"})
	info.WithLabelValues(buildinfo.String(), runtime.Version(), "booth/0x00010003").Set(1)
	reg.MustRegister(info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := booth.NewServer(cfg, self, log, reg)
	if err == nil && role(cfg, self) == "site" {
		err = useCIB(ctx, s, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
	}
	if token != "" {
		s.AcceptCommands(token)
	}
	// A part that fails (DNS on a port in use) stops the member.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vols, err := boothVolumes(ctx, p.volumes, s, log, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
	}
	defer vols.Close()
	if o.stateDir != "" {
		s.LeaveHandover(o.stateDir)
	} else {
		log.Warn("no -state-dir: at the cut-over to geobooth's own protocol this member will start without state and abstain for a lease (docs/booth.md)")
	}
	startAlerts(ctx, hooks, s, log, reg)
	var dnsSrv *dnsfail.Server
	dnsErr := make(chan error, 1)
	if o.dns != "" {
		if dnsSrv, err = boothDNS(o, cfg, s, log, reg); err != nil {
			fmt.Fprintln(os.Stderr, "geoboothd:", err)
			return 2
		}
		s.OnChange(dnsSrv.Changed)
		go func() {
			err := dnsSrv.Run(ctx)
			dnsErr <- err
			if err != nil {
				cancel()
			}
		}()
	}
	if o.status != "" {
		stop, err := serveStatus(o.status, boothStatus(s, dnsSrv, vols, reg), log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "geoboothd:", err)
			return 2
		}
		defer stop()
	}
	err = s.Run(ctx)
	cancel()
	if dnsSrv != nil {
		err = errors.Join(err, <-dnsErr)
	}
	if err != nil {
		log.Error("geoboothd failed", "err", err)
		return 1
	}
	return 0
}

// boothParts is what the Booth mode loads before it runs.
type boothParts struct {
	cfg   *boothconf.Config
	self  netip.Addr
	hooks []alerts.Config
	token string
	// volumes: empty without -booth-volumes.
	volumes *boothsite.File
}

// loadBoothParts reads and checks what the Booth mode loads; with check,
// also what running reads later (the engine's view of booth.conf, the
// authfile).
func loadBoothParts(o boothOptions, check bool) (boothParts, error) {
	var p boothParts
	var err error
	p.cfg, p.self, err = loadBooth(o)
	if err == nil && o.dns != "" {
		_, _, err = zonesConfig(o, p.cfg)
	}
	if err == nil && o.alerts != "" {
		p.hooks, err = loadAlerts(o.alerts)
	}
	if err == nil && o.token != "" {
		p.token, err = loadBoothToken(o, p.cfg, p.self)
	}
	p.volumes = &boothsite.File{}
	if err == nil && o.volumes != "" {
		p.volumes, err = loadBoothVolumes(o, p.cfg, p.self)
	}
	if err == nil && check {
		_, err = booth.NewEngine(p.cfg, p.self, nil)
		if err == nil && p.cfg.Authfile != "" {
			_, err = booth.LoadAuthKey(p.cfg.Authfile)
		}
	}
	return p, err
}

// loadBoothToken reads -booth-token: for ticketctl's grant and revoke at
// a site's status listener.
func loadBoothToken(o boothOptions, cfg *boothconf.Config, self netip.Addr) (string, error) {
	switch {
	case o.status == "":
		return "", errors.New("-booth-token needs -booth-http (the listener it guards)")
	case role(cfg, self) != "site":
		return "", errors.New("-booth-token: an arbitrator takes no commands on Booth's protocol (grant and revoke at a site)")
	}
	b, err := confkit.ReadSecret(o.token)
	if err != nil {
		return "", fmt.Errorf("-booth-token: %w", err)
	}
	if len(b) < 16 {
		return "", fmt.Errorf("-booth-token %s: a token of %d characters: use at least 16 (ticketctl keygen -token makes one)", o.token, len(b))
	}
	return string(b), nil
}

// loadBoothVolumes reads -booth-volumes: a site's replicated volumes.
func loadBoothVolumes(o boothOptions, cfg *boothconf.Config, self netip.Addr) (*boothsite.File, error) {
	switch {
	case role(cfg, self) != "site":
		return nil, errors.New("-booth-volumes: only a site holds a replica (this member is the arbitrator)")
	case o.stateDir == "":
		return nil, errors.New("-booth-volumes needs -state-dir DIR (the volumes' metadata, and their relative paths)")
	}
	return boothsite.Load(o.volumes, cfg, self, o.stateDir)
}

// boothVolumes opens a site's replicated volumes, starts their links and
// makes them follow the Booth tickets (an empty set without volumes).
func boothVolumes(ctx context.Context, f *boothsite.File, s *booth.Server, log *slog.Logger, reg prometheus.Registerer) (*boothsite.Volumes, error) {
	vols, err := boothsite.Open(f, log.With("component", "replication"), reg, s.Note)
	if err != nil {
		return nil, err
	}
	if err := vols.Start(ctx); err != nil {
		vols.Close()
		return nil, err
	}
	if len(vols.List()) > 0 {
		s.UseGuard(vols, vols.Tickets())
	}
	return vols, nil
}

// loadAlerts reads a file of [[alerts]] entries, each decoded onto the
// hooks' defaults and checked as in a member file (a relative program is
// the file's folder's).
func loadAlerts(path string) ([]alerts.Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-booth-alerts: %w", err)
	}
	var raw struct {
		Alerts []toml.Primitive `toml:"alerts"`
	}
	md, err := toml.Decode(string(src), &raw)
	if err != nil {
		return nil, fmt.Errorf("-booth-alerts %s: %w", path, err)
	}
	lines := confkit.KeyLines(string(src))
	var cfgs []alerts.Config
	var errs []string
	for i, p := range raw.Alerts {
		a := alerts.DefaultConfig()
		if err := md.PrimitiveDecode(p, &a); err != nil {
			return nil, fmt.Errorf("-booth-alerts %s: %w", path, err)
		}
		for _, e := range a.Validate(filepath.Dir(path)) {
			key := fmt.Sprintf("alerts.%d.%s", i, e.Key)
			errs = append(errs, fmt.Sprintf("%s:%d: %s: %s", path, lines.Line(key), key, e.Msg))
		}
		cfgs = append(cfgs, a)
	}
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Sprintf("%s:%d: %s: unknown key", path, lines.Line(k.String()), k))
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("-booth-alerts %s: no [[alerts]] entries", path)
	}
	return cfgs, nil
}

// startAlerts runs the alert hooks, if any, on the member's events until
// ctx ends.
func startAlerts(ctx context.Context, hooks []alerts.Config, s *booth.Server, log *slog.Logger, reg prometheus.Registerer) {
	if len(hooks) == 0 {
		return
	}
	h := alerts.New(s.Self().String(), hooks, boothTimeline(s), log.With("component", "alerts"), reg)
	go func() {
		if err := h.Run(ctx); err != nil {
			log.Error("alert hooks", "err", err)
		}
	}()
}

// boothTimeline is the Booth member's events as alert hooks read them.
func boothTimeline(s *booth.Server) alerts.Source {
	return func(seq uint64) ([]alerts.Event, bool, <-chan struct{}) {
		evs, gap, changed := s.EventsSince(seq)
		out := make([]alerts.Event, len(evs))
		for i, e := range evs {
			out[i] = alerts.Event{Seq: e.Seq, Time: e.Time, Ticket: e.Ticket, Kind: e.Kind, Term: e.Term, Owner: e.Owner, Reason: e.Reason}
		}
		return out, gap, changed
	}
}

// role is self's role in cfg.
func role(cfg *boothconf.Config, self netip.Addr) string {
	for _, m := range cfg.Members {
		if m.Address == self.Unmap() && m.Arbitrator {
			return "arbitrator"
		}
	}
	return "site"
}

// useCIB makes a Booth site keep its tickets in the local CIB with
// crm_ticket (from PATH, on CIB_file when the environment sets it, as
// boothd does), after Booth's probe that crm_ticket grants atomically.
func useCIB(ctx context.Context, s *booth.Server, log *slog.Logger) error {
	c := &pacemaker.CrmTicket{Path: "crm_ticket", CrmMon: "crm_mon"}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.ProbeAtomicGrant(pctx); err != nil {
		return err
	}
	log.Info("booth site: tickets go into the CIB with crm_ticket", "cib_file", os.Getenv("CIB_file"))
	s.UseCIB(boothCIB{c})
	return nil
}

// boothCIB is the CIB of a Booth site, through crm_ticket.
type boothCIB struct{ c *pacemaker.CrmTicket }

func (b boothCIB) Load(ctx context.Context, ticket string) (booth.CIBTicket, error) {
	t, err := b.c.BoothState(ctx, ticket)
	return booth.CIBTicket(t), err
}

func (b boothCIB) SetAttr(ctx context.Context, ticket, name, value string) error {
	return b.c.SetAttr(ctx, ticket, name, value)
}

func (b boothCIB) DeleteAttr(ctx context.Context, ticket, name string) error {
	return b.c.DeleteAttr(ctx, ticket, name)
}

func (b boothCIB) Write(ctx context.Context, w booth.CIBWrite, expires time.Time) error {
	return b.c.WriteBooth(ctx, w.Ticket, pacemaker.BoothWrite{Granted: w.Granted, Owner: w.Owner, Expires: expires, Term: w.Term, CfgName: w.CfgName})
}

// hostAddrs are this host's interface addresses.
func hostAddrs() []netip.Addr {
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// serveStatus serves h on addr, which must be a loopback address: the
// Booth mode's status listener has no TLS or tokens (docs/booth.md).
func serveStatus(addr string, h http.Handler, log *slog.Logger) (func(), error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("-booth-http %q: give a loopback address and port (e.g. 127.0.0.1:7809): this listener has no TLS", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-booth-http: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(netcap.New(ln, 64, nil)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("booth status listener", "err", err)
		}
	}()
	return func() { srv.Close() }, nil
}

// loadBooth reads booth.conf and finds this member in it.
func loadBooth(o boothOptions) (*boothconf.Config, netip.Addr, error) {
	cfg, err := boothconf.LoadConfig(o.config)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	if o.address != "" {
		self, err := netip.ParseAddr(o.address)
		if err != nil {
			return nil, self, fmt.Errorf("-booth-address: %w", err)
		}
		return cfg, self, nil
	}
	m, err := cfg.FindSelf(hostAddrs())
	return cfg, m.Address, err
}

// zonesConfig reads the zones file for DNS failover on the Booth tickets:
// the one a geobooth member reads, its failover names' sites named by the
// sites' addresses in booth.conf. It also returns every member's name.
func zonesConfig(o boothOptions, cfg *boothconf.Config) (dnsfail.Config, []string, error) {
	if o.zones == "" || o.stateDir == "" {
		return dnsfail.Config{}, nil, errors.New("-booth-dns needs -booth-zones FILE and -state-dir DIR (for the zones' serials)")
	}
	zones, err := filepath.Abs(o.zones)
	if err != nil {
		return dnsfail.Config{}, nil, err
	}
	dc := dnsfail.Default()
	dc.Listen, dc.ZonesFile = o.dns, zones
	var sites, members []string
	for _, m := range cfg.Members {
		members = append(members, m.Address.String())
		if !m.Arbitrator {
			sites = append(sites, m.Address.String())
		}
	}
	if errs := dc.Load(".", sites); len(errs) > 0 {
		return dc, nil, fmt.Errorf("%s: %w", o.zones, errors.Join(fieldErrors(errs)...))
	}
	return dc, members, nil
}

// boothDNS sets up DNS failover on the Booth tickets, its owners as the
// arbitrator follows their leases.
func boothDNS(o boothOptions, cfg *boothconf.Config, s *booth.Server, log *slog.Logger, reg prometheus.Registerer) (*dnsfail.Server, error) {
	dc, members, err := zonesConfig(o, cfg)
	if err != nil {
		return nil, err
	}
	return dnsfail.New(dnsfail.Options{Config: dc, Self: s.Self().String(), StateDir: filepath.Join(o.stateDir, "dns"),
		Owners: s.Owner, Log: log.With("component", "dns"), Registry: reg, Members: members})
}

func fieldErrors(fe []confkit.FieldError) []error {
	out := make([]error, len(fe))
	for i, e := range fe {
		out[i] = e
	}
	return out
}

// boothStatus is the status listener's handler: the Booth member's
// status, metrics and page, with DNS's status (ticketctl dns) when it
// serves DNS.
func boothStatus(s *booth.Server, dnsSrv *dnsfail.Server, vols *boothsite.Volumes, reg prometheus.Gatherer) http.Handler {
	var sections []string
	if dnsSrv != nil {
		sections = []string{"/api/v1/dns"}
	}
	if len(vols.List()) > 0 {
		sections = append(sections, "/api/v1/replication")
	}
	page := dashboard.Handler(dashboard.Options{Source: s, Member: s.Self().String(), Role: s.Role() + " (Booth)",
		Version: buildinfo.String(), Sections: sections})
	mux := http.NewServeMux()
	if dnsSrv != nil {
		mux.HandleFunc("GET /api/v1/dns", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(dnsSrv.Status())
		})
	}
	vols.Mount(mux)
	mux.Handle("/", s.Handler(reg, page))
	return mux
}
