// Command geoboothd is the geobooth daemon for sites and arbitrators. It
// reads one TOML file, stays in the foreground, logs to stderr, and stops
// cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/geobooth/geobooth/arbitrator"
	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/kit/buildinfo"
	"github.com/geobooth/geobooth/site"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfgPath := flag.String("config", "", "daemon configuration `FILE` (TOML)")
	stateDir := flag.String("state-dir", "", "`DIR` to keep the state in, instead of state_dir from the configuration (with -booth-config: the DNS serials, and the tickets' state for the cut-over to geobooth's protocol; give the same folder as the member's state_dir)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	version := flag.Bool("version", false, "print the version and exit")
	acceptMembers := flag.Bool("accept-membership-change", false,
		"start although the member list differs from the one the stored ticket state was written under: only when every member was stopped for the change (docs/operations.md)")
	boothConf := flag.String("booth-config", "", "run as a member (site or arbitrator) of the Booth cluster of this booth.conf `FILE` instead of from -config (docs/booth.md)")
	boothAddr := flag.String("booth-address", "", "this member's `ADDRESS` in the booth.conf (default: the one of this host's addresses that it lists)")
	boothDNS := flag.String("booth-dns", "", "with -booth-config: serve DNS failover on the Booth tickets at this `ADDRESS:PORT` (with -booth-zones and -state-dir)")
	boothZones := flag.String("booth-zones", "", "with -booth-dns: the zones `FILE`, as [dns] zones_file of a geobooth member; failover sites are named by their booth.conf addresses")
	boothHTTP := flag.String("booth-http", "", "with -booth-config: serve status (ticketctl list/peers) and /metrics on this loopback `ADDRESS:PORT`")
	boothToken := flag.String("booth-token", "", "with -booth-http at a site: ticketctl may grant and revoke there with this bearer token `FILE` (as [api] token_file; ticketctl keygen -token makes one)")
	boothAlerts := flag.String("booth-alerts", "", "with -booth-config: run the alert hooks of this `FILE` ([[alerts]] entries, as in a geobooth member file) on the Booth tickets' events")
	boothVolumes := flag.String("booth-volumes", "", "with -booth-config at a site: replicate the volumes of this `FILE` under the Booth tickets (auth_key_file, [tls] and [[volumes]] as in a geobooth member file, peers named by their booth.conf addresses; needs -state-dir)")
	man := flag.Bool("man", false, "print the manual page (roff) and exit, e.g. geoboothd -man | man -l -")
	flag.Parse()
	if *version {
		fmt.Println("geoboothd", buildinfo.String())
		return 0
	}
	if *man {
		fmt.Print(manPage(flag.CommandLine))
		return 0
	}
	if *boothConf != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runBooth(ctx, boothOptions{config: *boothConf, address: *boothAddr, status: *boothHTTP,
			dns: *boothDNS, zones: *boothZones, stateDir: *stateDir, alerts: *boothAlerts, token: *boothToken, volumes: *boothVolumes}, *check, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	if *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "geoboothd: -config FILE or -booth-config FILE is required")
		return 2
	}
	cfg, err := config.Load(*cfgPath, *stateDir)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(os.Stderr, "geoboothd: config:", e)
			}
		} else {
			fmt.Fprintln(os.Stderr, "geoboothd:", err)
		}
		return 2
	}
	if *check {
		fmt.Printf("%s: ok (member %s, config digest %016x)\n", cfg.Path, cfg.Local, cfg.Digest())
		return 0
	}
	level := new(slog.LevelVar)
	level.Set(daemon.LogLevel(cfg.Log.Level))
	log := newLogger(cfg.Log, level)
	m, err := newMember(cfg, log, daemon.Options{AcceptMembershipChange: *acceptMembers, LogLevel: level})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP re-reads the TLS files and the configuration, and applies what
	// can change under a running member (daemon.Reload); a configuration
	// that does not load, or that changes what needs a restart, is refused
	// and the running one stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload(log, m, *cfgPath, *stateDir)
		}
	}()
	if err := m.Run(ctx); err != nil {
		log.Error("geoboothd failed", "err", err)
		return 1
	}
	return 0
}

// member is a running geoboothd in its role.
type member interface {
	Run(ctx context.Context) error
	Reload(next *config.File) error
	Running() *config.File
}

// newMember builds the member of the role its configuration gives it.
func newMember(cfg *config.File, log *slog.Logger, opt daemon.Options) (member, error) {
	if cfg.Cluster.Members[cfg.Self].Role == "site" {
		return site.New(cfg, log, opt)
	}
	return arbitrator.New(cfg, log, opt)
}

// reload handles a SIGHUP.
func reload(log *slog.Logger, d member, path, stateDir string) {
	log.Info("SIGHUP: reloading", "config", path)
	if src := d.Running().TLS.Source; src != nil {
		if err := src.Reload(); err != nil {
			log.Error("SIGHUP: the TLS files do not load; the previous ones stay in use", "err", err)
		}
	}
	next, err := config.Load(path, stateDir)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				log.Error("SIGHUP: config: " + e.Error() + "; the running configuration stays")
			}
		} else {
			log.Error("SIGHUP: the configuration does not load; the running one stays", "err", err)
		}
		return
	}
	if err := d.Reload(next); err != nil {
		log.Error("SIGHUP: " + err.Error())
		return
	}
	log.Info("SIGHUP: configuration reloaded (zones, failover names, health checks, API tokens, log level, TLS files)",
		"config_digest", fmt.Sprintf("%016x", next.Digest()))
}

func newLogger(c config.Log, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
