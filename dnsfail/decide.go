package dnsfail

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Owners tells who holds a ticket as this member sees it: the owner site
// ("" for none) and when its lease ends (zero: a manual ticket, no expiry).
type Owners func(ticket string) (owner string, leaseEnd time.Time)

// Decision is what a failover name answers now, and why.
type Decision struct {
	Targets []string `json:"targets"`
	TTL     uint32   `json:"ttl"`
	Owner   string   `json:"owner,omitempty"`
	Why     string   `json:"why"`
	// leaseEnd is the end of the lease the answer relies on (zero: none).
	leaseEnd time.Time
}

// decide applies the rules: the owner's healthy targets while it holds a
// valid lease, with a TTL that does not outlive the lease; otherwise the
// configured policy. Never another site's targets.
func (s *Server) decide(f *FailoverConfig, now time.Time) Decision {
	owner, end := "", time.Time{}
	if s.owners != nil {
		owner, end = s.owners(f.Ticket)
	}
	ttl := uint32(time.Duration(f.TTL) / time.Second)
	if owner != "" && !end.IsZero() {
		left := end.Sub(now)
		if left <= 0 {
			owner = ""
		} else {
			ttl = min(ttl, uint32(left/time.Second))
		}
	}
	site, ok := f.Sites[owner]
	if owner == "" || !ok {
		why := "no site holds a valid lease on " + f.Ticket
		if owner != "" {
			why = owner + " holds " + f.Ticket + " but has no targets for this name"
		}
		if f.WhenNoOwner == "fallback" {
			return Decision{Targets: f.Fallback, TTL: uint32(time.Duration(f.TTL) / time.Second), Why: why + ": fallback"}
		}
		return Decision{Why: why + ": no data"}
	}
	var up, unknown []string
	for _, t := range site.Targets {
		switch s.health.state(checkKey(f.Health, site.Check, t)) {
		case stateUp:
			up = append(up, t)
		case stateUnknown:
			unknown = append(unknown, t)
		}
	}
	serve := append(up, unknown...)
	if len(serve) > 0 {
		why := fmt.Sprintf("%s holds %s", owner, f.Ticket)
		if len(unknown) > 0 {
			why += "; health not known yet for " + strings.Join(unknown, ", ")
		}
		if len(serve) < len(site.Targets) {
			why += fmt.Sprintf("; %d of %d targets down", len(site.Targets)-len(serve), len(site.Targets))
		}
		return Decision{Targets: keepOrder(site.Targets, serve), TTL: ttl, Owner: owner, Why: why, leaseEnd: end}
	}
	why := fmt.Sprintf("%s holds %s but every target is down", owner, f.Ticket)
	switch f.WhenUnhealthy {
	case "fallback":
		return Decision{Targets: f.Fallback, TTL: uint32(time.Duration(f.TTL) / time.Second), Owner: owner, Why: why + ": fallback", leaseEnd: end}
	case "nodata":
		return Decision{Owner: owner, Why: why + ": no data", leaseEnd: end}
	}
	return Decision{Targets: site.Targets, TTL: ttl, Owner: owner, Why: why + ": serving them anyway (when_unhealthy = owner)", leaseEnd: end}
}

// keepOrder returns the members of some in the order of all.
func keepOrder(all, some []string) []string {
	in := map[string]bool{}
	for _, s := range some {
		in[s] = true
	}
	var out []string
	for _, a := range all {
		if in[a] {
			out = append(out, a)
		}
	}
	return out
}

// checkKey is the check a target is judged by ("" when unchecked): the
// URL with the target in it, and the HTTP options that make two checks of
// one URL differ (a header's value only as a digest: it may be a secret,
// and keys are shown and gossiped).
func checkKey(hc HealthCheck, check, target string) string {
	if check == "" {
		return ""
	}
	key := strings.ReplaceAll(check, "{target}", target)
	var opts []string
	if hc.Host != "" {
		opts = append(opts, "Host "+hc.Host)
	}
	if hc.Method != "" && hc.Method != "GET" {
		opts = append(opts, hc.Method)
	}
	if len(hc.Headers) > 0 || hc.Body != "" {
		names := make([]string, 0, len(hc.Headers))
		for n := range hc.Headers {
			names = append(names, n)
		}
		sort.Strings(names)
		sum := sha256.New()
		for _, n := range names {
			fmt.Fprintf(sum, "%s\x00%s\x00", n, hc.Headers[n])
		}
		fmt.Fprintf(sum, "%s", hc.Body)
		opts = append(opts, "request "+hex.EncodeToString(sum.Sum(nil)[:4]))
	}
	if len(opts) > 0 {
		key += " (" + strings.Join(opts, ", ") + ")"
	}
	return key
}

// checkURL is the URL part of a check key.
func checkURLOf(key string) string {
	if i := strings.Index(key, " ("); i >= 0 {
		return key[:i]
	}
	return key
}
