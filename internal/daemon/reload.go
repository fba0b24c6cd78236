package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/geobooth/geobooth/internal/config"
)

// Reload applies a configuration read again (SIGHUP): the DNS zones and
// zone files, failover names and health checks, the API tokens and the
// log level, all or nothing. A change to what needs a restart is refused
// with its name, and the running configuration stays. (TLS files are
// re-read by their own source.)
func (d *Daemon) Reload(next *config.File) error {
	if why := restartNeeded(d.Config, next); len(why) > 0 {
		return fmt.Errorf("not reloaded: %s changed, which needs a restart (docs/operations.md); the running configuration stays", strings.Join(why, ", "))
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.dns != nil {
		if err := d.dns.Reload(next.DNS); err != nil {
			return fmt.Errorf("not reloaded: DNS: %w; the running configuration stays", err)
		}
		d.tagZones(d.dns.ZonesDigest())
	}
	if d.hooks != nil && !reflect.DeepEqual(d.alerts, next.Alerts) {
		d.hooks.Set(next.Alerts)
		d.alerts = next.Alerts
	}
	d.tokens.Store(&[]string{next.API.Token, next.API.NextToken})
	if d.LogLevel != nil {
		d.LogLevel.Set(LogLevel(next.Log.Level))
	}
	return nil
}

// Running is the configuration in force.
func (d *Daemon) Running() *config.File { return d.Config }

// LogLevel is the slog level a [log] level names (info by default).
func LogLevel(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// restartNeeded names the settings that differ between the running
// configuration and next and that only a restart applies.
func restartNeeded(cur, next *config.File) []string {
	var why []string
	differs := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			why = append(why, name)
		}
	}
	if cur.Digest() != next.Digest() {
		why = append(why, "the cluster (members or ticket settings)")
	}
	differs("local", cur.Local, next.Local)
	differs("state_dir", cur.StateDir, next.StateDir)
	differs("max_elections", cur.MaxElections, next.MaxElections)
	if !bytes.Equal(cur.Key, next.Key) || !bytes.Equal(cur.NextKey, next.NextKey) {
		why = append(why, "the auth key files' contents")
	}
	differs("api.listen", cur.API.Listen, next.API.Listen)
	differs("api.read_token", cur.API.ReadToken, next.API.ReadToken)
	differs("log.format", cur.Log.Format, next.Log.Format)
	differs("[serf]", cur.Serf, next.Serf)
	differs("[pacemaker]", cur.Pacemaker, next.Pacemaker)
	differs("[[volumes]]", cur.Volumes, next.Volumes)
	differs("[tls] file names", [3]string{cur.TLS.CAFile, cur.TLS.CertFile, cur.TLS.KeyFile},
		[3]string{next.TLS.CAFile, next.TLS.CertFile, next.TLS.KeyFile})
	if cur.DNS.Enabled() != next.DNS.Enabled() {
		why = append(why, "[dns] (added or removed)")
	}
	return why
}
