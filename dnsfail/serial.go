package dnsfail

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/geobooth/geobooth/kit/durable"
)

// One serial for one content, on every member.
//
// A zone's content is its data (records and failover settings) and what
// its failover names answer now (the ticket holders' healthy targets, or
// the policy when there is none); contentDigest names it. Each member
// advertises, over serf, the serial it serves and the digest of the
// content that serial names. When its content changes, a member takes
// the serial another member already gives that content, if that is newer
// than its own; otherwise the one after the newest serial any member has
// advertised (or after the zone file's). Members that see the same change
// from the same state pick the same next serial; one that picked another
// adopts the newest serial given to its content as soon as it hears of
// it. So members that answer the same serve the same SOA, and a
// secondary pulling from any of them sees serials that only rise. A
// member writes its serial and digest to disk before it serves them, so
// a serial never goes back on it, and a restart with the same content
// keeps the same serial.
//
// During a partition, members on both sides may give the same next
// serial to different contents; when it heals, the side that changes
// next, or the one that hears of a newer serial for its content, moves
// past it.

// SerialEvent is the serf user event carrying a member's serials.
const SerialEvent = "dns-serial"

// serialAdvert is a zone's serial at one member and the digest of the
// content it names.
type serialAdvert struct {
	Serial uint32 `json:"s"`
	Digest string `json:"d"`
}

type serialReport struct {
	Z map[string]serialAdvert `json:"z"`
}

// newer reports whether serial a is after b in RFC 1982 arithmetic.
func newer(a, b uint32) bool { return int32(a-b) > 0 }

// contentDigest names what zone z serves now.
func (s *Server) contentDigest(z *zone, now time.Time) string {
	sum := sha256.Sum256([]byte(z.digest + "\x00" + s.fingerprint(z, now)))
	return hex.EncodeToString(sum[:8])
}

// nextSerialLocked is the serial z should serve for content digest d:
// cur, another member's serial for d when newer, or the one after every
// serial seen. s.mu held.
func (s *Server) nextSerialLocked(z *zone, d string) (uint32, bool) {
	cur, known := s.serials[z.origin]
	if known && d == s.digests[z.origin] {
		if best, ok := s.bestFor(z.origin, d); ok && newer(best, cur) {
			return best, true
		}
		return cur, false
	}
	if best, ok := s.bestFor(z.origin, d); ok && (!known || newer(best, cur)) {
		return best, true
	}
	top := z.soa.Serial
	if known && newer(cur, top) {
		top = cur
	}
	base := top
	for _, adv := range s.peerSerials {
		// A serial more than 2^30 ahead is ignored: following it could
		// wrap past half the space, where RFC 1982 calls it older.
		if a, ok := adv[z.origin]; ok && newer(a.Serial, top) && a.Serial-base <= maxJump {
			top = a.Serial
		}
	}
	return top + 1, true
}

// maxJump bounds how far ahead of its own a member follows another's.
const maxJump = 1 << 30

// bestFor is the newest serial another member gives content d.
func (s *Server) bestFor(origin, d string) (uint32, bool) {
	var best uint32
	found := false
	cur := s.serials[origin]
	for _, adv := range s.peerSerials {
		if a, ok := adv[origin]; ok && a.Digest == d && a.Serial-cur <= maxJump && (!found || newer(a.Serial, best)) {
			best, found = a.Serial, true
		}
	}
	return best, found
}

// settle brings zone z's serial in line with its content now: it writes
// a new serial to disk before serving it, and announces it. It returns
// whether the serial changed.
func (s *Server) settle(z *zone, now time.Time, why string) bool {
	d := s.contentDigest(z, now)
	s.mu.Lock()
	serial, changed := s.nextSerialLocked(z, d)
	s.mu.Unlock()
	if !changed {
		return false
	}
	if err := s.saveSerial(z, serial, d); err != nil {
		// Not durable: keep serving the old serial and try again at the
		// next look.
		s.log.Error("cannot save the zone serial", "zone", z.origin, "err", err)
		return false
	}
	s.mu.Lock()
	s.serials[z.origin], s.digests[z.origin] = serial, d
	if why == "" {
		why = s.fingerprint(z, now)
	}
	s.changes = append(s.changes, change{At: now, Zone: z.origin, Serial: serial, What: why})
	if len(s.changes) > 50 {
		s.changes = s.changes[len(s.changes)-50:]
	}
	s.mu.Unlock()
	s.cache.invalidate()
	s.met.changes.WithLabelValues(z.origin).Inc()
	s.log.Info("zone serial", "zone", z.origin, "serial", serial, "content", d, "why", why)
	s.announce(z, serial)
	return true
}

