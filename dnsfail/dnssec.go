package dnsfail

import (
	"bufio"
	"crypto"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/geobooth/geobooth/dnsfail/dnskey"
	"github.com/geobooth/geobooth/kit/confkit"

	"github.com/miekg/dns"
)

// DNSSEC: online signing of the failover zones.
//
// A zone with dnssec_keys is signed on the fly, for queries that set the
// DO bit: every RRset of an answer or authority section gets an RRSIG by
// each key, the apex serves the DNSKEY RRset, and a negative answer is a
// compact denial ("black lies", RFC 9824): an NSEC at the query name
// whose next name is the name's immediate successor, so it covers nothing
// else, and whose type bitmap lists what the name has (for a name that
// does not exist: RRSIG, NSEC and NXNAME, with NOERROR). Nothing is
// precomputed, so the answers that follow the ticket are signed as they
// are given; signatures of a failover name's answer are valid for
// failoverSigValidity only, the others for staticSigValidity, and a
// signature is reused (sigCache) until half its validity has passed.
//
// Keys are combined signing keys (flags 257, ECDSA P-256), one file per
// key made by `ticketctl dns keygen`, the same files on every member. A
// rollover publishes and signs with both keys for a while (see
// docs/dns.md).

const (
	// Signatures start this far back (the validators' clocks may be
	// behind).
	sigInceptionSkew = time.Hour
	// A failover answer's signature expires soon: an answer replayed
	// after a failover must not validate for long.
	failoverSigValidity = 10 * time.Minute
	staticSigValidity   = 7 * 24 * time.Hour
	dnskeyTTL           = dnskey.TTL
)

// signer is one DNSSEC key of a zone.
type signer struct {
	key  *dns.DNSKEY
	priv crypto.Signer
	tag  uint16
}

// loadSigner reads a key file of dnskey.New for zone origin; the file
// must not be readable by group or others.
func loadSigner(path, origin string) (*signer, error) {
	b, err := confkit.ReadSecret(path)
	if err != nil {
		return nil, err
	}
	var keyLine string
	var rest strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, ";"):
		case keyLine == "":
			keyLine = line
		default:
			rest.WriteString(line + "\n")
		}
	}
	rr, err := dns.NewRR(keyLine)
	if err != nil || rr == nil {
		return nil, fmt.Errorf("%s: no DNSKEY record first (%v)", path, err)
	}
	k, ok := rr.(*dns.DNSKEY)
	if !ok {
		return nil, fmt.Errorf("%s: the first record is a %s, not a DNSKEY", path, dns.TypeToString[rr.Header().Rrtype])
	}
	if !strings.EqualFold(k.Hdr.Name, origin) {
		return nil, fmt.Errorf("%s: a key of %s, not of %s", path, k.Hdr.Name, origin)
	}
	if k.Flags&dns.ZONE == 0 || k.Protocol != 3 {
		return nil, fmt.Errorf("%s: not a zone key (flags %d, protocol %d)", path, k.Flags, k.Protocol)
	}
	priv, err := k.ReadPrivateKey(strings.NewReader(rest.String()), path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cs, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the private key cannot sign", path)
	}
	k.Hdr.Ttl = dnskeyTTL
	return &signer{key: k, priv: cs, tag: k.KeyTag()}, nil
}

// DS returns the DS records (SHA-256) of the zone's keys, for the parent.
func (z *zone) DS() []string {
	var out []string
	for _, sg := range z.signers {
		out = append(out, sg.key.ToDS(dns.SHA256).String())
	}
	return out
}

// sigCache keeps signatures until half their validity has passed.
type sigCache struct {
	mu sync.Mutex
	m  map[string]*dns.RRSIG
}

func (c *sigCache) sign(sg *signer, rrset []dns.RR, origTTL uint32, validity time.Duration, now time.Time) (*dns.RRSIG, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d/", sg.tag, origTTL, validity)
	for _, rr := range rrset {
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		c.Header().Name = strings.ToLower(c.Header().Name)
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	key := b.String()
	c.mu.Lock()
	if sig := c.m[key]; sig != nil && now.Before(time.Unix(int64(sig.Expiration), 0).Add(-validity/2)) {
		c.mu.Unlock()
		return sig, nil
	}
	c.mu.Unlock()
	h := rrset[0].Header()
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: strings.ToLower(h.Name), Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: origTTL},
		TypeCovered: h.Rrtype, Algorithm: sg.key.Algorithm, OrigTtl: origTTL, KeyTag: sg.tag, SignerName: sg.key.Hdr.Name,
		Inception: uint32(now.Add(-sigInceptionSkew).Unix()), Expiration: uint32(now.Add(validity).Unix())}
	set := make([]dns.RR, len(rrset))
	for i, rr := range rrset {
		set[i] = dns.Copy(rr)
		set[i].Header().Ttl = origTTL
	}
	if err := sig.Sign(sg.priv, set); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 20000 {
		c.m = map[string]*dns.RRSIG{}
	}
	c.m[key] = sig
	c.mu.Unlock()
	return sig, nil
}

