package config

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/tlsfiles"
	"github.com/geobooth/geobooth/replication"
	"github.com/geobooth/geobooth/ticket"
)

// Validation: every problem is reported with the key it concerns (the
// loader adds the file), and defaults are filled in on the way.

// addFunc reports a problem with a key.
type addFunc func(key, format string, args ...any)

// check validates the file, resolves its paths and fills in its defaults,
// reporting every problem through add.
func (f *File) check(add addFunc, md toml.MetaData) {
	f.Self = -1
	for i, m := range f.Cluster.Members {
		if m.Name == f.Local {
			f.Self = i
		}
	}
	switch {
	case f.Local == "":
		add("local", "missing: name this member (one of cluster.members)")
	case f.Self < 0:
		add("local", "%q is not a member of the cluster", f.Local)
	}
	if f.StateDir == "" && f.Local != "" {
		f.StateDir = filepath.Join("run", f.Local)
	}
	if f.MaxElections < 1 {
		add("max_elections", "must be at least 1")
	}
	f.checkSecrets(add)
	f.checkSerf(add)
	if md.IsDefined("pacemaker") && f.Self >= 0 && f.Cluster.Members[f.Self].Role != "site" {
		add("pacemaker", "only a site runs resources: remove this section from an arbitrator")
	}
	f.Pacemaker.CIBFile = f.resolve(f.Pacemaker.CIBFile)
	for _, e := range f.Pacemaker.Validate() {
		add("pacemaker."+e.Key, "%s", e.Msg)
	}
	f.checkVolumes(add)
	f.checkTLS(add)
	if md.IsDefined("dns") {
		f.checkDNS(add)
	}
	f.checkAlerts(add)
	f.checkLog(add)
}

// checkSecrets reads the ticket protocol's keys and the API's tokens, and
// checks the API's address.
func (f *File) checkSecrets(add addFunc) {
	f.StateDir = f.resolve(f.StateDir)
	f.Key = readSecret(add, "auth_key_file", f.resolve(f.AuthKeyFile), true)
	if len(f.Key) > 0 {
		if err := ticket.CheckKey(f.Key); err != nil {
			add("auth_key_file", "%v", err)
		}
	}
	if f.NextAuthKeyFile != "" {
		f.NextKey = readSecret(add, "next_auth_key_file", f.resolve(f.NextAuthKeyFile), true)
		if err := ticket.CheckKey(f.NextKey); len(f.NextKey) > 0 && err != nil {
			add("next_auth_key_file", "%v", err)
		}
	}
	if f.API.Listen == "" {
		add("api.listen", "missing: the HTTP API address (host:port)")
	} else if _, _, err := net.SplitHostPort(f.API.Listen); err != nil {
		add("api.listen", "%v", err)
	}
	f.API.Token = string(readSecret(add, "api.token_file", f.resolve(f.API.TokenFile), true))
	if f.API.NextTokenFile != "" {
		f.API.NextToken = string(readSecret(add, "api.next_token_file", f.resolve(f.API.NextTokenFile), true))
	}
	if t := f.API.Token; t != "" && len(t) < 16 {
		add("api.token_file", "token of %d characters: use at least 16 (ticketctl keygen -token makes one)", len(t))
	}
}

// checkSerf checks the membership layer's settings and keyring.
func (f *File) checkSerf(add addFunc) {
	if !f.SerfEnabled() {
		return
	}
	f.Serf.KeyringFile = f.resolve(f.Serf.KeyringFile)
	errs := f.Serf.Validate()
	for _, e := range errs {
		add("serf."+e.Key, "%s", e.Msg)
	}
	if len(errs) == 0 && !f.Serf.Insecure {
		if _, err := membership.LoadKeyring(f.Serf.KeyringFile); err != nil {
			add("serf.keyring_file", "%v", err)
		}
	}
}

