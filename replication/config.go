package replication

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Size is a byte count read from TOML as an integer or a string with a
// binary unit ("64MiB", "1GiB", "512KiB").
type Size int64

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*s = Size(x)
		return nil
	case string:
		n, err := ParseSize(x)
		*s = Size(n)
		return err
	}
	return fmt.Errorf("a size is an integer (bytes) or a string like \"64MiB\"; got %v (%T)", v, v)
}

// ParseSize reads "64MiB", "1GiB", "4096", "100MB".
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB, TiB)", s)
	}
	return n * mult, nil
}

// PeerConfig names a replica's peer and its replication address.
type PeerConfig struct {
	Name    string `toml:"name"`
	Address string `toml:"address"`
}

// Split-brain policies (both sides wrote since they parted).
const (
	// SplitBrainDisconnect: refuse, report, wait for the operator.
	SplitBrainDisconnect = "disconnect"
	// SplitBrainManual is another name for SplitBrainDisconnect.
	SplitBrainManual = "manual"
	// SplitBrainDiscardSecondary: the side that is primary now wins.
	SplitBrainDiscardSecondary = "discard-secondary"
	// SplitBrainDiscardLeastChanges: the side with fewer changes loses.
	SplitBrainDiscardLeastChanges = "discard-least-changes"
	// SplitBrainDiscardYoungerPrimary: the side promoted last loses.
	SplitBrainDiscardYoungerPrimary = "discard-younger-primary"
)

// VolumeConfig is one [[volumes]] entry of a site's configuration.
type VolumeConfig struct {
	Name string `toml:"name"`
	// Ticket binds the volume to a ticket: only its holder is primary.
	Ticket string `toml:"ticket"`
	Size   Size   `toml:"size"`
	// Path is the backing file (created sparse when missing); metadata,
	// bitmaps and the activity log sit next to it.
	Path string `toml:"path"`
	// MetaDir holds the volume's metadata (.meta, .al, .bitmap-PEER):
	// beside Path when empty; geoboothd sets its state folder for a block
	// device, since /dev does not survive a reboot.
	MetaDir string `toml:"meta_dir"`
	// Listen is this member's replication address (TCP).
	Listen string       `toml:"listen"`
	Peers  []PeerConfig `toml:"peers"`
	// NBDListen exports the volume over NBD while primary.
	NBDListen string `toml:"nbd_listen"`
	// NBDTLS: "off" (default), "on" (NBD_OPT_STARTTLS offered with the
	// member's certificate) or "require" (plain clients refused).
	NBDTLS string `toml:"nbd_tls"`
	// NBDTLSClients, when set, are the only client certificate names (of
	// the cluster's CA) the export serves; clients must show one.
	NBDTLSClients []string `toml:"nbd_tls_clients"`
	// Export is the NBD export name (default: the volume's name); it is
	// also served as the default (empty) name.
	Export     string `toml:"export"`
	SplitBrain string `toml:"split_brain"`
	// Protocol: "A" (asynchronous, the default: a write completes when it
	// is on the local replica and queued for the peers) or "C" (a write
	// completes only when every connected peer has it on stable storage:
	// a failover loses nothing acknowledged; for sites at metro
	// distance). A peer that is not connected does not hold writes back:
	// they go into its bitmap, as in A.
	Protocol string `toml:"protocol"`
	// OnCongestion: what protocol A does when a peer has more than
	// send_buffer queued or unacknowledged. "pull-ahead" (the default):
	// the primary goes on and tracks the peer in its bitmap, resyncing it
	// when the link drains (the application never waits for the WAN);
	// "block": writers wait until the peer drained below send_buffer
	// (DRBD's default; no catch-up resync, the lag stays bounded by
	// send_buffer).
	OnCongestion string `toml:"on_congestion"`
	// ResyncRate caps resync traffic (bytes/s; 0: no cap).
	ResyncRate Size `toml:"resync_rate"`
	// SendBuffer bounds what is queued or unacknowledged per peer; beyond
	// it the primary pulls ahead (tracks the peer in its bitmap only).
	SendBuffer Size `toml:"send_buffer"`
	// MaxEpoch bounds one epoch (a secondary holds an epoch in memory until
	// its barrier).
	MaxEpoch Size `toml:"max_epoch"`
	// ALExtents is how many 4 MiB extents the activity log holds (256, 1
	// GiB, by default; DRBD's default is 1237): after a primary's crash,
	// they are resynced whole. A sequential stream's log is written a
	// window ahead of it, a quarter of the log at most (32 extents).
	ALExtents int `toml:"al_extents"`
	// Csums: a resync sends block checksums first and skips equal blocks.
	Csums bool `toml:"csums"`
	// NewReplicas says how a replica without metadata starts. "sync" (the
	// default): one on a file geobooth creates (blank) is equal to every
	// other blank one and starts UpToDate; one on storage that already
	// held data (a device, an existing file) is Inconsistent and takes a
	// full sync from the first primary (a forced grant, or the operator's
	// skip-initial-sync for devices known blank). "full": every new
	// replica is Inconsistent, blank or not. "uptodate": every new replica
	// is declared equal, DRBD's skipped initial sync; only for copies the
	// operator made identical before the first start.
	NewReplicas  string           `toml:"new_replicas"`
	PingInterval confkit.Duration `toml:"ping_interval"`
	Timeout      confkit.Duration `toml:"timeout"`
	// DrainTimeout bounds a planned move's drain (every epoch acknowledged
	// by every peer); past it the move aborts and the owner keeps the
	// ticket.
	DrainTimeout confkit.Duration `toml:"drain_timeout"`
}

