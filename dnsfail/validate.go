package dnsfail

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/miekg/dns"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Validation of the zones file: each zone, then each failover name, with
// every problem reported against its key and the defaults filled in.

// report records a problem with a configuration key.
type report func(key, format string, args ...any)

// check checks a zone of the zones file (isSite: the cluster's sites),
// resolves its paths and fills in its defaults.
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
	z.checkTransfers(bad)
	z.loadSigners(bad)
	z.checkPublish(bad)
	names := map[string]bool{}
	for i := range z.Failover {
		z.Failover[i].check(fmt.Sprintf("failover.%d", i), z.Origin, isSite, names, bad)
	}
	return errs
}

// checkTransfers checks who may transfer the zone, and with which key.
func (z *ZoneConfig) checkTransfers(bad report) {
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
}

// loadSigners reads the zone's DNSSEC keys.
func (z *ZoneConfig) loadSigners(bad report) {
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
}

// checkPublish checks whom the zone's changes are told (NOTIFY) or pushed
// to (UPDATE).
func (z *ZoneConfig) checkPublish(bad report) {
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
}

// check checks a failover name (key: its place in the file), given the
// names of the zone seen so far, and fills in its defaults.
func (f *FailoverConfig) check(key, origin string, isSite, names map[string]bool, bad report) {
	f.Name = absName(f.Name, origin)
	if !dns.IsSubDomain(origin, f.Name) {
		bad(key+".name", "%q is outside the zone %s", f.Name, origin)
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
	f.checkSites(key, isSite, bad)
	f.checkPolicies(key, bad)
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

// checkSites checks each site's targets and check.
func (f *FailoverConfig) checkSites(key string, isSite map[string]bool, bad report) {
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
}

// checkPolicies checks what is answered without a healthy owner.
func (f *FailoverConfig) checkPolicies(key string, bad report) {
	switch f.WhenUnhealthy {
	case "owner", "fallback", "nodata":
	default:
		bad(key+".when_unhealthy", "%q: want owner, fallback or nodata", f.WhenUnhealthy)
	}
	switch f.WhenNoOwner {
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
