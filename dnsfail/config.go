package dnsfail

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Config is a member's [dns] section: where it serves, and the file with
// the zones every member serves alike.
type Config struct {
	// Listen is the UDP and TCP address of the authoritative server.
	Listen string `toml:"listen"`
	// ZonesFile holds the zones (shared by every member, like the cluster
	// file).
	ZonesFile string `toml:"zones_file"`
	// RateLimit bounds the UDP answers per second to one client network
	// (a /24, a /56); 0 turns response-rate limiting off.
	RateLimit int `toml:"rate_limit"`
	// RateLimitSlip: beyond the limit one answer in this many goes out
	// truncated, so that real clients retry over TCP (0: drop them all).
	RateLimitSlip int `toml:"rate_limit_slip"`

	// Zones are read from ZonesFile.
	Zones []ZoneConfig `toml:"-"`
}

// Default returns the [dns] section's defaults: the loader decodes the
// section onto it.
func Default() Config {
	return Config{RateLimit: DefaultRateLimit, RateLimitSlip: DefaultRateLimitSlip}
}

// zonesFile is the content of the shared zones file, as decoded: each
// failover entry is decoded onto DefaultFailover() (decodeZones).
type zonesFile struct {
	Zones []toml.Primitive `toml:"zones"`
	Keys  []KeyConfig      `toml:"keys"`
}

// zoneTOML is one [[zones]] entry, its failover entries still undecoded.
type zoneTOML struct {
	ZoneConfig
	Failover []toml.Primitive `toml:"failover"`
}

// decodeZones decodes the zones of a zones file, each failover entry onto
// DefaultFailover().
func decodeZones(md *toml.MetaData, prims []toml.Primitive) ([]ZoneConfig, error) {
	zones := make([]ZoneConfig, 0, len(prims))
	for _, p := range prims {
		var z zoneTOML
		if err := md.PrimitiveDecode(p, &z); err != nil {
			return nil, err
		}
		for _, fp := range z.Failover {
			f := DefaultFailover()
			if err := md.PrimitiveDecode(fp, &f); err != nil {
				return nil, err
			}
			z.ZoneConfig.Failover = append(z.ZoneConfig.Failover, f)
		}
		zones = append(zones, z.ZoneConfig)
	}
	return zones, nil
}

// KeyConfig is a TSIG key (HMAC-SHA256), for transfers and updates.
type KeyConfig struct {
	Name      string `toml:"name"`
	Algorithm string `toml:"algorithm"`
	// Secret is base64, as keymgr/tsig-keygen print it.
	Secret string `toml:"secret"`
}

// ZoneConfig is one [[zones]] entry.
type ZoneConfig struct {
	// Origin is the apex, e.g. "example.test.".
	Origin string `toml:"origin"`
	// File is an RFC 1035 zone file with the SOA, the NS and static
	// records (relative to the zones file).
	File     string           `toml:"file"`
	Failover []FailoverConfig `toml:"failover"`
	// AllowTransfer lists the addresses (or prefixes) allowed to transfer
	// the zone; TransferKey, when set, is the TSIG key they must sign with.
	AllowTransfer []string `toml:"allow_transfer"`
	TransferKey   string   `toml:"transfer_key"`
	// Notify lists the secondaries told of every change: "host:port" for
	// an unsigned NOTIFY (a secondary that accepts NOTIFY by address), or
	// { address = "host:port", key = "NAME" } for one signed with a key of
	// [[keys]].
	Notify []NotifyTarget `toml:"notify"`
	// Update pushes every change to an external primary (RFC 2136).
	Update *UpdateConfig `toml:"update"`
	// DNSSECKeys are the zone's key files (ticketctl dns keygen; relative
	// to the zones file): with one or more, the zone is signed online.
	DNSSECKeys []string `toml:"dnssec_keys"`

	keys    map[string]KeyConfig
	signers []*signer
	dir     string
}

// UpdateConfig is an external primary that receives RFC 2136 UPDATEs.
type UpdateConfig struct {
	Server string `toml:"server"`
	Key    string `toml:"key"`
	// Zone, when the external primary's zone differs from Origin.
	Zone string `toml:"zone"`
}

// FailoverConfig is a name whose answer follows a ticket.
type FailoverConfig struct {
	// Name is relative to the origin ("www") or absolute ("www.example.test.").
	Name   string           `toml:"name"`
	Type   string           `toml:"type"` // A, AAAA or CNAME
	TTL    confkit.Duration `toml:"ttl"`
	Ticket string           `toml:"ticket"`
	// Sites maps a site to its targets and how they are checked.
	Sites map[string]SiteTargets `toml:"sites"`
	// WhenUnhealthy: the owner's targets are all down: "owner" (serve them
	// anyway, the default), "fallback" or "nodata".
	WhenUnhealthy string `toml:"when_unhealthy"`
	// WhenNoOwner: no site holds a valid lease: "nodata" (the default) or
	// "fallback".
	WhenNoOwner string `toml:"when_no_owner"`
	// Fallback is what the operator names for those cases.
	Fallback []string    `toml:"fallback"`
	Health   HealthCheck `toml:"health"`
}