// checkTLS opens the member's certificate (which must name it), and checks
// that an NBD export asking for TLS has one.
func (f *File) checkTLS(add addFunc) {
	if t := &f.TLS; t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
		t.CAFile, t.CertFile, t.KeyFile = f.resolve(t.CAFile), f.resolve(t.CertFile), f.resolve(t.KeyFile)
		src, err := tlsfiles.Open(tlsfiles.Files{CA: t.CAFile, Cert: t.CertFile, Key: t.KeyFile})
		switch {
		case err != nil:
			add("tls", "%v", err)
		case src.Name() != f.Local:
			add("tls.cert_file", "%s names member %q, not %q (make it with ticketctl tls cert %s)", t.CertFile, src.Name(), f.Local, f.Local)
		default:
			t.Source = src
		}
	}
	for i, v := range f.Volumes {
		if (v.NBDTLS == "on" || v.NBDTLS == "require") && f.TLS.CAFile == "" {
			add(fmt.Sprintf("volumes.%d.nbd_tls", i), "%q needs the member's [tls] section (ca_file, cert_file, key_file)", v.NBDTLS)
		}
	}
}

// checkDNS loads the zones file: its failover names must follow tickets
// of the cluster.
func (f *File) checkDNS(add addFunc) {
	var sites []string
	for _, m := range f.Cluster.Members {
		if m.Role == "site" {
			sites = append(sites, m.Name)
		}
	}
	for _, e := range f.DNS.Load(filepath.Dir(f.Path), sites) {
		add("dns."+e.Key, "%s", e.Msg)
	}
	for _, z := range f.DNS.Zones {
		for _, fo := range z.Failover {
			if _, ok := f.Cluster.Tickets[fo.Ticket]; !ok && fo.Ticket != "" {
				add("dns.zones_file", "%s: failover name %s follows %q: not a ticket of the cluster", f.DNS.ZonesFile, fo.Name, fo.Ticket)
			}
		}
	}
}

// checkAlerts checks the [[alerts]] hooks (names unique).
func (f *File) checkAlerts(add addFunc) {
	names := map[string]bool{}
	for i := range f.Alerts {
		a := &f.Alerts[i]
		for _, e := range a.Validate(filepath.Dir(f.Path)) {
			add(fmt.Sprintf("alerts.%d.%s", i, e.Key), "%s", e.Msg)
		}
		if names[a.Name] {
			add(fmt.Sprintf("alerts.%d.name", i), "%q: another alert has that name", a.Name)
		}
		names[a.Name] = true
	}
}

// checkLog checks the log's format and level.
func (f *File) checkLog(add addFunc) {
	switch f.Log.Format {
	case "", "text", "json":
	default:
		add("log.format", "%q: want text or json", f.Log.Format)
	}
	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		add("log.level", "%q: want debug, info, warn or error", f.Log.Level)
	}
}

// checkGuard: what a dead daemon leaves running (the ticket-guard's time)
// must be stopped before any other site may acquire one of its tickets.
func (f *File) checkGuard(add addFunc) {
	g := f.Pacemaker.GuardTime.D()
	if g <= 0 {
		return
	}
	for _, t := range f.Tickets {
		if margin := t.CrashMargin() - ticket.MaxTimerSlack; g > margin {
			add("pacemaker.guard_time", "%v: ticket %s lets another site acquire acquire_after/(1+d) = %v after a lost lease (%v with the timer slack): raise its acquire_after to at least %v, or shorten the ticket-guard's monitor interval",
				g, t.Name, t.CrashMargin(), margin, time.Duration(float64(g+ticket.MaxTimerSlack)*(1+t.MaxClockDrift)).Round(time.Millisecond))
		}
	}
}

