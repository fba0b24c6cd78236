// Package boothconf reads booth.conf as ClusterLabs Booth does
// (config.c at the Debian 12 commit): the keys it knows, its defaults, its
// limits and its errors, each error with the file and line. Written from
// reading Booth's parser and checking its behaviour; Booth's own bugs are
// not copied (its site-user and friends read the wrong variable; here they
// take their value). It is a leaf: ticketctl import-booth reads it
// without Booth's engine.
package boothconf

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Booth's defaults and limits.
const (
	// NameSize is a ticket name's field on the wire, NUL-padded: a name has
	// at most NameSize−1 characters.
	NameSize           = 64
	DefaultPort        = 9929
	DefaultMaxTimeSkew = 600 // seconds
	DefaultExpire      = 600 * time.Second
	DefaultTimeout     = 5 * time.Second
	DefaultRetries     = 10
	MaxMembers         = 16
	maxValue           = 64 // BOOTH_NAME_LEN: a longer key or value is refused
)

// Config is a booth.conf.
type Config struct {
	Path string
	// Name is the configuration's name: the name key, or the file's base
	// name without its extension.
	Name      string
	Transport string // UDP (SCTP parses and does nothing, as in Booth)
	Port      int
	Authfile  string
	// MaxTimeSkew bounds how old an authenticated message may be (s).
	MaxTimeSkew int
	Debug       int
	// Users and groups boothd drops to.
	SiteUser, SiteGroup, ArbitratorUser, ArbitratorGroup string
	// Members in file order: a member's index and bit come from it.
	Members []Member
	Tickets []TicketConfig
	// Millis: some time in the file is not whole seconds, so this
	// member's lease times on the wire are milliseconds (Booth's global
	// TIME_MULT); members whose unit differs misread each other's leases.
	Millis bool
}

// Member is a site or an arbitrator line.
type Member struct {
	Address    netip.Addr
	Arbitrator bool
	ID         uint32 // SiteID
}

// TicketConfig is one ticket block.
type TicketConfig struct {
	Name                 string
	Expire               time.Duration
	Timeout              time.Duration
	Retries              int
	RenewalFreq          time.Duration
	AcquireAfter         time.Duration
	BeforeAcquireHandler []string
	AttrPrereqs          []AttrPrereq
	Manual               bool
	Weights              []int
}

// AttrPrereq is an attr-prereq line: the attribute must (eq) or must not
// (ne) have the value for a grant of that type.
type AttrPrereq struct {
	Grant string // auto or manual
	Name  string
	Op    string // eq or ne
	Value string
}

// Resolve turns a host name of a site line into an address (net.LookupIP
// by default, as Booth's getaddrinfo).
var Resolve = func(host string) (netip.Addr, error) {
	ips, err := net.LookupIP(host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no IP addresses found for the host %q", host)
}

// LoadConfig reads a booth.conf file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseConfig(f, path)
}

