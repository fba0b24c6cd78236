package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/geobooth/geobooth/booth"
	"github.com/geobooth/geobooth/kit/netcap"
)

// runBooth runs geoboothd as the arbitrator of a Booth cluster, from its
// booth.conf (docs/booth.md); with status set, it also serves its status
// and metrics over HTTP there.
func runBooth(ctx context.Context, path, address, status string, log *slog.Logger) int {
	cfg, err := booth.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
	}
	var self netip.Addr
	if address != "" {
		if self, err = netip.ParseAddr(address); err != nil {
			fmt.Fprintln(os.Stderr, "geoboothd: -booth-address:", err)
			return 2
		}
	} else {
		m, err := cfg.FindSelf(hostAddrs())
		if err != nil {
			fmt.Fprintln(os.Stderr, "geoboothd:", err)
			return 2
		}
		self = m.Address
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := booth.NewServer(cfg, self, log, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
	}
	if status != "" {
		stop, err := serveStatus(status, s.Handler(reg), log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "geoboothd:", err)
			return 2
		}
		defer stop()
	}
	if err := s.Run(ctx); err != nil {
		log.Error("geoboothd failed", "err", err)
		return 1
	}
	return 0
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
