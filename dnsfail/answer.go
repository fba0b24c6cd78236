package dnsfail

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The authoritative answer, independent of sockets: answer builds the reply
// to one query.

const (
	// advertisedUDP is the EDNS buffer size we advertise and use at most
	// (DNS flag day 2020: no fragmentation).
	advertisedUDP = 1232
	maxChase      = 8
)

// query is one question as the handler sees it.
type query struct {
	msg *dns.Msg
	tcp bool
	// remote is the client's address (transfer ACLs).
	remote net.IP
	// tsigOK: the request carried a TSIG the server verified, with key
	// tsigKey.
	tsigOK  bool
	tsigKey string
}

// answerMeta collects what a reply depends on besides the zone data.
type answerMeta struct {
	// until: the reply holds a failover answer, valid until then (its TTL
	// and the lease move with time).
	until time.Time
}

func (a *answerMeta) validUntil(t time.Time) {
	if a != nil && (a.until.IsZero() || t.Before(a.until)) {
		a.until = t
	}
}

// answer returns the reply to q and, for AXFR/IXFR over TCP, the zone to
// transfer (the caller streams it).
func (s *Server) answer(q query, now time.Time) (*dns.Msg, *zone) {
	return s.answerMeta(q, now, nil)
}

func (s *Server) answerMeta(q query, now time.Time, meta *answerMeta) (*dns.Msg, *zone) {
	r := q.msg
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	m.RecursionAvailable = false
	if r.Opcode != dns.OpcodeQuery {
		m.SetRcode(r, dns.RcodeNotImplemented)
		return m, nil
	}
	opt := r.IsEdns0()
	if opt != nil {
		m.SetEdns0(advertisedUDP, false)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, nil
		}
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, nil
	}
	qs := r.Question[0]
	if qs.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m, nil
	}
	name := strings.ToLower(qs.Name)
	z := s.findZone(name)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return m, nil
	}
	serial := s.serial(z)
	switch qs.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		if name != z.origin {
			m.Rcode = dns.RcodeNotAuth
			return m, nil
		}
		if rc := s.transferAllowed(z, q); rc != dns.RcodeSuccess {
			m.Rcode = rc
			return m, nil
		}
		if !q.tcp {
			if qs.Qtype == dns.TypeIXFR {
				// RFC 1995 §2: too big for UDP: the SOA alone sends the
				// client to TCP.
				m.Authoritative = true
				m.Answer = []dns.RR{z.apexSOA(serial)}
				return m, nil
			}
			m.Rcode = dns.RcodeRefused
			return m, nil
		}
		return nil, z
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeFormatError
		return m, nil
	}
	if cut := z.below(name); cut != "" {
		// A referral: not authoritative, the delegation's NS and glue.
		m.Ns = append(m.Ns, z.cuts[cut]...)
		for _, ns := range z.cuts[cut] {
			host := strings.ToLower(ns.(*dns.NS).Ns)
			if dns.IsSubDomain(z.origin, host) {
				m.Extra = append(m.Extra, z.static[host][dns.TypeA]...)
				m.Extra = append(m.Extra, z.static[host][dns.TypeAAAA]...)
			}
		}
	} else {
		m.Authoritative = true
		s.resolve(m, z, qs.Name, qs.Qtype, serial, now, 0, meta)
	}
	if opt != nil && opt.Do() {
		m.IsEdns0().SetDo()
		s.signMsg(m, z, qs, serial, now, meta)
	}
	return m, nil
}

