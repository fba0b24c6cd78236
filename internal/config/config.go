// Package config reads a geoboothd TOML file: the cluster every member
// must agree on, this member's own settings, and the sections of the
// packages the daemon wires (DNS, Pacemaker, replication, membership).
//
// Every problem is reported with the file, the line and the key; unknown
// keys are errors; durations must be strings ("10s"); relative paths
// resolve against the file's folder. Load reports all problems at once.
package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/geobooth/geobooth/dnsfail"
	"github.com/geobooth/geobooth/internal/alerts"
	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/tlsfiles"
	"github.com/geobooth/geobooth/pacemaker"
	"github.com/geobooth/geobooth/replication"
	"github.com/geobooth/geobooth/ticket"
)

// File is one daemon's configuration.
type File struct {
	// Local names this member (one of Cluster.Members).
	Local string `toml:"local"`
	// StateDir holds the durable ticket state (default run/<local>).
	StateDir string `toml:"state_dir"`
	// MaxElections bounds the elections of this member's own under way at
	// once (default 256); when thousands of tickets fail over together,
	// the others wait their turn.
	MaxElections int `toml:"max_elections"`
	// AuthKeyFile holds the cluster key (8 to 64 bytes), as Booth's authfile.
	AuthKeyFile string `toml:"auth_key_file"`
	// NextAuthKeyFile, during a key rotation, holds the key that is also
	// accepted.
	NextAuthKeyFile string `toml:"next_auth_key_file"`
	// ClusterFile, when set, names a file holding the cluster section (its
	// keys at top level), so every member can share one copy.
	ClusterFile string  `toml:"cluster_file"`
	Cluster     Cluster `toml:"cluster"`
	API         API     `toml:"api"`
	Log         Log     `toml:"log"`
	// Serf configures membership; it runs when the local member has a serf
	// address (cluster members' serf key) or serf.bind is set.
	Serf membership.Config `toml:"serf"`
	// Pacemaker drives the local CIB (sites only).
	Pacemaker pacemaker.Config `toml:"pacemaker"`
	// DNS is the member's authoritative DNS server for the failover zones.
	DNS dnsfail.Config `toml:"dns"`
	// Volumes are the replicated volumes this site holds a replica of
	// (sites only), each bound to a ticket.
	Volumes []replication.VolumeConfig `toml:"volumes"`
	// TLS: the cluster's CA and this member's certificate and key. When
	// set, the API is served over HTTPS and replication links are mutual
	// TLS between members of the CA.
	TLS TLS `toml:"tls"`
	// Alerts run a program or call a webhook on each event of the
	// member's timeline (internal/alerts).
	Alerts []alerts.Config `toml:"alerts"`

	// Path is the file this was read from (absolute).
	Path string `toml:"-"`
	// Key and NextKey are the key files' contents.
	Key, NextKey []byte `toml:"-"`
	// Tickets are the resolved ticket settings, in name order.
	Tickets []ticket.Config `toml:"-"`
	// HandlerTimeouts per ticket name.
	HandlerTimeouts map[string]time.Duration `toml:"-"`
	// Self is Local's index in Cluster.Members.
	Self int `toml:"-"`
}

// Cluster is the part every member must have identical (Booth's rule);
// its digest travels in every peer datagram.
type Cluster struct {
	Name        string                    `toml:"name"`
	MaxTimeSkew confkit.Duration          `toml:"max_time_skew"`
	Members     []Member                  `toml:"members"`
	Defaults    TicketSettings            `toml:"defaults"`
	Tickets     map[string]TicketSettings `toml:"tickets"`
}

// Member is one site or arbitrator.
type Member struct {
	Name string `toml:"name"`
	Role string `toml:"role"`
	// Address is the member's UDP address for the ticket protocol.
	Address string `toml:"address"`
	// Serf is the member's serf (membership) address.
	Serf string `toml:"serf"`
	// API is the member's HTTP API address, for operators and dashboards.
	API    string `toml:"api"`
	Weight int    `toml:"weight"`
}

// TicketSettings are one ticket's settings; unset ones come from the
// defaults table, then from Booth's defaults.
type TicketSettings struct {
	Mode                 *string           `toml:"mode"`
	Expire               *confkit.Duration `toml:"expire"`
	RenewalFreq          *confkit.Duration `toml:"renewal_freq"`
	AcquireAfter         *confkit.Duration `toml:"acquire_after"`
	Timeout              *confkit.Duration `toml:"timeout"`
	Retries              *int              `toml:"retries"`
	MaxClockDrift        *float64          `toml:"max_clock_drift"`
	StopTimeout          *confkit.Duration `toml:"stop_timeout"`
	BeforeAcquireHandler *string           `toml:"before_acquire_handler"`
	HandlerTimeout       *confkit.Duration `toml:"handler_timeout"`
	AttrPrereq           []string          `toml:"attr_prereq"`
	Weights              []int             `toml:"weights"`
}

// API is the HTTP API and dashboard.
type API struct {
	Listen string `toml:"listen"`
	// TokenFile holds the bearer token mutations need.
	TokenFile string `toml:"token_file"`
	// NextTokenFile, during a rotation, holds a token also accepted.
	NextTokenFile string `toml:"next_token_file"`
	// ReadToken: reads need the token too.
	ReadToken bool `toml:"read_token"`

	Token, NextToken string `toml:"-"`
}

// TLS names a member's TLS files (see kit/tlsfiles).
type TLS struct {
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Source serves them, re-read when they change (set by Load).
	Source *tlsfiles.Source `toml:"-"`
}

// Log selects the log format and level.
type Log struct {
	Format string `toml:"format"` // text | json
	Level  string `toml:"level"`  // debug | info | warn | error
}