// ParseConfig reads a booth.conf from r; path names it in errors and gives
// the default name.
func ParseConfig(r io.Reader, path string) (*Config, error) {
	p := parser{c: &Config{Path: path, Transport: "UDP", Port: DefaultPort, MaxTimeSkew: DefaultMaxTimeSkew,
		SiteUser: "hacluster", SiteGroup: "haclient", ArbitratorUser: "nobody", ArbitratorGroup: "nobody"},
		defaults: TicketConfig{Name: "__defaults__", Expire: DefaultExpire, Timeout: DefaultTimeout, Retries: DefaultRetries}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.line++
		if err := p.parseLine(sc.Text()); err != "" {
			return nil, fmt.Errorf("%s:%d: %s", path, p.line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.c.Name == "" {
		base := filepath.Base(path)
		if i := strings.LastIndexByte(base, '.'); i >= 0 {
			base = base[:i]
		}
		if len(base) >= maxValue {
			return nil, fmt.Errorf("%s: booth config file name too long", path)
		}
		p.c.Name = base
	}
	if err := p.closeTicket(); err != "" {
		return nil, fmt.Errorf("%s:%d: %s", path, p.line, err)
	}
	return p.c, nil
}

type parser struct {
	c            *Config
	line         int
	defaults     TicketConfig
	current      *TicketConfig // nil before the first ticket line
	gotTransport bool
}

// parseLine reads one line; it returns Booth's error for it, or "".
func (p *parser) parseLine(text string) string {
	s := strings.TrimLeft(text, " \t\r\v\f")
	if s == "" || s[0] == '#' {
		return ""
	}
	end := 0
	for end < len(s) && (isAlnum(s[end]) || s[end] == '-' || s[end] == '_') {
		end++
	}
	if end == 0 {
		return "No key"
	}
	key, rest := s[:end], strings.TrimLeft(s[end:], " \t\r\v\f")
	if !strings.HasPrefix(rest, "=") {
		return "Expected '=' after key"
	}
	val, err := value(strings.TrimLeft(rest[1:], " \t\r\v\f"))
	if err != "" {
		return err
	}
	if len(key) > maxValue || len(val) > maxValue {
		return "key/value too long"
	}
	return p.set(key, val)
}

// value reads a quoted value (nothing but a comment may follow) or the
// rest of the line, trimmed.
func value(s string) (string, string) {
	if s == "" {
		return "", "No value"
	}
	if q := s[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(s[1:], q)
		if end < 0 {
			return "", "Unterminated quoted string"
		}
		v, after := s[1:1+end], strings.TrimLeft(s[2+end:], " \t\r\v\f")
		if after != "" && after[0] != '#' {
			return "", "Surplus data after value"
		}
		if v == "" {
			return "", "No value"
		}
		return v, ""
	}
	return strings.TrimRight(s, " \t\r\n\v\f"), ""
}

func (p *parser) set(key, val string) string {
	c := p.c
	switch key {
	case "transport":
		if p.gotTransport {
			return "config file has multiple transport lines"
		}
		switch strings.ToUpper(val) {
		case "UDP", "SCTP":
			c.Transport = strings.ToUpper(val)
		default:
			return fmt.Sprintf("invalid transport protocol %q", val)
		}
		p.gotTransport = true
	case "port":
		c.Port = atoi(val)
	case "name":
		c.Name = val
	case "authfile":
		c.Authfile = val
	case "maxtimeskew":
		c.MaxTimeSkew = atoi(val)
	case "site", "arbitrator":
		return p.addMember(val, key == "arbitrator")
	case "site-user":
		c.SiteUser = val
	case "site-group":
		c.SiteGroup = val
	case "arbitrator-user":
		c.ArbitratorUser = val
	case "arbitrator-group":
		c.ArbitratorGroup = val
	case "debug":
		c.Debug = max(c.Debug, atoi(val))
	case "ticket":
		return p.openTicket(val)
	default:
		if p.current == nil {
			return fmt.Sprintf("Unexpected keyword %q", key)
		}
		return p.setTicket(key, val)
	}
	return ""
}

func (p *parser) addMember(val string, arbitrator bool) string {
	if len(p.c.Members) == MaxMembers {
		return "too many nodes"
	}
	a, err := netip.ParseAddr(val)
	if err != nil {
		if a, err = Resolve(val); err != nil {
			return fmt.Sprintf("Address string %q is bad", val)
		}
	}
	m := Member{Address: a.Unmap(), Arbitrator: arbitrator, ID: SiteID(a)}
	for _, o := range p.c.Members {
		if o.ID == m.ID {
			return "Got a site-ID collision"
		}
	}
	p.c.Members = append(p.c.Members, m)
	return ""
}

// openTicket starts a ticket block (or the __defaults__ block); the block
// before it is completed first.
func (p *parser) openTicket(name string) string {
	if err := p.closeTicket(); err != "" {
		return err
	}
	if name == "__defaults__" {
		p.current = &p.defaults
		return ""
	}
	switch {
	case len(name) >= NameSize:
		return fmt.Sprintf("ticket name %q too long.", name)
	case p.ticket(name) != nil:
		return fmt.Sprintf("ticket name %q used again.", name)
	case !ValidName(name):
		return fmt.Sprintf("ticket name %q invalid; only alphanumeric names.", name)
	}
	// What a ticket takes from __defaults__ (Booth copies these only).
	d := p.defaults
	p.c.Tickets = append(p.c.Tickets, TicketConfig{Name: name, Timeout: d.Timeout, Expire: d.Expire, Retries: d.Retries,
		Weights: append([]int(nil), d.Weights...), Manual: d.Manual})
	p.current = &p.c.Tickets[len(p.c.Tickets)-1]
	return ""
}

func (p *parser) ticket(name string) *TicketConfig {
	for i := range p.c.Tickets {
		if p.c.Tickets[i].Name == name {
			return &p.c.Tickets[i]
		}
	}
	return nil
}

// closeTicket completes the current block: renewal-freq defaults to half
// of expire, and all the retries must fit in it.
func (p *parser) closeTicket() string {
	t := p.current
	if t == nil {
		return ""
	}
	if t.RenewalFreq == 0 {
		t.RenewalFreq = t.Expire / 2
	}
	if t.Timeout*time.Duration(t.Retries+1) >= t.RenewalFreq {
		return fmt.Sprintf("%s: total amount of time to retry sending packets cannot exceed renewal frequency (%d*(%d+1) >= %d)",
			t.Name, t.Timeout.Milliseconds(), t.Retries, t.RenewalFreq.Milliseconds())
	}
	return ""
}

func (p *parser) setTicket(key, val string) string {
	t := p.current
	switch key {
	case "expire", "timeout", "renewal-freq", "acquire-after":
		d, ok := p.readTime(val)
		switch {
		case key == "acquire-after" && (!ok || d < 0):
			return "Expected time >=0 for acquire-after"
		case key != "acquire-after" && (!ok || d <= 0):
			return "Expected time >0 for " + key
		}
		*map[string]*time.Duration{"expire": &t.Expire, "timeout": &t.Timeout, "renewal-freq": &t.RenewalFreq, "acquire-after": &t.AcquireAfter}[key] = d
	case "retries":
		n, err := strconv.ParseInt(val, 0, 64)
		if err != nil || n < 3 || n > 100 {
			return "Expected plain integer value in the range [3, 100] for retries"
		}
		t.Retries = int(n)
	case "before-acquire-handler":
		t.BeforeAcquireHandler = strings.Fields(val)
	case "attr-prereq":
		ap, err := parseAttrPrereq(val)
		if err != "" {
			return err
		}
		t.AttrPrereqs = append(t.AttrPrereqs, ap)
	case "mode":
		t.Manual = strings.EqualFold(val, "manual")
	case "weights":
		w, err := parseWeights(val)
		if err != "" {
			return err
		}
		t.Weights = w
	default:
		return fmt.Sprintf("Unknown keyword %q", key)
	}
	return ""
}

// readTime reads N (seconds) or Nms; a time that is not whole seconds
// switches the member's wire unit to milliseconds.
func (p *parser) readTime(val string) (time.Duration, bool) {
	digits := len(val) - len(strings.TrimLeft(val, "+-0123456789"))
	if digits == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(val[:digits], "+"), 10, 64)
	if err != nil {
		return 0, false
	}
	var ms int64
	switch val[digits:] {
	case "":
		ms = n * 1000
	case "ms":
		ms = n
	default:
		return 0, false
	}
	if ms%1000 != 0 {
		p.c.Millis = true
	}
	return time.Duration(ms) * time.Millisecond, true
}

func parseAttrPrereq(val string) (AttrPrereq, string) {
	f := strings.Fields(val)
	if len(f) < 4 {
		return AttrPrereq{}, "not enough arguments to attr-prereq"
	}
	ap := AttrPrereq{Grant: f[0], Name: f[1], Op: f[2], Value: f[3]}
	if ap.Grant != "auto" && ap.Grant != "manual" {
		return ap, ap.Grant + " is not a grant type"
	}
	if ap.Op != "eq" && ap.Op != "ne" {
		return ap, ap.Op + " is not an attribute operation"
	}
	return ap, ""
}

// parseWeights reads up to 16 integers separated by spaces or ",;:-+".
func parseWeights(val string) ([]int, string) {
	var out []int
	s := val
	for len(out) < MaxMembers && s != "" {
		n := len(s) - len(strings.TrimLeft(s, "0123456789"))
		if n == 0 {
			return nil, fmt.Sprintf("No integer weight value at %q", s)
		}
		w, err := strconv.Atoi(s[:n])
		if err != nil {
			return nil, fmt.Sprintf("No integer weight value at %q", s)
		}
		out = append(out, w)
		s = s[n:]
		for s != "" && strings.ContainsRune(" \t,;:-+", rune(s[0])) {
			s = s[1:]
		}
		if s != "" && !isDigit(s[0]) {
			return nil, fmt.Sprintf("Invalid character at %q", s)
		}
	}
	return out, ""
}

// atoi is C's: the leading integer, 0 when there is none.
func atoi(s string) int {
	s = strings.TrimLeft(s, " \t")
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	for end < len(s) && isDigit(s[end]) {
		end++
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// FindSelf is the member whose address is one of addrs (this host's), as
// boothd finds itself; it is an error when none or several are.
func (c *Config) FindSelf(addrs []netip.Addr) (Member, error) {
	var found []Member
	for _, m := range c.Members {
		for _, a := range addrs {
			if a.Unmap() == m.Address {
				found = append(found, m)
				break
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Member{}, fmt.Errorf("%s: no member has an address of this host; give it with -booth-address", c.Path)
	}
	return Member{}, fmt.Errorf("%s: several members have addresses of this host; give one with -booth-address", c.Path)
}

// SiteID is a member's id as Booth computes it: zlib's CRC-32 of the
// address's bytes (4 for IPv4, 16 for IPv6), masked to 31 bits.
func SiteID(addr netip.Addr) uint32 {
	b := addr.Unmap().AsSlice()
	return crc32.ChecksumIEEE(b) & 0x7FFFFFFF
}

// ValidName reports whether Booth accepts name for a ticket.
func ValidName(name string) bool {
	if name == "" || len(name) >= NameSize {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}
