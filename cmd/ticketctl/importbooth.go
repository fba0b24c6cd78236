package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// geobooth's ports beside the ticket protocol's (examples/geo).
const (
	serfPort = 7946
	apiPort  = 7800
)

// cmdImportBooth writes the geobooth cluster file that matches a
// booth.conf, with every difference it cannot carry explained in comments
// at its top.
func cmdImportBooth(_ *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("import-booth", flag.ContinueOnError)
	out := fs.String("o", "", "write the cluster file to `FILE` (refusing to overwrite one) instead of standard output")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: import-booth [-o FILE] BOOTH.CONF")
	}
	cfg, err := boothconf.LoadConfig(pos[0])
	if err != nil {
		return fail(1, "%v", err)
	}
	text := importBooth(cfg)
	if *out == "" {
		_, err := io.WriteString(w, text)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fail(1, "%v", err)
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return fail(1, "%v", err)
	}
	if err := f.Close(); err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(w, "wrote %s; read the notes at its top\n", *out)
	return nil
}

// importBooth is the cluster file for cfg.
func importBooth(cfg *boothconf.Config) string {
	var b strings.Builder
	notes := boothNotes(cfg)
	fmt.Fprintf(&b, "# geobooth cluster file from %s (ticketctl import-booth).\n#\n", cfg.Path)
	b.WriteString("# What differs from Booth, or could not be carried over:\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "#  - %s\n", wrapComment(n, "#    "))
	}
	fmt.Fprintf(&b, "\nname = %q\nmax_time_skew = %q\n", cfg.Name, (time.Duration(cfg.MaxTimeSkew) * time.Second).String())
	for _, m := range memberNames(cfg) {
		host := m.Address.String()
		fmt.Fprintf(&b, "\n[[members]]\nname = %q\nrole = %q\naddress = %q   # Booth's address and port\nserf = %q\napi = %q\n",
			m.name, m.role, net.JoinHostPort(host, strconv.Itoa(cfg.Port)),
			net.JoinHostPort(host, strconv.Itoa(serfPort)), net.JoinHostPort(host, strconv.Itoa(apiPort)))
	}
	b.WriteString("\n[defaults]\nmax_clock_drift = 0.01\n")
	for _, t := range cfg.Tickets {
		fmt.Fprintf(&b, "\n[tickets.%s]\n", tomlKey(t.Name))
		mode := "auto"
		if t.Manual {
			mode = "manual"
		}
		fmt.Fprintf(&b, "mode = %q\nexpire = %q\ntimeout = %q\nretries = %d\n", mode, t.Expire, t.Timeout, t.Retries)
		renewal := t.RenewalFreq
		if renewal == 0 {
			renewal = t.Expire / 2 // Booth's default
		}
		fmt.Fprintf(&b, "renewal_freq = %q\nacquire_after = %q\n", renewal, t.AcquireAfter)
		if len(t.BeforeAcquireHandler) > 0 {
			fmt.Fprintf(&b, "before_acquire_handler = %q\n", strings.Join(t.BeforeAcquireHandler, " "))
		}
		if len(t.AttrPrereqs) > 0 {
			var ps []string
			for _, p := range t.AttrPrereqs {
				ps = append(ps, strconv.Quote(fmt.Sprintf("%s %s %s %s", p.Grant, p.Name, p.Op, p.Value)))
			}
			fmt.Fprintf(&b, "attr_prereq = [%s]\n", strings.Join(ps, ", "))
		}
	}
	return b.String()
}

type namedMember struct {
	boothconf.Member
	name, role string
}

// memberNames names the members, which booth.conf does not: site1,
// site2, … and arbitrator (arbitrator1, … when there are several), in
// booth.conf's order.
func memberNames(cfg *boothconf.Config) []namedMember {
	arbs := 0
	for _, m := range cfg.Members {
		if m.Arbitrator {
			arbs++
		}
	}
	var out []namedMember
	sites, ai := 0, 0
	for _, m := range cfg.Members {
		nm := namedMember{Member: m, role: "site"}
		if m.Arbitrator {
			ai++
			nm.role, nm.name = "arbitrator", "arbitrator"
			if arbs > 1 {
				nm.name = fmt.Sprintf("arbitrator%d", ai)
			}
		} else {
			sites++
			nm.name = fmt.Sprintf("site%d", sites)
		}
		out = append(out, nm)
	}
	return out
}

// boothNotes explains what the cluster file cannot say as Booth did.
func boothNotes(cfg *boothconf.Config) []string {
	var notes []string
	var names []string
	for _, m := range memberNames(cfg) {
		names = append(names, m.name+" = "+m.Address.String())
	}
	notes = append(notes, "booth.conf does not name its members; they are named here in its order ("+strings.Join(names, ", ")+"). Rename them as you like before the first start: the names are in each member's stored state.")
	if cfg.Authfile != "" {
		notes = append(notes, fmt.Sprintf("authfile %s: geobooth's key is auth_key_file in each member's own file (not this one). Booth's authfile works as it is when its key is at most 64 bytes with no leading white space (Booth uses the first 64 bytes, trimmed; geobooth the whole file without its final newline); ticketctl keygen makes a new one.", cfg.Authfile))
	} else {
		notes = append(notes, "no authfile: geobooth requires a key (auth_key_file in each member's file; ticketctl keygen makes one) and TLS on the API and replication links (docs/security.md).")
	}
	notes = append(notes, "geobooth adds what Booth has no key for: serf (membership, port 7946 here), the HTTP API and dashboard (port 7800 here), and max_clock_drift (the bound on how fast clocks may run apart, 0.01 here; Booth assumes none). Every member needs its own file for these (examples/geo).")
	if cfg.Transport != "UDP" {
		notes = append(notes, fmt.Sprintf("transport %s: geobooth speaks UDP only (Booth's SCTP did nothing either).", cfg.Transport))
	}
	if cfg.Debug > 0 {
		notes = append(notes, "debug: geobooth's is [log] level = \"debug\" in a member's file.")
	}
	notes = append(notes, fmt.Sprintf("site-user/group and arbitrator-user/group (%s:%s, %s:%s): geoboothd runs as the user its systemd unit gives.", cfg.SiteUser, cfg.SiteGroup, cfg.ArbitratorUser, cfg.ArbitratorGroup))
	if cfg.Millis {
		notes = append(notes, "times in milliseconds: geobooth's durations take them as they are (\"1500ms\"), and its wire carries them in one unit whatever the files say.")
	}
	for _, t := range cfg.Tickets {
		if len(t.Weights) > 0 {
			notes = append(notes, fmt.Sprintf("ticket %s: weights not carried over: Booth reads them but does not use them, and geobooth's weights change the votes.", t.Name))
		}
		if t.Manual {
			notes = append(notes, fmt.Sprintf("ticket %s is manual: geobooth grants a manual ticket to one site only; Booth's grant -F of a manual ticket held elsewhere (two sites) has no equivalent.", t.Name))
		}
		if len(t.BeforeAcquireHandler) > 0 {
			notes = append(notes, fmt.Sprintf("ticket %s: the before-acquire handler gets Booth's BOOTH_* variables (and GEOBOOTH_* twins); it must finish within handler_timeout (geobooth kills it then).", t.Name))
		}
	}
	return notes
}

// tomlKey quotes a ticket name when TOML needs it (Booth allows '/').
func tomlKey(name string) string {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return strconv.Quote(name)
		}
	}
	return name
}

// wrapComment breaks s at about 72 columns, continuing lines with indent.
func wrapComment(s, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if col+1+len(word) > 72 {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
