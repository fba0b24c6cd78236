// Package site wires a geoboothd that runs as a site: a member that can
// hold tickets, runs the guarded resources (through Pacemaker), holds a
// replica of the data and serves DNS. It adds no protocol logic: ownership
// is decided by the ticket package alone.
package site

import (
	"log/slog"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
)

// New prepares a site daemon.
func New(cfg *config.File, log *slog.Logger) (*daemon.Daemon, error) {
	d := daemon.New(cfg, log)
	return d, nil
}
