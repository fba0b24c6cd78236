package dnsfail

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"reflect"
	"time"

	"github.com/miekg/dns"
)

// zoneSet is what a zones file gives: the zones, their TSIG keys and
// their health checks. The server swaps it whole (Reload), so a query is
// answered from one set, never from a mix.
type zoneSet struct {
	zones  []*zone
	keys   map[string]string      // TSIG name → base64 secret
	checks map[string]HealthCheck // check key → settings
	// digest summarises what is served (records and failover settings,
	// not file names), for members to compare.
	digest string
}

// buildSet builds every zone of c as the server serves them.
func buildSet(c Config) (*zoneSet, error) {
	set := &zoneSet{keys: map[string]string{}, checks: map[string]HealthCheck{}}
	sum := sha256.New()
	for _, zc := range c.Zones {
		z, err := buildZone(zc)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", zc.Origin, err)
		}
		set.zones = append(set.zones, z)
		canon := z.cfg
		canon.File = ""
		b, err := json.Marshal(canon)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", zc.Origin, err)
		}
		zsum := sha256.New()
		w := io.MultiWriter(sum, zsum)
		w.Write(b)
		fmt.Fprintln(w, z.soa.String())
		for _, rr := range z.order {
			fmt.Fprintln(w, rr.String())
		}
		for _, rr := range z.dnskeys {
			fmt.Fprintln(w, rr.String())
		}
		z.digest = hex.EncodeToString(zsum.Sum(nil))
		for name, k := range zc.keys {
			set.keys[name] = k.Secret
		}
		for i := range z.cfg.Failover {
			f := &z.cfg.Failover[i]
			for _, site := range f.siteNames() {
				st := f.Sites[site]
				for _, t := range st.Targets {
					key := checkKey(f.Health, st.Check, t)
					if key == "" {
						continue
					}
					if _, err := parseCheck(checkURLOf(key)); err != nil {
						return nil, fmt.Errorf("zone %s: %w", zc.Origin, err)
					}
					if _, ok := set.checks[key]; !ok {
						set.checks[key] = f.Health
					}
				}
			}
		}
	}
	set.digest = hex.EncodeToString(sum.Sum(nil)[:8])
	return set, nil
}

// ZonesDigest summarises the zones served now: members serving the same
// zones files show the same digest (ticketctl peers compares them).
func (s *Server) ZonesDigest() string { return s.set.Load().digest }

// Reload serves c's zones from now on (SIGHUP): the zones, their files,
// failover names, keys and health checks. It is all or nothing: when a
// zone does not build, or c changes what needs a restart (the listen
// address, rate limiting), it returns why and the old zones stay served.
// A zone whose data changed gets a new serial and its secondaries a
// NOTIFY; checks no longer named stop, new ones start.
func (s *Server) Reload(c Config) error {
	old := s.opt.Config
	switch {
	case c.Listen != old.Listen:
		return fmt.Errorf("dns.listen changed (%s → %s): that needs a restart", old.Listen, c.Listen)
	case c.RateLimit != old.RateLimit || c.RateLimitSlip != old.RateLimitSlip:
		return fmt.Errorf("dns.rate_limit or dns.rate_limit_slip changed: that needs a restart")
	}
	set, err := buildSet(c)
	if err != nil {
		return err
	}
	now := time.Now()
	prev := s.set.Load()
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	// Durable before served: a serial never goes back, even across a
	// crash right after the reload.
	type next struct {
		serial uint32
		digest string
	}
	serials := map[string]next{}
	for _, z := range set.zones {
		s.mu.Lock()
		_, known := s.serials[z.origin]
		s.mu.Unlock()
		if !known {
			s.restoreSerial(z)
		}
		d := s.contentDigest(z, now)
		s.mu.Lock()
		serial, changed := s.nextSerialLocked(z, d)
		s.mu.Unlock()
		if !changed {
			continue
		}
		if err := s.saveSerial(z, serial, d); err != nil {
			return err
		}
		serials[z.origin] = next{serial, d}
	}
	for key, hc := range set.checks {
		if had, ok := prev.checks[key]; ok && !reflect.DeepEqual(had, hc) {
			s.health.remove(key)
		}
		if err := s.health.add(key, hc); err != nil {
			return err
		}
	}
	for key := range prev.checks {
		if _, ok := set.checks[key]; !ok {
			s.health.remove(key)
		}
	}
	s.mu.Lock()
	for origin, n := range serials {
		s.serials[origin], s.digests[origin] = n.serial, n.digest
		s.changes = append(s.changes, change{At: now, Zone: origin, Serial: n.serial, What: "reload"})
	}
	if len(s.changes) > 50 {
		s.changes = s.changes[len(s.changes)-50:]
	}
	s.set.Store(set)
	s.mu.Unlock()
	s.cache.invalidate()
	for _, z := range set.zones {
		if n, ok := serials[z.origin]; ok {
			s.log.Info("zone reloaded", "zone", z.origin, "serial", n.serial)
			s.met.changes.WithLabelValues(z.origin).Inc()
			s.announce(z, n.serial)
		}
	}
	s.Changed()
	return nil
}

// keyring verifies and signs TSIG with the keys of the zones served now,
// for the TCP server (whose own key map cannot change under it).
type keyring struct{ s *Server }

func (k keyring) mac(msg []byte, t *dns.TSIG) ([]byte, error) {
	secret, ok := k.s.set.Load().keys[t.Hdr.Name]
	if !ok {
		return nil, dns.ErrSecret
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return nil, dns.ErrSecret
	}
	var h func() hash.Hash
	switch dns.CanonicalName(t.Algorithm) {
	case dns.HmacSHA1:
		h = sha1.New
	case dns.HmacSHA224:
		h = sha256.New224
	case dns.HmacSHA256:
		h = sha256.New
	case dns.HmacSHA384:
		h = sha512.New384
	case dns.HmacSHA512:
		h = sha512.New
	default:
		return nil, dns.ErrKeyAlg
	}
	m := hmac.New(h, raw)
	m.Write(msg)
	return m.Sum(nil), nil
}

func (k keyring) Generate(msg []byte, t *dns.TSIG) ([]byte, error) { return k.mac(msg, t) }

func (k keyring) Verify(msg []byte, t *dns.TSIG) error {
	want, err := k.mac(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil || !hmac.Equal(want, got) {
		return dns.ErrSig
	}
	return nil
}