// SiteTargets are one site's answers for a failover name.
type SiteTargets struct {
	// Targets: addresses (A, AAAA) or names (CNAME); all are returned.
	Targets []string `toml:"targets"`
	// Check probes the site: tcp://HOST:PORT, http(s)://..., smtp://HOST:PORT
	// or icmp://HOST; "{target}" is replaced by each target. Empty: the
	// targets are not checked (always served).
	Check string `toml:"check"`
}

// HealthCheck configures the checks of a failover name.
type HealthCheck struct {
	Interval confkit.Duration `toml:"interval"`
	Timeout  confkit.Duration `toml:"timeout"`
	Rise     int              `toml:"rise"`
	Fall     int              `toml:"fall"`
	// Status is the accepted HTTP status range, e.g. "200-399".
	Status string `toml:"status"`
	// Match, when set, must occur in the first 5120 bytes of the body.
	Match string `toml:"match"`
	// TLSVerify checks HTTPS certificates (Route 53 never does), against
	// Host when set.
	TLSVerify bool `toml:"tls_verify"`
	// Host, for http and https checks, is sent as the Host header and the
	// TLS server name, so that a check of each target's address tests the
	// service as its clients reach it (Route 53's "IP address + domain
	// name"); "" sends the check URL's host.
	Host string `toml:"host"`
	// Method is the HTTP method (GET, HEAD, POST, PUT, OPTIONS; default
	// GET), Headers are added to the request, and Body is sent with it.
	Method  string            `toml:"method"`
	Headers map[string]string `toml:"headers"`
	Body    string            `toml:"body"`
	// Quorum is how many vantage points must say down (0: a majority of
	// those reporting).
	Quorum int `toml:"quorum"`
}

// DefaultFailover returns a failover entry's defaults (its policies and
// its health checks'): the zones file's entries are decoded onto it.
func DefaultFailover() FailoverConfig {
	return FailoverConfig{WhenUnhealthy: "owner", WhenNoOwner: "nodata", Health: DefaultHealthCheck()}
}

// DefaultHealthCheck returns a failover entry's health check defaults.
func DefaultHealthCheck() HealthCheck {
	return HealthCheck{Interval: confkit.Duration(5 * time.Second), Timeout: confkit.Duration(2 * time.Second),
		Rise: 2, Fall: 3, Status: "200-399"}
}

// Defaults of response-rate limiting, as NSD's (rrl-ratelimit 200,
// rrl-slip 2).
const (
	DefaultRateLimit     = 200
	DefaultRateLimitSlip = 2
)

// loadKeys checks the zones file's TSIG keys (which make the file a
// secret) and returns them by name.
func loadKeys(path string, at func(key string) string, list []KeyConfig, bad report) map[string]KeyConfig {
	if len(list) > 0 {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			bad("zones_file", "%s holds TSIG secrets and is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
		}
	}
	keys := map[string]KeyConfig{}
	for i, k := range list {
		if k.Algorithm == "" {
			k.Algorithm = "hmac-sha256"
		}
		k.Name = dns.Fqdn(strings.ToLower(k.Name))
		if k.Algorithm != "hmac-sha256" {
			key := fmt.Sprintf("keys.%d.algorithm", i)
			bad("zones_file", "%s: %s: %q: only hmac-sha256", at(key), key, k.Algorithm)
		}
		if _, err := decodeSecret(k.Secret); err != nil || k.Secret == "" {
			key := fmt.Sprintf("keys.%d.secret", i)
			bad("zones_file", "%s: %s: want base64 (%v)", at(key), key, err)
		}
		keys[k.Name] = k
	}
	return keys
}

// Enabled reports whether the member serves DNS.
func (c *Config) Enabled() bool { return c.Listen != "" }

