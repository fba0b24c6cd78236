package dnsfail

import (
	"errors"
	"time"

	"github.com/miekg/dns"
)

// Zone transfers (AXFR over TCP) to the secondaries allow_transfer lists,
// with TSIG when the zone requires a key, and the TSIG refusals.

// tsigError is the TSIG error for a request's verification (RFC 8945
// §5.2): BADKEY for a key or algorithm this server does not know, BADTIME
// outside the fudge, BADSIG for a MAC that does not verify; 0 when it
// verified.
func tsigError(verify error) uint16 {
	switch {
	case verify == nil:
		return 0
	case errors.Is(verify, dns.ErrSecret), errors.Is(verify, dns.ErrKeyAlg):
		return dns.RcodeBadKey
	case errors.Is(verify, dns.ErrTime):
		return dns.RcodeBadTime
	default:
		return dns.RcodeBadSig
	}
}

// tsigRefusal answers a request whose TSIG failed: NOTAUTH, with a TSIG
// record that carries the error and no MAC.
func tsigRefusal(r *dns.Msg, code uint16, now time.Time) *dns.Msg {
	t := r.IsTsig()
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeNotAuth)
	m.Extra = append(m.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: t.Algorithm, TimeSigned: uint64(now.Unix()), Fudge: t.Fudge, OrigId: r.Id, Error: code})
	return m
}

// transfer streams the zone (AXFR, also the answer to IXFR): SOA, the
// records in messages of at most 100, SOA.
func (s *Server) transfer(w dns.ResponseWriter, r *dns.Msg, z *zone) {
	now := time.Now()
	serial := s.serial(z)
	rrs := []dns.RR{z.apexSOA(serial)}
	rrs = append(rrs, z.order...)
	for i := range z.cfg.Failover {
		f := &z.cfg.Failover[i]
		d := s.decide(f, now)
		rrs = append(rrs, failoverRRs(f, d.Targets, uint32(time.Duration(f.TTL)/time.Second))...)
	}
	rrs = append(rrs, z.apexSOA(serial))
	ch := make(chan *dns.Envelope)
	tr := new(dns.Transfer)
	errc := make(chan error, 1)
	go func() { errc <- tr.Out(w, r, ch) }()
	for len(rrs) > 0 {
		n := min(100, len(rrs))
		ch <- &dns.Envelope{RR: rrs[:n]}
		rrs = rrs[n:]
	}
	close(ch)
	if err := <-errc; err != nil {
		s.met.transfers.WithLabelValues("error").Inc()
		s.log.Warn("zone transfer failed", "zone", z.origin, "to", w.RemoteAddr().String(), "err", err)
		return
	}
	s.met.transfers.WithLabelValues("ok").Inc()
	s.log.Info("zone transferred", "zone", z.origin, "serial", serial, "to", w.RemoteAddr().String())
}
