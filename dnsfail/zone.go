package dnsfail

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// zone is one zone's data: the static records of its zone file and the
// failover names, indexed for answering.
type zone struct {
	cfg    ZoneConfig
	origin string
	soa    *dns.SOA
	// static maps a lower-case owner name to its RRsets by type.
	static map[string]map[uint16][]dns.RR
	// ents are empty non-terminals: names with nothing of their own but
	// with names below them.
	ents map[string]bool
	// cuts are delegations below the apex (NS RRsets not at the apex).
	cuts     map[string][]dns.RR
	failover map[string]*FailoverConfig
	order    []dns.RR // static records in file order, for transfers
	// digest names the zone's data (settings, SOA, records), for serials.
	digest string
	// signers sign the zone (DNSSEC) and dnskeys is their DNSKEY RRset.
	signers []*signer
	dnskeys []dns.RR
}

func buildZone(cfg ZoneConfig) (*zone, error) {
	rrs, err := readZoneFile(cfg.File, cfg.Origin)
	if err != nil {
		return nil, err
	}
	z := &zone{cfg: cfg, origin: cfg.Origin, static: map[string]map[uint16][]dns.RR{}, ents: map[string]bool{},
		cuts: map[string][]dns.RR{}, failover: map[string]*FailoverConfig{}, signers: cfg.signers}
	for _, sg := range cfg.signers {
		z.dnskeys = append(z.dnskeys, sg.key)
	}
	for _, rr := range rrs {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("%s: %s: only class IN", cfg.File, rr)
		}
		if !dns.IsSubDomain(z.origin, h.Name) {
			return nil, fmt.Errorf("%s: %s: outside the zone %s", cfg.File, h.Name, z.origin)
		}
		if strings.HasPrefix(h.Name, "*.") || h.Name == "*" {
			return nil, fmt.Errorf("%s: %s: wildcards are not supported", cfg.File, h.Name)
		}
		switch rr := rr.(type) {
		case *dns.SOA:
			if h.Name != z.origin || z.soa != nil {
				return nil, fmt.Errorf("%s: exactly one SOA, at the apex %s", cfg.File, z.origin)
			}
			z.soa = rr
			continue
		case *dns.NS:
			if h.Name != z.origin {
				z.cuts[h.Name] = append(z.cuts[h.Name], rr)
			}
		}
		if z.static[h.Name] == nil {
			z.static[h.Name] = map[uint16][]dns.RR{}
		}
		z.static[h.Name][h.Rrtype] = append(z.static[h.Name][h.Rrtype], rr)
		z.order = append(z.order, rr)
	}
	if z.soa == nil {
		return nil, fmt.Errorf("%s: no SOA at the apex %s", cfg.File, z.origin)
	}
	if len(z.static[z.origin][dns.TypeNS]) == 0 {
		return nil, fmt.Errorf("%s: no NS records at the apex %s", cfg.File, z.origin)
	}
	for name, sets := range z.static {
		if _, ok := sets[dns.TypeCNAME]; ok && len(sets) > 1 {
			return nil, fmt.Errorf("%s: %s has a CNAME and other records", cfg.File, name)
		}
	}
	for i := range z.cfg.Failover {
		f := &z.cfg.Failover[i]
		if sets := z.static[f.Name]; len(sets) > 0 {
			return nil, fmt.Errorf("failover name %s also has records in %s: keep it out of the zone file", f.Name, cfg.File)
		}
		if z.below(f.Name) != "" {
			return nil, fmt.Errorf("failover name %s is below a delegation", f.Name)
		}
		z.failover[f.Name] = f
	}
	for name := range z.static {
		z.addENTs(name)
	}
	for name := range z.failover {
		z.addENTs(name)
	}
	return z, nil
}

// addENTs marks the names between name and the apex that have no data.
func (z *zone) addENTs(name string) {
	for n := parent(name); n != "" && n != z.origin && dns.IsSubDomain(z.origin, n); n = parent(n) {
		if _, ok := z.static[n]; !ok && z.failover[n] == nil {
			z.ents[n] = true
		}
	}
}

func parent(name string) string {
	i, end := dns.NextLabel(name, 0)
	if end {
		return ""
	}
	return name[i:]
}

// below returns the delegation point name is at or under, if any.
func (z *zone) below(name string) string {
	for n := name; n != "" && n != z.origin; n = parent(n) {
		if _, ok := z.cuts[n]; ok {
			return n
		}
	}
	return ""
}

// exists reports whether name owns data (static or failover).
func (z *zone) exists(name string) bool {
	_, ok := z.static[name]
	return ok || z.failover[name] != nil
}

// negativeSOA is the SOA for the authority section of a negative answer,
// with the TTL of RFC 2308: min(SOA TTL, MINIMUM).
func (z *zone) negativeSOA(serial uint32) dns.RR {
	soa := *z.soa
	soa.Serial = serial
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return &soa
}

// apexSOA is the SOA as served (the current serial).
func (z *zone) apexSOA(serial uint32) *dns.SOA {
	soa := *z.soa
	soa.Serial = serial
	return &soa
}

func typeOf(t string) uint16 { return dns.StringToType[t] }