// DefaultVolume returns a volume section's defaults: the loader decodes
// each [[volumes]] entry onto it, and code that builds a volume starts
// from it.
func DefaultVolume() VolumeConfig {
	return VolumeConfig{SplitBrain: SplitBrainDisconnect, ResyncRate: 100 << 20, SendBuffer: 64 << 20,
		MaxEpoch: 4 << 20, ALExtents: 256, Csums: true, NewReplicas: "sync", Protocol: "A", OnCongestion: "pull-ahead",
		PingInterval: confkit.Duration(time.Second), Timeout: confkit.Duration(5 * time.Second),
		DrainTimeout: confkit.Duration(30 * time.Second)}
}

// resolved returns the config with its derived values: the export named
// after the volume unless set, and the split-brain policy's alias
// replaced by its name (both ends compare policies in the handshake).
// Defaults are not filled here: a config starts from DefaultVolume().
func (c VolumeConfig) resolved() VolumeConfig {
	if c.SplitBrain == SplitBrainManual {
		c.SplitBrain = SplitBrainDisconnect
	}
	if c.Export == "" {
		c.Export = c.Name
	}
	return c
}

// Validate reports every problem of the section.
func (c *VolumeConfig) Validate() []confkit.FieldError {
	var errs []confkit.FieldError
	bad := func(k, f string, a ...any) { errs = append(errs, confkit.Errorf(k, f, a...)) }
	if c.Name == "" {
		bad("name", "missing")
	}
	if c.Size <= 0 || c.Size%BlockSize != 0 {
		bad("size", "%d: must be a positive multiple of %d bytes", c.Size, BlockSize)
	}
	if c.Path == "" {
		bad("path", "missing: the backing file")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q: want host:port for replication (%v)", c.Listen, err)
	}
	if len(c.Peers) == 0 {
		bad("peers", "no peers: a replicated volume needs at least one")
	}
	seen := map[string]bool{}
	for i, p := range c.Peers {
		if p.Name == "" || seen[p.Name] {
			bad(fmt.Sprintf("peers.%d.name", i), "missing or repeated: %q", p.Name)
		}
		seen[p.Name] = true
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			bad(fmt.Sprintf("peers.%d.address", i), "%q: %v", p.Address, err)
		}
	}
	if c.NBDListen != "" {
		if _, _, err := net.SplitHostPort(c.NBDListen); err != nil {
			bad("nbd_listen", "%q: %v", c.NBDListen, err)
		}
	}
	switch c.NBDTLS {
	case "", "off", "on", "require":
	default:
		bad("nbd_tls", "%q: want off, on or require", c.NBDTLS)
	}
	if len(c.NBDTLSClients) > 0 && c.NBDTLS != "require" {
		bad("nbd_tls_clients", "needs nbd_tls = \"require\" (a plain client shows no certificate)")
	}
	switch c.SplitBrain {
	case SplitBrainDisconnect, SplitBrainManual, SplitBrainDiscardSecondary, SplitBrainDiscardLeastChanges, SplitBrainDiscardYoungerPrimary:
	default:
		bad("split_brain", "%q: want disconnect (or manual), discard-secondary, discard-least-changes or discard-younger-primary", c.SplitBrain)
	}
	if c.Protocol != "A" && c.Protocol != "C" {
		bad("protocol", "%q: want A (asynchronous) or C (synchronous)", c.Protocol)
	}
	if c.OnCongestion != "pull-ahead" && c.OnCongestion != "block" {
		bad("on_congestion", "%q: want pull-ahead or block", c.OnCongestion)
	}
	switch c.NewReplicas {
	case "sync", "full", "uptodate":
	default:
		bad("new_replicas", "%q: want sync, full or uptodate", c.NewReplicas)
	}
	if c.SendBuffer < 1<<20 {
		bad("send_buffer", "%d: at least 1MiB", c.SendBuffer)
	}
	if c.MaxEpoch < 64<<10 || c.MaxEpoch > 64<<20 {
		bad("max_epoch", "%d: between 64KiB and 64MiB", c.MaxEpoch)
	}
	if c.ALExtents < 4 {
		bad("al_extents", "%d: at least 4", c.ALExtents)
	}
	for _, d := range []struct {
		key string
		d   confkit.Duration
	}{{"ping_interval", c.PingInterval}, {"timeout", c.Timeout}, {"drain_timeout", c.DrainTimeout}} {
		if d.d <= 0 {
			bad(d.key, "must be positive")
		}
	}
	if c.ResyncRate < 0 {
		bad("resync_rate", "must not be negative")
	}
	return errs
}

// metaBase is the metadata files' path without their suffix.
func (c VolumeConfig) metaBase() string {
	if c.MetaDir == "" {
		return c.Path
	}
	return filepath.Join(c.MetaDir, filepath.Base(c.Path))
}
