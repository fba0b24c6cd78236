package dnsfail

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Publishing a change: when a zone's answers change its serial rises, and
// the publish loop tells the secondaries (NOTIFY, signed or not per
// secondary) and pushes to an external primary (RFC 2136 UPDATE), retrying
// until they answer or a newer serial supersedes the attempt.

// fingerprint is the failover answers of a zone, without TTLs: a change of
// it bumps the serial.
func (s *Server) fingerprint(z *zone, now time.Time) string {
	var b strings.Builder
	for i := range z.cfg.Failover {
		f := &z.cfg.Failover[i]
		fmt.Fprintf(&b, "%s=%s;", f.Name, strings.Join(s.decide(f, now).Targets, ","))
	}
	return b.String()
}

// publishLoop watches the answers (on a kick, and every 250 ms for leases
// that end) and on a change of a zone's content settles its serial (see
// serial.go), NOTIFYs the secondaries and pushes the update; it
// broadcasts this member's health states and serials on change and every
// 10 s.
func (s *Server) publishLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastSent, lastOwn := time.Time{}, ""
	lastSerialsSent, lastSerials := time.Time{}, ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
		now := time.Now()
		s.settleAll(now, "")
		if s.opt.Broadcast != nil {
			own := s.health.own()
			b, _ := json.Marshal(own)
			if string(b) != lastOwn || now.Sub(lastSent) > 10*time.Second {
				for _, p := range encodeReports(own, 400) {
					if err := s.opt.Broadcast(HealthEvent, p); err != nil {
						s.log.Debug("health report not broadcast", "err", err)
					}
				}
				lastOwn, lastSent = string(b), now
			}
			adv := s.ownSerials()
			b, _ = json.Marshal(adv)
			if string(b) != lastSerials || now.Sub(lastSerialsSent) > 10*time.Second {
				for _, p := range encodeSerials(adv, 400) {
					if err := s.opt.Broadcast(SerialEvent, p); err != nil {
						s.log.Debug("serials not broadcast", "err", err)
					}
				}
				lastSerials, lastSerialsSent = string(b), now
			}
		}
	}
}

// announce NOTIFYs the zone's secondaries of a new serial and pushes the
// update, in the background (nothing before Run).
func (s *Server) announce(z *zone, serial uint32) {
	s.mu.Lock()
	ctx := s.runCtx
	s.mu.Unlock()
	if ctx == nil {
		return
	}
	for _, t := range z.cfg.Notify {
		go s.sendNotify(ctx, z, t, serial)
	}
	if z.cfg.Update != nil {
		go s.pushUpdate(ctx, z, serial)
	}
}

// retry runs f with backoff (1 s doubling to 30 s) until it succeeds, a
// newer serial supersedes it, or ctx ends.
func (s *Server) retry(ctx context.Context, z *zone, serial uint32, st *notifyState, f func() error) {
	wait := time.Second
	for attempt := 0; ; attempt++ {
		if s.serial(z) != serial {
			return
		}
		err := f()
		s.mu.Lock()
		st.Serial, st.At, st.Retries = serial, time.Now(), attempt
		st.Result = "ok"
		if err != nil {
			st.Result = err.Error()
		}
		s.mu.Unlock()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// sendNotify tells a secondary the zone changed, until it answers.
func (s *Server) sendNotify(ctx context.Context, z *zone, t NotifyTarget, serial uint32) {
	s.mu.Lock()
	st := s.notify[z.origin+" "+t.Address]
	if st == nil {
		st = &notifyState{Target: t.Address}
		s.notify[z.origin+" "+t.Address] = st
	}
	st.Key = t.Key
	s.mu.Unlock()
	s.retry(ctx, z, serial, st, func() error {
		m := new(dns.Msg)
		m.SetNotify(z.origin)
		m.Answer = []dns.RR{z.apexSOA(serial)}
		c := &dns.Client{Timeout: 2 * time.Second}
		if t.Key != "" {
			m.SetTsig(t.Key, dns.HmacSHA256, 300, time.Now().Unix())
			c.TsigSecret = s.set.Load().keys
		}
		return s.exchange(ctx, c, m, t.Address, "NOTIFY", s.met.notifies, "zone", z.origin, "serial", serial)
	})
}

// pushUpdate replaces the failover RRsets at the external primary with a
// TSIG-signed RFC 2136 UPDATE, until it is acknowledged.
func (s *Server) pushUpdate(ctx context.Context, z *zone, serial uint32) {
	u := z.cfg.Update
	s.mu.Lock()
	st := s.update[z.origin]
	if st == nil {
		st = &notifyState{Target: u.Server}
		s.update[z.origin] = st
	}
	s.mu.Unlock()
	s.retry(ctx, z, serial, st, func() error {
		m := new(dns.Msg)
		m.SetUpdate(u.Zone)
		now := time.Now()
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: f.Name, Rrtype: typeOf(f.Type), Class: dns.ClassANY}}})
			if rrs := failoverRRs(f, s.decide(f, now).Targets, uint32(time.Duration(f.TTL)/time.Second)); len(rrs) > 0 {
				m.Insert(rrs)
			}
		}
		m.SetTsig(u.Key, dns.HmacSHA256, 300, now.Unix())
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: s.set.Load().keys}
		return s.exchange(ctx, c, m, u.Server, "UPDATE", s.met.updates, "zone", u.Zone, "serial", serial)
	})
}

// exchange sends a NOTIFY or an UPDATE and says whether the server
// acknowledged it, in the metric and the log.
func (s *Server) exchange(ctx context.Context, c *dns.Client, m *dns.Msg, server, what string, counter *prometheus.CounterVec, attrs ...any) error {
	r, _, err := c.ExchangeContext(ctx, m, server)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case r.Rcode != dns.RcodeSuccess:
		result = "refused"
		err = fmt.Errorf("%s answered %s", what, dns.RcodeToString[r.Rcode])
	}
	counter.WithLabelValues(result).Inc()
	attrs = append(attrs, "to", server)
	if err != nil {
		s.log.Warn(what+" not acknowledged; retrying", append(attrs, "err", err)...)
	} else {
		s.log.Info(what+" acknowledged", attrs...)
	}
	return err
}
