package dnsfail

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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
	// (a /24, a /56); 0 turns response-rate limiting off. Load sets
	// DefaultRateLimit when the key is absent.
	RateLimit *int `toml:"rate_limit"`
	// RateLimitSlip: beyond the limit one answer in this many goes out
	// truncated, so that real clients retry over TCP (0: drop them all).
	RateLimitSlip *int `toml:"rate_limit_slip"`

	// Zones are read from ZonesFile.
	Zones []ZoneConfig `toml:"-"`
}

// zonesFile is the content of the shared zones file.
type zonesFile struct {
	Zones []ZoneConfig `toml:"zones"`
	Keys  []KeyConfig  `toml:"keys"`
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

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Interval == 0 {
		h.Interval = confkit.Duration(5 * time.Second)
	}
	if h.Timeout == 0 {
		h.Timeout = confkit.Duration(2 * time.Second)
	}
	if h.Rise == 0 {
		h.Rise = 2
	}
	if h.Fall == 0 {
		h.Fall = 3
	}
	if h.Status == "" {
		h.Status = "200-399"
	}
	return h
}

// Defaults of response-rate limiting, as NSD's (rrl-ratelimit 200,
// rrl-slip 2).
const (
	DefaultRateLimit     = 200
	DefaultRateLimitSlip = 2
)

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
	if c.RateLimit == nil {
		c.RateLimit = new(int)
		*c.RateLimit = DefaultRateLimit
	}
	if c.RateLimitSlip == nil {
		c.RateLimitSlip = new(int)
		*c.RateLimitSlip = DefaultRateLimitSlip
	}
	if *c.RateLimit < 0 || *c.RateLimitSlip < 0 {
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
	md, err := toml.DecodeFile(path, &zf)
	if err != nil {
		bad("zones_file", "%s: %v", path, err)
		return errs
	}
	for _, k := range md.Undecoded() {
		bad("zones_file", "%s: %s: unknown key", path, k)
	}
	if len(zf.Keys) > 0 {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			bad("zones_file", "%s holds TSIG secrets and is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
		}
	}
	keys := map[string]KeyConfig{}
	for i, k := range zf.Keys {
		if k.Algorithm == "" {
			k.Algorithm = "hmac-sha256"
		}
		k.Name = dns.Fqdn(strings.ToLower(k.Name))
		if k.Algorithm != "hmac-sha256" {
			bad("zones_file", "%s: keys.%d.algorithm: %q: only hmac-sha256", path, i, k.Algorithm)
		}
		if _, err := decodeSecret(k.Secret); err != nil || k.Secret == "" {
			bad("zones_file", "%s: keys.%d.secret: want base64 (%v)", path, i, err)
		}
		keys[k.Name] = k
	}
	isSite := map[string]bool{}
	for _, s := range sites {
		isSite[s] = true
	}
	seen := map[string]bool{}
	for i := range zf.Zones {
		z := &zf.Zones[i]
		z.keys, z.dir = keys, filepath.Dir(path)
		zerrs := z.check(isSite)
		for _, e := range zerrs {
			bad("zones_file", "%s: zones.%d.%s: %s", path, i, e.Key, e.Msg)
		}
		if len(zerrs) == 0 {
			// The zone file itself, as the server will build the zone:
			// missing, unparsable, a bad record, a clash with a failover
			// name.
			if _, err := buildZone(*z); err != nil {
				bad("zones_file", "%s: zones.%d (%s): %v", path, i, z.Origin, err)
			}
		}
		if seen[z.Origin] {
			bad("zones_file", "%s: zones.%d.origin: %q twice", path, i, z.Origin)
		}
		seen[z.Origin] = true
	}
	c.Zones = zf.Zones
	return errs
}

