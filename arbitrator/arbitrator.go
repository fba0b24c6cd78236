// Package arbitrator wires a geoboothd that runs as an arbitrator: it votes
// on every ticket, runs health checks from its vantage point and serves
// DNS, but holds no ticket, runs no resources and keeps no data.
package arbitrator

import (
	"log/slog"

	"github.com/geobooth/geobooth/internal/config"
	"github.com/geobooth/geobooth/internal/daemon"
)

// New prepares an arbitrator daemon.
func New(cfg *config.File, log *slog.Logger) (*daemon.Daemon, error) {
	return daemon.New(cfg, log), nil
}
