package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/geobooth/geobooth/booth"
)

// runBooth runs geoboothd as the arbitrator of a Booth cluster, from its
// booth.conf (docs/booth.md).
func runBooth(ctx context.Context, path, address string, log *slog.Logger) int {
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
	s, err := booth.NewServer(cfg, self, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geoboothd:", err)
		return 2
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