func (z *ZoneConfig) check(isSite map[string]bool) []confkit.FieldError {
	var errs []confkit.FieldError
	bad := func(k, f string, a ...any) { errs = append(errs, confkit.Errorf(k, f, a...)) }
	if _, ok := dns.IsDomainName(z.Origin); !ok || z.Origin == "" {
		bad("origin", "%q: not a domain name", z.Origin)
	}
	z.Origin = dns.Fqdn(strings.ToLower(z.Origin))
	if z.File == "" {
		bad("file", "missing: the zone file with the SOA and NS records")
	} else if !filepath.IsAbs(z.File) {
		z.File = filepath.Join(z.dir, z.File)
	}
	for i, a := range z.AllowTransfer {
		if _, err := parsePrefix(a); err != nil {
			bad(fmt.Sprintf("allow_transfer.%d", i), "%v", err)
		}
	}
	if z.TransferKey != "" {
		z.TransferKey = dns.Fqdn(strings.ToLower(z.TransferKey))
		if _, ok := z.keys[z.TransferKey]; !ok {
			bad("transfer_key", "%q: no such key in [[keys]]", z.TransferKey)
		}
	}
	z.signers = nil
	for i, path := range z.DNSSECKeys {
		if !filepath.IsAbs(path) {
			path = filepath.Join(z.dir, path)
		}
		sg, err := loadSigner(path, z.Origin)
		if err != nil {
			bad(fmt.Sprintf("dnssec_keys.%d", i), "%v", err)
			continue
		}
		z.signers = append(z.signers, sg)
	}
	for i := range z.Notify {
		n := &z.Notify[i]
		if _, _, err := net.SplitHostPort(n.Address); err != nil {
			bad(fmt.Sprintf("notify.%d", i), "%q: want host:port", n.Address)
		}
		if n.Key != "" {
			n.Key = dns.Fqdn(strings.ToLower(n.Key))
			if _, ok := z.keys[n.Key]; !ok {
				bad(fmt.Sprintf("notify.%d.key", i), "%q: no such key in [[keys]]", n.Key)
			}
		}
	}
	if u := z.Update; u != nil {
		if _, _, err := net.SplitHostPort(u.Server); err != nil {
			bad("update.server", "%q: want host:port", u.Server)
		}
		u.Key = dns.Fqdn(strings.ToLower(u.Key))
		if _, ok := z.keys[u.Key]; !ok {
			bad("update.key", "%q: an update must be signed with a key of [[keys]]", u.Key)
		}
		if u.Zone == "" {
			u.Zone = z.Origin
		}
		u.Zone = dns.Fqdn(strings.ToLower(u.Zone))
	}
	names := map[string]bool{}
	for i := range z.Failover {
		f := &z.Failover[i]
		key := fmt.Sprintf("failover.%d", i)
		f.Name = absName(f.Name, z.Origin)
		if !dns.IsSubDomain(z.Origin, f.Name) {
			bad(key+".name", "%q is outside the zone %s", f.Name, z.Origin)
		}
		if names[f.Name] {
			bad(key+".name", "%q twice", f.Name)
		}
		names[f.Name] = true
		f.Type = strings.ToUpper(f.Type)
		switch f.Type {
		case "A", "AAAA", "CNAME":
		default:
			bad(key+".type", "%q: want A, AAAA or CNAME", f.Type)
		}
		if f.TTL <= 0 {
			bad(key+".ttl", "missing: the longest TTL to answer with")
		}
		if f.Ticket == "" {
			bad(key+".ticket", "missing: the ticket the name follows")
		}
		if len(f.Sites) == 0 {
			bad(key+".sites", "no site targets")
		}
		for s, st := range f.Sites {
			if !isSite[s] {
				bad(key+".sites."+s, "%q is not a site of the cluster", s)
			}
			if len(st.Targets) == 0 {
				bad(key+".sites."+s+".targets", "empty")
			}
			for _, t := range st.Targets {
				if err := checkTarget(f.Type, t); err != nil {
					bad(key+".sites."+s+".targets", "%v", err)
				}
			}
			if st.Check != "" {
				if _, err := parseCheck(strings.ReplaceAll(st.Check, "{target}", "127.0.0.1")); err != nil {
					bad(key+".sites."+s+".check", "%v", err)
				}
			}
			if f.Type == "CNAME" && len(st.Targets) != 1 {
				bad(key+".sites."+s+".targets", "a CNAME has exactly one target")
			}
		}
		switch f.WhenUnhealthy {
		case "":
			f.WhenUnhealthy = "owner"
		case "owner", "fallback", "nodata":
		default:
			bad(key+".when_unhealthy", "%q: want owner, fallback or nodata", f.WhenUnhealthy)
		}
		switch f.WhenNoOwner {
		case "":
			f.WhenNoOwner = "nodata"
		case "fallback", "nodata":
		default:
			bad(key+".when_no_owner", "%q: want nodata or fallback", f.WhenNoOwner)
		}
		if (f.WhenUnhealthy == "fallback" || f.WhenNoOwner == "fallback") && len(f.Fallback) == 0 {
			bad(key+".fallback", "a fallback policy needs fallback targets")
		}
		for _, t := range f.Fallback {
			if err := checkTarget(f.Type, t); err != nil {
				bad(key+".fallback", "%v", err)
			}
		}
		f.Health = f.Health.withDefaults()
		if _, _, err := parseStatus(f.Health.Status); err != nil {
			bad(key+".health.status", "%v", err)
		}
		if f.Health.Rise < 1 || f.Health.Fall < 1 {
			bad(key+".health", "rise and fall must be at least 1")
		}
		if f.Health.Timeout > f.Health.Interval {
			bad(key+".health.timeout", "longer than the interval")
		}
		for field, err := range f.Health.checkHTTP(f) {
			bad(key+".health."+field, "%v", err)
		}
	}
	return errs
}