// checkVolumes validates the [[volumes]] sections: each on a configured
// ticket, replicated to other sites, at most one per ticket and backing
// file, with the defaults filled in.
func (f *File) checkVolumes(add addFunc) {
	if len(f.Volumes) > 0 && f.Self >= 0 && f.Cluster.Members[f.Self].Role != "site" {
		add("volumes", "only a site holds a replica: remove the volumes from an arbitrator")
		return
	}
	role := map[string]string{}
	for _, m := range f.Cluster.Members {
		role[m.Name] = m.Role
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i := range f.Volumes {
		v := f.Volumes[i]
		key := fmt.Sprintf("volumes.%d", i)
		// Relative paths name files of the member's state (the unit
		// keeps the configuration's folder read-only).
		rel := v.Path
		v.Path = f.inState(v.Path)
		v.MetaDir = f.inState(v.MetaDir)
		if old := f.resolve(rel); old != v.Path && fileExists(old) && !fileExists(v.Path) {
			add(key+".path", "%q is now the state folder's %s, but the volume's file is at %s (beside the configuration, where earlier versions put it): move it (with its .meta, .al and .bitmap-* files) into the state folder, or give path as an absolute path",
				rel, v.Path, old)
		}
		if v.MetaDir == "" && replication.IsBlockDevice(v.Path) {
			// /dev is gone at reboot: the metadata lives with the state.
			v.MetaDir = filepath.Join(f.StateDir, "volumes", v.Name)
		}
		for _, e := range v.Validate() {
			add(key+"."+e.Key, "%s", e.Msg)
		}
		if names[v.Name] {
			add(key+".name", "%q: a second volume of that name", v.Name)
		}
		names[v.Name] = true
		if v.Path != "" && paths[v.Path] {
			add(key+".path", "%q: another volume uses that backing file", v.Path)
		}
		paths[v.Path] = true
		if _, ok := f.Cluster.Tickets[v.Ticket]; !ok {
			add(key+".ticket", "%q: not a ticket of the cluster (a volume follows a ticket)", v.Ticket)
		}
		for j, p := range v.Peers {
			switch {
			case p.Name == f.Local:
				add(fmt.Sprintf("%s.peers.%d.name", key, j), "%q is this member: list the other sites", p.Name)
			case role[p.Name] != "site":
				add(fmt.Sprintf("%s.peers.%d.name", key, j), "%q is not a site of the cluster", p.Name)
			}
		}
		f.Volumes[i] = v
	}
}

// readSecret reads a key or token file: trailing newlines are dropped, and
// a file others can read is refused.
func readSecret(add addFunc, key, path string, required bool) []byte {
	if path == "" {
		if required {
			add(key, "missing")
		}
		return nil
	}
	b, err := confkit.ReadSecret(path)
	if err != nil {
		add(key, "%v", err)
	}
	return b
}

func (f *File) checkCluster(add addFunc) {
	c := &f.Cluster
	if c.Name == "" {
		add("cluster.name", "missing: name the cluster (it goes into the config digest)")
	}
	if c.MaxTimeSkew <= 0 {
		add("cluster.max_time_skew", "must be positive")
	}
	if len(c.Members) == 0 {
		add("cluster.members", "no members: list every site and arbitrator")
	}
	if len(c.Members) > ticket.MaxMembers {
		add("cluster.members", "%d members: at most %d", len(c.Members), ticket.MaxMembers)
	}
	seen := map[string]int{}
	addrs := map[string]int{}
	for i, m := range c.Members {
		k := fmt.Sprintf("cluster.members.%d", i)
		if m.Name == "" {
			add(k+".name", "missing")
		} else if j, dup := seen[m.Name]; dup {
			add(k+".name", "duplicate member %q (also member %d)", m.Name, j)
		}
		seen[m.Name] = i
		if m.Role != "site" && m.Role != "arbitrator" {
			add(k+".role", "%q: want site or arbitrator", m.Role)
		}
		if _, _, err := net.SplitHostPort(m.Address); err != nil {
			add(k+".address", "%q: want host:port for the ticket protocol (%v)", m.Address, err)
		} else if j, dup := addrs[m.Address]; dup {
			add(k+".address", "%s is also member %d's address", m.Address, j)
		}
		addrs[m.Address] = i
	}
	cl := f.TicketCluster()
	if err := cl.Validate(); err != nil && len(c.Members) > 0 && len(c.Members) <= ticket.MaxMembers {
		add("cluster.members", "%v", err)
	}
	if len(c.Tickets) == 0 {
		add("cluster.tickets", "no tickets")
	}
	names := make([]string, 0, len(c.Tickets))
	for n := range c.Tickets {
		names = append(names, n)
	}
	sort.Strings(names)
	f.HandlerTimeouts = map[string]time.Duration{}
	reported := map[string]bool{}
	for _, n := range names {
		tc, hto, errs := resolveTicket(n, c.Defaults, c.Tickets[n], len(c.Members))
		set := c.Tickets[n].keysSet()
		for _, e := range errs {
			field := strings.SplitN(e.Key, ".", 2)[0]
			key := "cluster.tickets." + n + "." + e.Key
			msg := e.Msg
			if !set[field] && c.Defaults.keysSet()[field] {
				// Inherited: point at the defaults table.
				key = "cluster.defaults." + e.Key
				msg += " (for ticket " + n + ")"
			}
			if !reported[key+e.Msg] {
				reported[key+e.Msg] = true
				add(key, "%s", msg)
			}
		}
		f.Tickets = append(f.Tickets, tc)
		f.HandlerTimeouts[n] = hto
	}
}

// keysSet lists the settings given explicitly.
func (t TicketSettings) keysSet() map[string]bool {
	return map[string]bool{
		"mode": t.Mode != nil, "expire": t.Expire != nil, "renewal_freq": t.RenewalFreq != nil,
		"acquire_after": t.AcquireAfter != nil, "timeout": t.Timeout != nil, "retries": t.Retries != nil,
		"max_clock_drift": t.MaxClockDrift != nil, "stop_timeout": t.StopTimeout != nil,
		"before_acquire_handler": t.BeforeAcquireHandler != nil, "handler_timeout": t.HandlerTimeout != nil,
		"attr_prereq": t.AttrPrereq != nil, "weights": t.Weights != nil,
	}
}

// resolveTicket sets a ticket's settings, then the defaults table's, over
// the ticket package's defaults, derives the rest there, and validates
// the result.
func resolveTicket(name string, def, t TicketSettings, members int) (ticket.Config, time.Duration, []confkit.FieldError) {
	var errs []confkit.FieldError
	setD := func(dst *time.Duration, a, b *confkit.Duration) {
		if a != nil {
			*dst = a.D()
		} else if b != nil {
			*dst = b.D()
		}
	}
	c := ticket.DefaultConfig(name)
	mode := t.Mode
	if mode == nil {
		mode = def.Mode
	}
	if mode != nil {
		m, err := ticket.ParseMode(*mode)
		if err != nil {
			errs = append(errs, confkit.Errorf("mode", "%v", err))
		}
		c.Mode = m
	}
	setD(&c.Expire, t.Expire, def.Expire)
	setD(&c.RenewalFreq, t.RenewalFreq, def.RenewalFreq)
	setD(&c.AcquireAfter, t.AcquireAfter, def.AcquireAfter)
	setD(&c.Timeout, t.Timeout, def.Timeout)
	setD(&c.StopTimeout, t.StopTimeout, def.StopTimeout)
	if t.Retries != nil {
		c.Retries = *t.Retries
	} else if def.Retries != nil {
		c.Retries = *def.Retries
	}
	if t.MaxClockDrift != nil {
		c.MaxClockDrift = *t.MaxClockDrift
	} else if def.MaxClockDrift != nil {
		c.MaxClockDrift = *def.MaxClockDrift
	}
	h := t.BeforeAcquireHandler
	if h == nil {
		h = def.BeforeAcquireHandler
	}
	if h != nil {
		c.BeforeAcquireHandler = strings.Fields(*h)
	}
	prereq := t.AttrPrereq
	if prereq == nil {
		prereq = def.AttrPrereq
	}
	for i, p := range prereq {
		ap, err := ticket.ParseAttrPrereq(p)
		if err != nil {
			errs = append(errs, confkit.Errorf(fmt.Sprintf("attr_prereq.%d", i), "%v", err))
			continue
		}
		c.AttrPrereqs = append(c.AttrPrereqs, ap)
	}
	c.Weights = t.Weights
	if c.Weights == nil {
		c.Weights = def.Weights
	}
	if c.Retries < ticket.MinRetries {
		errs = append(errs, confkit.Errorf("retries", "%d: must be at least %d (Booth refuses fewer)", c.Retries, ticket.MinRetries))
		c.Retries = ticket.MinRetries
	}
	c = c.Resolved()
	errs = append(errs, c.Validate(members)...)
	hto := c.DefaultHandlerTimeout()
	setD(&hto, t.HandlerTimeout, def.HandlerTimeout)
	return c, hto, errs
}
