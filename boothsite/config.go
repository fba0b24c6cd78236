// Package boothsite is what geoboothd adds at a site of a Booth cluster
// beyond Booth's protocol: replicated volumes that follow a Booth ticket
// as they follow a geobooth ticket. The holder's replica is primary, and
// only while its lease runs; the other sites' replicas are secondaries,
// and a site whose replica holds bad data does not keep the ticket.
package boothsite

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/tlsfiles"
	"github.com/geobooth/geobooth/replication"
	"github.com/geobooth/geobooth/ticket"
)

// File is the volumes file of a Booth site (geoboothd -booth-volumes):
// the replication key, the site's TLS files and its [[volumes]], as in a
// geobooth member's file, with the sites named by their addresses in
// booth.conf.
type File struct {
	// AuthKeyFile authenticates the replication links (ticketctl keygen
	// makes one; every site has the same).
	AuthKeyFile string                     `toml:"auth_key_file"`
	TLS         TLSFiles                   `toml:"tls"`
	Volumes     []replication.VolumeConfig `toml:"-"`

	// Self is this site's name on the replication links: its address in
	// booth.conf.
	Self string `toml:"-"`
	// Key is the key file's content; TLS, when set, serves the
	// certificates.
	Key    []byte           `toml:"-"`
	Source *tlsfiles.Source `toml:"-"`
}

// TLSFiles are the site's certificate, its key and the CA's certificate:
// with them every replication link is mutual TLS.
type TLSFiles struct {
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Load reads and checks the volumes file at path for the site self of
// cfg: each volume on a ticket of booth.conf (not a manual one, which has
// no lease to bound the writes), its peers other sites of it; relative
// paths name files of stateDir, and a block device's metadata lives there.
// Every problem is reported, each with its line.
func Load(path string, cfg *boothconf.Config, self netip.Addr, stateDir string) (*File, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-booth-volumes: %w", err)
	}
	var raw struct {
		AuthKeyFile string           `toml:"auth_key_file"`
		TLS         TLSFiles         `toml:"tls"`
		Volumes     []toml.Primitive `toml:"volumes"`
	}
	md, err := toml.Decode(string(src), &raw)
	if err != nil {
		return nil, fmt.Errorf("-booth-volumes %s: %w", path, err)
	}
	f := &File{Self: self.String(), AuthKeyFile: raw.AuthKeyFile, TLS: raw.TLS}
	lines := confkit.KeyLines(string(src))
	var errs []string
	add := func(key, format string, a ...any) {
		loc := path
		if n := lines.Line(key); n > 0 {
			loc = fmt.Sprintf("%s:%d", path, n)
		}
		errs = append(errs, fmt.Sprintf("%s: %s: %s", loc, key, fmt.Sprintf(format, a...)))
	}
	for _, p := range raw.Volumes {
		v := replication.DefaultVolume()
		if err := md.PrimitiveDecode(p, &v); err != nil {
			return nil, fmt.Errorf("-booth-volumes %s: %w", path, err)
		}
		f.Volumes = append(f.Volumes, v)
	}
	for _, k := range md.Undecoded() {
		add(k.String(), "unknown key")
	}
	dir := filepath.Dir(path)
	f.readKeys(add, dir)
	f.checkVolumes(add, cfg, stateDir)
	if len(f.Volumes) == 0 {
		add("volumes", "no [[volumes]] entries")
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return f, nil
}

// readKeys reads the replication key and opens the TLS files (relative
// to the file's folder); the certificate must name this site's address.
func (f *File) readKeys(add func(key, format string, a ...any), dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if f.AuthKeyFile == "" {
		add("auth_key_file", "missing: the replication links' key (ticketctl keygen FILE makes one; the same at every site)")
	} else if key, err := confkit.ReadSecret(abs(f.AuthKeyFile)); err != nil {
		add("auth_key_file", "%v", err)
	} else if err := ticket.CheckKey(key); err != nil {
		add("auth_key_file", "%v", err)
	} else {
		f.Key = key
	}
	t := &f.TLS
	if t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		return
	}
	src, err := tlsfiles.Open(tlsfiles.Files{CA: abs(t.CAFile), Cert: abs(t.CertFile), Key: abs(t.KeyFile)})
	switch {
	case err != nil:
		add("tls", "%v", err)
	case src.Name() != f.Self:
		add("tls.cert_file", "it names %q, not this site's address %s (ticketctl tls cert -host %s %s makes one)", src.Name(), f.Self, f.Self, f.Self)
	default:
		f.Source = src
	}
}

// checkVolumes checks each volume against booth.conf and puts its files in
// the state folder.
func (f *File) checkVolumes(add func(key, format string, a ...any), cfg *boothconf.Config, stateDir string) {
	sites, tickets := map[string]bool{}, map[string]boothconf.TicketConfig{}
	for _, m := range cfg.Members {
		if !m.Arbitrator {
			sites[m.Address.String()] = true
		}
	}
	for _, tc := range cfg.Tickets {
		tickets[tc.Name] = tc
	}
	inState := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(stateDir, p)
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i := range f.Volumes {
		v := &f.Volumes[i]
		key := fmt.Sprintf("volumes.%d", i)
		v.Path, v.MetaDir = inState(v.Path), inState(v.MetaDir)
		if v.MetaDir == "" && replication.IsBlockDevice(v.Path) {
			v.MetaDir = filepath.Join(stateDir, "volumes", v.Name)
		}
		for _, e := range v.Validate() {
			add(key+"."+e.Key, "%s", e.Msg)
		}
		if names[v.Name] {
			add(key+".name", "%q: a second volume of that name", v.Name)
		}
		if v.Path != "" && paths[v.Path] {
			add(key+".path", "%q: another volume uses it", v.Path)
		}
		names[v.Name], paths[v.Path] = true, true
		switch tc, ok := tickets[v.Ticket]; {
		case !ok:
			add(key+".ticket", "%q: not a ticket of %s", v.Ticket, cfg.Path)
		case tc.Manual:
			add(key+".ticket", "%q is a manual ticket: it has no lease to bound the primary's writes", v.Ticket)
		}
		for j, p := range v.Peers {
			switch {
			case p.Name == f.Self:
				add(fmt.Sprintf("%s.peers.%d.name", key, j), "%q is this site: list the other sites", p.Name)
			case !sites[p.Name]:
				add(fmt.Sprintf("%s.peers.%d.name", key, j), "%q is not a site of %s (name a peer by its address there)", p.Name, cfg.Path)
			}
		}
	}
}