// Load reads the zones file and checks everything; sites are the cluster's
// site names. Paths resolve against base (the member file's folder).
func (c *Config) Load(base string, sites []string) []confkit.FieldError {
	var errs []confkit.FieldError
	bad := func(k, f string, a ...any) { errs = append(errs, confkit.Errorf(k, f, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q: want host:port (%v)", c.Listen, err)
	}
	if c.RateLimit < 0 || c.RateLimitSlip < 0 {
		bad("rate_limit", "negative")
	}
	if c.ZonesFile == "" {
		bad("zones_file", "missing: the file with the zones every member serves")
		return errs
	}
	path := c.ZonesFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	c.ZonesFile = path
	var zf zonesFile
	text, err := os.ReadFile(path)
	if err != nil {
		bad("zones_file", "%v", err)
		return errs
	}
	md, err := toml.Decode(string(text), &zf)
	var zones []ZoneConfig
	if err == nil {
		zones, err = decodeZones(&md, zf.Zones)
	}
	if err != nil {
		bad("zones_file", "%s: %v", path, err)
		return errs
	}
	// Errors say file:line: key, the line of the key or of what holds it.
	lines := confkit.KeyLines(string(text))
	at := func(key string) string {
		if n := lines.Line(key); n > 0 {
			return fmt.Sprintf("%s:%d", path, n)
		}
		return path
	}
	for _, k := range md.Undecoded() {
		bad("zones_file", "%s: %s: unknown key", at(k.String()), k)
	}
	keys := loadKeys(path, at, zf.Keys, bad)
	isSite := map[string]bool{}
	for _, s := range sites {
		isSite[s] = true
	}
	seen := map[string]bool{}
	for i := range zones {
		z := &zones[i]
		z.keys, z.dir = keys, filepath.Dir(path)
		zerrs := z.check(isSite)
		for _, e := range zerrs {
			key := fmt.Sprintf("zones.%d.%s", i, e.Key)
			bad("zones_file", "%s: %s: %s", at(key), key, e.Msg)
		}
		if len(zerrs) == 0 {
			// The zone file itself, as the server will build the zone:
			// missing, unparsable, a bad record, a clash with a failover
			// name.
			if _, err := buildZone(*z); err != nil {
				bad("zones_file", "%s: zones.%d (%s): %v", at(fmt.Sprintf("zones.%d", i)), i, z.Origin, err)
			}
		}
		if seen[z.Origin] {
			key := fmt.Sprintf("zones.%d.origin", i)
			bad("zones_file", "%s: %s: %q twice", at(key), key, z.Origin)
		}
		seen[z.Origin] = true
	}
	c.Zones = zones
	return errs
}

// siteNames returns the sites of a failover record in name order.
func (f *FailoverConfig) siteNames() []string {
	var s []string
	for n := range f.Sites {
		s = append(s, n)
	}
	sort.Strings(s)
	return s
}

func absName(n, origin string) string {
	n = strings.ToLower(n)
	switch {
	case n == "@" || n == "":
		return origin
	case strings.HasSuffix(n, "."):
		return n
	}
	return n + "." + origin
}

// readZoneFile parses an RFC 1035 zone file for origin.
func readZoneFile(path, origin string) ([]dns.RR, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zone file: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, origin, path)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone file: %w", err)
	}
	return rrs, nil
}

// Prepare checks zones given in code (benchmarks, tools) as Load checks a
// zones file, and returns the configuration to serve them on listen.
func Prepare(listen string, zones []ZoneConfig, sites []string) (Config, error) {
	isSite := map[string]bool{}
	for _, s := range sites {
		isSite[s] = true
	}
	var msgs []string
	for i := range zones {
		z := &zones[i]
		if z.keys == nil {
			z.keys = map[string]KeyConfig{}
		}
		for _, e := range z.check(isSite) {
			msgs = append(msgs, fmt.Sprintf("zones.%d.%s: %s", i, e.Key, e.Msg))
		}
	}
	if len(msgs) > 0 {
		return Config{}, fmt.Errorf("DNS zones: %s", strings.Join(msgs, "; "))
	}
	return Config{Listen: listen, Zones: zones}, nil
}

// NotifyTarget is a secondary to NOTIFY: its address, and the TSIG key to
// sign with ("": unsigned, for a secondary that accepts NOTIFY from the
// primaries' addresses, as NSD's "allow-notify: ADDR NOKEY" or a Knot ACL
// without a key).
type NotifyTarget struct {
	Address string `toml:"address"`
	Key     string `toml:"key"`
}

// UnmarshalTOML takes "host:port" or { address = "host:port", key = "NAME" }.
func (n *NotifyTarget) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*n = NotifyTarget{Address: v}
		return nil
	case map[string]any:
		*n = NotifyTarget{}
		for k, x := range v {
			str, ok := x.(string)
			if !ok {
				return fmt.Errorf("notify: %s: want a string, got %T", k, x)
			}
			switch k {
			case "address":
				n.Address = str
			case "key":
				n.Key = str
			default:
				return fmt.Errorf("notify: unknown field %q (want address, key)", k)
			}
		}
		if n.Address == "" {
			return errors.New("notify: an entry needs address = \"host:port\"")
		}
		return nil
	}
	return fmt.Errorf("notify: want \"host:port\" or { address = \"host:port\", key = \"NAME\" }, got %T", v)
}