// headerName is what a check's header may be called (letters, digits and
// dashes: what services use; RFC 9110 allows a few more).
var headerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)

// checkHTTP validates the HTTP options: they apply to http and https
// checks only.
func (h HealthCheck) checkHTTP(f *FailoverConfig) map[string]error {
	errs := map[string]error{}
	if h.Host == "" && h.Method == "" && len(h.Headers) == 0 && h.Body == "" {
		return errs
	}
	for _, st := range f.Sites {
		if st.Check != "" && !strings.HasPrefix(st.Check, "http://") && !strings.HasPrefix(st.Check, "https://") {
			errs["host"] = fmt.Errorf("host, method, headers and body apply to http and https checks, not %q", st.Check)
		}
	}
	if h.Host != "" {
		if _, ok := dns.IsDomainName(h.Host); !ok || strings.ContainsAny(h.Host, "/ ") {
			errs["host"] = fmt.Errorf("%q: want a host name", h.Host)
		}
	}
	switch h.Method {
	case "", "GET", "HEAD", "POST", "PUT", "OPTIONS":
	default:
		errs["method"] = fmt.Errorf("%q: want GET, HEAD, POST, PUT or OPTIONS", h.Method)
	}
	for name := range h.Headers {
		if !headerName.MatchString(name) || strings.EqualFold(name, "Host") {
			errs["headers"] = fmt.Errorf("%q: want a header name other than Host (set host)", name)
		}
	}
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

func checkTarget(typ, t string) error {
	switch typ {
	case "A":
		if ip := net.ParseIP(t); ip == nil || ip.To4() == nil {
			return fmt.Errorf("%q: not an IPv4 address", t)
		}
	case "AAAA":
		if ip := net.ParseIP(t); ip == nil || ip.To4() != nil {
			return fmt.Errorf("%q: not an IPv6 address", t)
		}
	case "CNAME":
		if _, ok := dns.IsDomainName(t); !ok || !strings.HasSuffix(t, ".") {
			return fmt.Errorf("%q: want an absolute name (ending in a dot)", t)
		}
	}
	return nil
}

func parsePrefix(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%q: not an address or prefix", s)
		}
		bits := 128
		if ip.To4() != nil {
			ip, bits = ip.To4(), 32
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	return n, nil
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

// checkURL validates a check string early.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return u, nil
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
