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
	"github.com/geobooth/geobooth/internal/buildinfo"
	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
	"github.com/geobooth/geobooth/site"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfgPath := flag.String("config", "", "daemon configuration file (TOML)")
	stateDir := flag.String("state-dir", "", "override state_dir from the configuration")
	check := flag.Bool("check", false, "validate the configuration and exit")
	version := flag.Bool("version", false, "print the version and exit")
	acceptMembers := flag.Bool("accept-membership-change", false,
		"start although the member list differs from the one the stored ticket state was written under: only when every member was stopped for the change (docs/operations.md)")
	flag.Parse()
	if *version {
		fmt.Println("geoboothd", buildinfo.String())
		return 0
	}
	if *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "geoboothd: -config FILE is required")
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
	log := newLogger(cfg.Log)
	var d *daemon.Daemon
	if cfg.Cluster.Members[cfg.Self].Role == "site" {
		d, err = site.New(cfg, log)
	} else {
		d, err = arbitrator.New(cfg, log)
	}
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	d.AcceptMembershipChange = *acceptMembers
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP re-reads what can change under a running member: the TLS
	// files (also re-read by themselves within a second of a change). The
	// rest of the configuration is read at start: it no longer terminates
	// the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if src := cfg.TLS.Source; src != nil {
				if err := src.Reload(); err != nil {
					log.Error("SIGHUP: the TLS files do not load; the previous ones stay in use", "err", err)
					continue
				}
			}
			log.Info("SIGHUP: TLS files re-read; other settings take effect at a restart (docs/operations.md)")
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("geoboothd failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(c config.Log) *slog.Logger {
	level := slog.LevelInfo
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