// Error is one configuration problem.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key != "" {
		return loc + ": " + e.Key + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

// Errors is every problem Load found.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the file. stateDir, when not empty, overrides
// state_dir (the -state-dir flag).
func Load(path, stateDir string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	raw := fileTOML{File: DefaultFile()}
	raw.Path = abs
	md, err := toml.Decode(string(src), &raw)
	if err == nil {
		err = raw.decodeArrays(&md)
	}
	f := &raw.File
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Errors{{File: abs, Line: pe.Position.Line, Key: pe.LastKey, Msg: strings.TrimPrefix(pe.Message, "toml: ")}}
		}
		return nil, Errors{{File: abs, Msg: err.Error()}}
	}
	lines := confkit.KeyLines(string(src))
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, Error{File: abs, Line: lines.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, k := range md.Undecoded() {
		add(k.String(), "unknown key")
	}
	addCluster := add
	if f.ClusterFile != "" {
		if md.IsDefined("cluster") {
			add("cluster_file", "set together with a [cluster] table: use one or the other")
		}
		cpath := f.resolve(f.ClusterFile)
		cerrs := decodeClusterFile(cpath, &f.Cluster)
		if len(cerrs) > 0 && cerrs[0].Line < 0 {
			add("cluster_file", "%s", cerrs[0].Msg)
		} else if len(cerrs) > 0 {
			// Undecodable: checking what was half read would only add noise.
			return nil, append(errs, cerrs...)
		} else {
			csrc, _ := os.ReadFile(cpath)
			clines := confkit.KeyLines(string(csrc))
			addCluster = func(key, format string, args ...any) {
				key = strings.TrimPrefix(key, "cluster.")
				errs = append(errs, Error{File: cpath, Line: clines.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
			}
		}
	}
	if stateDir != "" {
		f.StateDir = stateDir
	}
	f.checkCluster(addCluster)
	f.check(add, md)
	f.checkGuard(add)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			if errs[i].File != errs[j].File {
				return errs[i].File == abs
			}
			return errs[i].Line < errs[j].Line
		})
		return nil, errs
	}
	return f, nil
}

// DefaultFile returns a member file's defaults, each section's from its
// package: the loader decodes the file onto it, and each [[volumes]] and
// [[alerts]] entry onto its package's default entry. A setting whose
// default depends on another (state_dir on local, a ticket's renewal on
// its expire) is filled where it is resolved.
func DefaultFile() File {
	return File{MaxElections: 256, Cluster: Cluster{MaxTimeSkew: confkit.Duration(ticket.DefaultMaxTimeSkew)},
		Serf: membership.Default(), Pacemaker: pacemaker.Default(), DNS: dnsfail.Default()}
}

// fileTOML is a member file as decoded: its arrays of tables are decoded
// entry by entry onto their defaults (decodeArrays).
type fileTOML struct {
	File
	Volumes []toml.Primitive `toml:"volumes"`
	Alerts  []toml.Primitive `toml:"alerts"`
}

func (r *fileTOML) decodeArrays(md *toml.MetaData) error {
	for _, p := range r.Volumes {
		v := replication.DefaultVolume()
		if err := md.PrimitiveDecode(p, &v); err != nil {
			return err
		}
		r.File.Volumes = append(r.File.Volumes, v)
	}
	for _, p := range r.Alerts {
		a := alerts.DefaultConfig()
		if err := md.PrimitiveDecode(p, &a); err != nil {
			return err
		}
		r.File.Alerts = append(r.File.Alerts, a)
	}
	return nil
}

// decodeClusterFile reads a shared cluster file. A file that cannot be read
// comes back as one error with Line -1.
func decodeClusterFile(path string, c *Cluster) Errors {
	src, err := os.ReadFile(path)
	if err != nil {
		return Errors{{File: path, Line: -1, Msg: err.Error()}}
	}
	md, err := toml.Decode(string(src), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Errors{{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: strings.TrimPrefix(pe.Message, "toml: ")}}
		}
		return Errors{{File: path, Msg: err.Error()}}
	}
	lines := confkit.KeyLines(string(src))
	var errs Errors
	for _, k := range md.Undecoded() {
		errs = append(errs, Error{File: path, Line: lines.Line(k.String()), Key: k.String(), Msg: "unknown key"})
	}
	return errs
}

// SerfEnabled reports whether this member runs serf membership.
func (f *File) SerfEnabled() bool {
	if f.Serf.Bind != "" {
		return true
	}
	return f.Self >= 0 && f.Self < len(f.Cluster.Members) && f.Cluster.Members[f.Self].Serf != ""
}

// resolve makes a path absolute against the config file's folder.
func (f *File) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(f.Path), p)
}

// inState makes a path absolute against the state folder.
func (f *File) inState(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.StateDir, p)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TicketCluster returns the membership as the ticket package sees it.
func (f *File) TicketCluster() ticket.Cluster {
	var cl ticket.Cluster
	for _, m := range f.Cluster.Members {
		role := ticket.Site
		if m.Role == "arbitrator" {
			role = ticket.Arbitrator
		}
		cl.Members = append(cl.Members, ticket.Member{Name: m.Name, Role: role, Weight: m.Weight})
	}
	cl.Self = f.Self
	return cl
}

// Digest summarises the cluster section; members whose digests differ
// refuse each other's datagrams.
func (f *File) Digest() uint64 {
	type canon struct {
		Name    string
		Skew    time.Duration
		Members []Member
		Tickets []ticket.Config
	}
	b, _ := json.Marshal(canon{f.Cluster.Name, f.Cluster.MaxTimeSkew.D(), f.Cluster.Members, f.Tickets})
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}