// resolve adds the answer for owner (as spelled by the client) and qtype,
// following in-zone CNAMEs.
func (s *Server) resolve(m *dns.Msg, z *zone, owner string, qtype uint16, serial uint32, now time.Time, depth int, meta *answerMeta) {
	name := strings.ToLower(owner)
	if !z.exists(name) {
		if z.ents[name] || name == z.origin {
			m.Ns = append(m.Ns, z.negativeSOA(serial))
			return
		}
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, z.negativeSOA(serial))
		return
	}
	sets := s.rrsets(z, name, serial, now, meta)
	if qtype == dns.TypeANY {
		// RFC 8482: one RRset, not all of them.
		for _, t := range anyOrder {
			if rrs := sets[t]; len(rrs) > 0 {
				m.Answer = append(m.Answer, spell(rrs, owner)...)
				return
			}
		}
		for _, rrs := range sets {
			m.Answer = append(m.Answer, spell(rrs, owner)...)
			return
		}
		m.Ns = append(m.Ns, z.negativeSOA(serial))
		return
	}
	if rrs := sets[qtype]; len(rrs) > 0 {
		m.Answer = append(m.Answer, spell(rrs, owner)...)
		return
	}
	if cn := sets[dns.TypeCNAME]; len(cn) > 0 && qtype != dns.TypeCNAME {
		m.Answer = append(m.Answer, spell(cn, owner)...)
		target := cn[0].(*dns.CNAME).Target
		lt := strings.ToLower(target)
		if depth >= maxChase || !dns.IsSubDomain(z.origin, lt) || z.below(lt) != "" {
			return
		}
		for _, rr := range m.Answer[:len(m.Answer)-1] {
			if strings.EqualFold(rr.Header().Name, target) {
				return // a loop
			}
		}
		s.resolve(m, z, target, qtype, serial, now, depth+1, meta)
		return
	}
	m.Ns = append(m.Ns, z.negativeSOA(serial))
}

var anyOrder = []uint16{dns.TypeSOA, dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT, dns.TypeNS}

// rrsets returns name's RRsets: the static ones, or the failover answer as
// decided now.
func (s *Server) rrsets(z *zone, name string, serial uint32, now time.Time, meta *answerMeta) map[uint16][]dns.RR {
	if f := z.failover[name]; f != nil {
		d := s.decide(f, now)
		meta.validUntil(now.Add(250 * time.Millisecond))
		if !d.leaseEnd.IsZero() {
			meta.validUntil(d.leaseEnd)
		}
		if len(d.Targets) == 0 {
			return map[uint16][]dns.RR{}
		}
		return map[uint16][]dns.RR{typeOf(f.Type): failoverRRs(f, d.Targets, d.TTL)}
	}
	sets := z.static[name]
	if name == z.origin {
		out := make(map[uint16][]dns.RR, len(sets)+1)
		for t, rrs := range sets {
			out[t] = rrs
		}
		out[dns.TypeSOA] = []dns.RR{z.apexSOA(serial)}
		if len(z.dnskeys) > 0 {
			out[dns.TypeDNSKEY] = z.dnskeys
		}
		return out
	}
	return sets
}

// failoverRRs makes the RRset of a failover name.
func failoverRRs(f *FailoverConfig, targets []string, ttl uint32) []dns.RR {
	out := make([]dns.RR, 0, len(targets))
	for _, t := range targets {
		h := dns.RR_Header{Name: f.Name, Rrtype: typeOf(f.Type), Class: dns.ClassINET, Ttl: ttl}
		switch f.Type {
		case "A":
			out = append(out, &dns.A{Hdr: h, A: net.ParseIP(t).To4()})
		case "AAAA":
			out = append(out, &dns.AAAA{Hdr: h, AAAA: net.ParseIP(t)})
		case "CNAME":
			out = append(out, &dns.CNAME{Hdr: h, Target: t})
		}
	}
	return out
}

// spell copies rrs with the owner name as the client spelled it.
func spell(rrs []dns.RR, owner string) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		out[i] = c
	}
	return out
}

// findZone returns the zone name is in (the longest origin), or nil.
func (s *Server) findZone(name string) *zone {
	var best *zone
	for _, z := range s.set.Load().zones {
		if dns.IsSubDomain(z.origin, name) && (best == nil || len(z.origin) > len(best.origin)) {
			best = z
		}
	}
	return best
}

// transferAllowed applies the zone's transfer ACL and key.
func (s *Server) transferAllowed(z *zone, q query) int {
	allowed := false
	for _, a := range z.cfg.AllowTransfer {
		if n, err := parsePrefix(a); err == nil && q.remote != nil && n.Contains(q.remote) {
			allowed = true
		}
	}
	if !allowed {
		return dns.RcodeRefused
	}
	if z.cfg.TransferKey != "" && (!q.tsigOK || !strings.EqualFold(q.tsigKey, z.cfg.TransferKey)) {
		return dns.RcodeNotAuth
	}
	return dns.RcodeSuccess
}

// udpSize is the largest UDP reply the client takes.
func udpSize(r *dns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		return max(dns.MinMsgSize, min(int(opt.UDPSize()), advertisedUDP))
	}
	return dns.MinMsgSize
}