// signMsg turns m, the unsigned answer to q, into the signed answer for a
// query with the DO bit: compact denial for negative answers, an RRSIG
// for every authoritative RRset, an NSEC for the absent DS of a
// delegation.
func (s *Server) signMsg(m *dns.Msg, z *zone, q dns.Question, serial uint32, now time.Time, meta *answerMeta) {
	if len(z.signers) == 0 || m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return
	}
	if !m.Authoritative {
		// A referral: prove that the child has no DS (it is not signed
		// under this zone), and sign nothing else (the NS and glue are
		// the child's).
		for _, rr := range m.Ns {
			if rr.Header().Rrtype == dns.TypeNS {
				cut := strings.ToLower(rr.Header().Name)
				m.Ns = append(m.Ns, z.nsec(cut, []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC}))
				break
			}
		}
		m.Ns = s.signSection(m.Ns, z, now, meta, dns.TypeNS)
		return
	}
	negative := len(m.Ns) > 0 && m.Ns[0].Header().Rrtype == dns.TypeSOA
	if negative {
		denied := strings.ToLower(q.Name)
		for _, rr := range m.Answer {
			if cn, ok := rr.(*dns.CNAME); ok {
				denied = strings.ToLower(cn.Target)
			}
		}
		types := []uint16{dns.TypeRRSIG, dns.TypeNSEC}
		if m.Rcode == dns.RcodeNameError {
			// RFC 9824: NOERROR, and NXNAME says the name does not exist.
			m.Rcode = dns.RcodeSuccess
			types = append(types, dns.TypeNXNAME)
		} else {
			for t := range s.rrsets(z, denied, serial, now, meta) {
				types = append(types, t)
			}
		}
		m.Ns = append(m.Ns, z.nsec(denied, types))
	}
	m.Answer = s.signSection(m.Answer, z, now, meta, 0)
	m.Ns = s.signSection(m.Ns, z, now, meta, 0)
}

// nsec is the compact-denial NSEC of name: it covers nothing but name.
func (z *zone) nsec(name string, types []uint16) dns.RR {
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	return &dns.NSEC{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: z.negativeSOA(0).Header().Ttl},
		NextDomain: "\\000." + name, TypeBitMap: types}
}

// signSection appends an RRSIG by every key to each RRset of rrs (but
// skip's RRsets).
func (s *Server) signSection(rrs []dns.RR, z *zone, now time.Time, meta *answerMeta, skip uint16) []dns.RR {
	type setKey struct {
		name string
		typ  uint16
	}
	var order []setKey
	sets := map[setKey][]dns.RR{}
	for _, rr := range rrs {
		h := rr.Header()
		k := setKey{strings.ToLower(h.Name), h.Rrtype}
		if h.Rrtype == dns.TypeRRSIG || h.Rrtype == skip || !dns.IsSubDomain(z.origin, k.name) {
			continue
		}
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	out := rrs
	for _, k := range order {
		set := sets[k]
		validity, origTTL := staticSigValidity, set[0].Header().Ttl
		if f := z.failover[k.name]; f != nil && k.typ == typeOf(f.Type) {
			validity, origTTL = failoverSigValidity, uint32(time.Duration(f.TTL)/time.Second)
		}
		if k.typ == dns.TypeSOA {
			origTTL = z.soa.Hdr.Ttl
		}
		// A cached reply must not outlive half its signatures' validity.
		meta.validUntil(now.Add(validity / 2))
		for _, sg := range z.signers {
			sig, err := s.sigs.sign(sg, set, origTTL, validity, now)
			if err != nil {
				s.log.Error("DNSSEC signing failed", "zone", z.origin, "name", k.name, "type", dns.TypeToString[k.typ], "err", err)
				continue
			}
			c := *sig
			c.Hdr.Name = set[0].Header().Name // the client's spelling
			c.Hdr.Ttl = set[0].Header().Ttl
			out = append(out, &c)
		}
	}
	return out
}