// settleAll settles every zone's serial (see settle).
func (s *Server) settleAll(now time.Time, why string) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	for _, z := range s.set.Load().zones {
		s.settle(z, now, why)
	}
}

// restoreSerial takes up the serial a zone had before a restart, and the
// digest of its content then; a zone file with a newer serial wins (and
// names no content, so the next look moves past it).
func (s *Server) restoreSerial(z *zone) {
	stored, digest, err := s.loadSerial(z)
	if err != nil && !os.IsNotExist(err) {
		s.log.Warn("zone serial not read: starting past the zone file's", "zone", z.origin, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || newer(z.soa.Serial, stored) {
		s.serials[z.origin], s.digests[z.origin] = z.soa.Serial, ""
		return
	}
	s.serials[z.origin], s.digests[z.origin] = stored, digest
}

// ReceiveSerials takes another member's serials (serf).
func (s *Server) ReceiveSerials(from string, payload []byte) {
	if from == s.opt.Self {
		return // serf hands a member its own events too
	}
	adv, err := decodeSerials(payload)
	if err != nil {
		s.met.reportsRefused.WithLabelValues("malformed").Inc()
		s.log.Debug("bad serial report refused", "from", from, "err", err)
		return
	}
	if !s.health.members[from] {
		s.met.reportsRefused.WithLabelValues("not_member").Inc()
		return
	}
	served := map[string]bool{}
	for _, z := range s.set.Load().zones {
		served[z.origin] = true
	}
	s.mu.Lock()
	if s.peerSerials[from] == nil {
		s.peerSerials[from] = map[string]serialAdvert{}
	}
	for origin, a := range adv {
		if served[origin] {
			s.peerSerials[from][origin] = a
		}
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ownSerials is what this member advertises.
func (s *Server) ownSerials() map[string]serialAdvert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]serialAdvert, len(s.serials))
	for origin, serial := range s.serials {
		out[origin] = serialAdvert{Serial: serial, Digest: s.digests[origin]}
	}
	return out
}

// encodeSerials splits the adverts into payloads serf takes.
func encodeSerials(adv map[string]serialAdvert, limit int) [][]byte {
	zones := make([]string, 0, len(adv))
	for z := range adv {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	var out [][]byte
	cur := serialReport{Z: map[string]serialAdvert{}}
	for _, z := range zones {
		cur.Z[z] = adv[z]
		if b, _ := json.Marshal(cur); len(b) > limit && len(cur.Z) > 1 {
			delete(cur.Z, z)
			b, _ = json.Marshal(cur)
			out = append(out, b)
			cur = serialReport{Z: map[string]serialAdvert{z: adv[z]}}
		}
	}
	if len(cur.Z) > 0 {
		b, _ := json.Marshal(cur)
		out = append(out, b)
	}
	return out
}

// decodeSerials parses a peer's payload; anything malformed is refused.
func decodeSerials(b []byte) (map[string]serialAdvert, error) {
	var r serialReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("serial report: %w", err)
	}
	for z, a := range r.Z {
		if _, err := hex.DecodeString(a.Digest); err != nil || len(a.Digest) != 16 {
			return nil, fmt.Errorf("serial report: zone %q: digest %q", z, a.Digest)
		}
		if !strings.HasSuffix(z, ".") {
			return nil, fmt.Errorf("serial report: zone %q is not a fully qualified name", z)
		}
	}
	return r.Z, nil
}

func (s *Server) serialPath(z *zone) string {
	return filepath.Join(s.opt.StateDir, "serial-"+strings.TrimSuffix(z.origin, "."))
}

// loadSerial reads the serial last served and the digest of its content
// ("" from before digests were kept).
func (s *Server) loadSerial(z *zone) (uint32, string, error) {
	b, err := os.ReadFile(s.serialPath(z))
	if err != nil {
		return 0, "", err
	}
	var v struct {
		Serial uint32
		Digest string
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, "", fmt.Errorf("%s: %w", s.serialPath(z), err)
	}
	return v.Serial, v.Digest, nil
}

// saveSerial writes the serial and its content's digest durably (the
// serial must never go back after a crash).
func (s *Server) saveSerial(z *zone, serial uint32, digest string) error {
	b := fmt.Appendf(nil, "{\"Serial\": %d, \"Digest\": %q}\n", serial, digest)
	if err := durable.WriteFile(s.serialPath(z), b, 0o600); err != nil {
		return fmt.Errorf("save serial of %s: %w", z.origin, err)
	}
	return nil
}
