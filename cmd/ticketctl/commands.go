package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/geobooth/geobooth/api"

	"github.com/geobooth/geobooth/dnsfail/dnskey"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func leaseText(t api.Ticket) string {
	switch {
	case t.Owner == "":
		return "-"
	case t.Mode == "manual":
		return "no expiry"
	default:
		return fmt.Sprintf("%.1fs", t.LeaseRemaining)
	}
}

func cmdList(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(2, "usage: list [--json] (no arguments; %q is one too many)", pos[0])
	}
	var ts []api.Ticket
	if err := c.call(http.MethodGet, "/api/v1/tickets", nil, &ts); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(w, ts)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tOWNER\tTERM\tLEASE\tMODE\tSTATE")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", t.Name, orDash(t.Owner), t.Term, leaseText(t), t.Mode, t.State)
	}
	return tw.Flush()
}

// waitFor polls the ticket until done says so, or the timeout passes.
func waitFor(c *client, name string, timeout time.Duration, done func(api.Ticket) (bool, error)) (api.Ticket, error) {
	deadline := time.Now().Add(timeout)
	for {
		t, err := c.ticket(name)
		if err != nil {
			return t, err
		}
		if ok, err := done(t); ok || err != nil {
			return t, err
		}
		if time.Now().After(deadline) {
			return t, fail(1, "%s: not done after %v (owner %s, state %s)", name, timeout, orDash(t.Owner), t.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// defaultWait covers a lease to wait out, acquire_after, elections.
func defaultWait(t api.Ticket) time.Duration {
	return time.Duration(t.Expire*2.5*float64(time.Second)) + 30*time.Second
}

func cmdGrant(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("grant", flag.ContinueOnError)
	force := fs.Bool("F", false, "force: skip waiting for an unreachable owner's lease (you must be sure it is down), and promote replicas that are not UpToDate (the first primary of new replicas)")
	site := fs.String("s", "", "the site to grant to (default: the site of the daemon asked)")
	noWait := fs.Bool("no-wait", false, "return once the grant is under way")
	timeout := fs.Duration("timeout", 0, "how long to wait for the ticket to be held (default from the ticket's expire)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: grant [-F] [-s SITE] [--no-wait] TICKET")
	}
	name := pos[0]
	before, err := c.ticket(name)
	if err != nil {
		return err
	}
	target := *site
	if target == "" {
		target = before.Local
	}
	var r api.CommandResult
	if err := c.call(http.MethodPost, "/api/v1/tickets/"+name+"/grant", api.GrantRequest{Site: target, Force: *force}, &r); err != nil {
		return err
	}
	if *noWait {
		fmt.Fprintf(w, "%s: %s\n", name, r.Detail)
		return nil
	}
	if before.Owner != target {
		fmt.Fprintf(os.Stderr, "ticketctl: %s: %s; waiting until %s holds it\n", name, r.Detail, target)
	}
	wait := *timeout
	if wait == 0 {
		wait = defaultWait(before)
	}
	_, err = waitFor(c, name, wait, func(t api.Ticket) (bool, error) {
		if t.Owner != "" && t.Owner != target && t.Owner != before.Owner {
			return false, fail(1, "%s was granted to %s instead", name, t.Owner)
		}
		return t.Owner == target, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: granted to %s\n", name, target)
	return nil
}

func cmdRevoke(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	force := fs.Bool("F", false, "revoke only at this member, without the owner")
	noWait := fs.Bool("no-wait", false, "return once the revoke is under way")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: revoke [-F] TICKET")
	}
	name := pos[0]
	before, err := c.ticket(name)
	if err != nil {
		return err
	}
	var r api.CommandResult
	if err := c.call(http.MethodPost, "/api/v1/tickets/"+name+"/revoke", api.RevokeRequest{Force: *force}, &r); err != nil {
		return err
	}
	if !*noWait && !*force {
		if _, err := waitFor(c, name, 3*time.Duration(before.Expire*float64(time.Second))+10*time.Second, func(t api.Ticket) (bool, error) {
			return t.Owner == "" && !t.Managed, nil
		}); err != nil {
			return fail(1, "%v: the owner must be reachable to revoke (revoke -F only revokes here)", err)
		}
	}
	fmt.Fprintf(w, "%s: revoked\n", name)
	return nil
}

func cmdMove(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 0, "how long to wait for the target to hold the ticket")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fail(2, "usage: move TICKET SITE")
	}
	name, target := pos[0], pos[1]
	before, err := c.ticket(name)
	if err != nil {
		return err
	}
	var r api.CommandResult
	if err := c.call(http.MethodPost, "/api/v1/tickets/"+name+"/move", api.MoveRequest{Site: target}, &r); err != nil {
		return err
	}
	if before.Owner == target {
		// Nothing moved: say what the member answered ("already held
		// here"), not "moved".
		fmt.Fprintf(w, "%s: nothing to move: %s\n", name, r.Detail)
		return nil
	}
	wait := *timeout
	if wait == 0 {
		wait = defaultWait(before) + time.Minute
	}
	_, err = waitFor(c, name, wait, func(t api.Ticket) (bool, error) {
		if t.Owner == target {
			return true, nil
		}
		// The owner gives up when it cannot get ready (data not drained).
		changed := t.LastChange != nil && (before.LastChange == nil || !t.LastChange.Equal(*before.LastChange))
		if changed && strings.HasPrefix(t.Reason, "move aborted") {
			return false, errors.New(t.Reason)
		}
		return false, nil
	})
	if err != nil {
		return fail(1, "move of %s to %s did not complete: %v", name, target, err)
	}
	fmt.Fprintf(w, "%s: moved to %s\n", name, target)
	return nil
}

func cmdPeers(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(2, "usage: peers [--json] (no arguments; %q is one too many)", pos[0])
	}
	var ps []api.Peer
	if err := c.call(http.MethodGet, "/api/v1/peers", nil, &ps); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(w, ps)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tADDRESS\tLAST HEARD\tCLOCK OFFSET\tCONFIG\tZONES\tVERSION\tWIRE")
	for _, p := range ps {
		heard := "-"
		if p.LastHeard != nil {
			heard = time.Since(*p.LastHeard).Round(100*time.Millisecond).String() + " ago"
		}
		cfg := "same"
		if p.ConfigMismatch {
			cfg = "DIFFERS"
		}
		offset := math.Round(p.ClockOffsetMS)
		if offset == 0 {
			offset = 0 // not "-0"
		}
		zones := orDash(p.ZonesDigest)
		if p.ZonesMismatch {
			zones = "DIFFERS"
		} else if p.ZonesDigest != "" {
			zones = "same"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0fms\t%s\t%s\t%s\t%s\n", p.Name, p.Role, p.Status, p.Address, heard, offset, cfg,
			zones, orDash(p.Version), orDash(p.Wire))
	}
	return tw.Flush()
}

func cmdAttr(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("attr", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return fail(2, "usage: attr list|get|set|delete TICKET [NAME [VALUE]]")
	}
	op, name := pos[0], pos[1]
	path := "/api/v1/tickets/" + name + "/attrs"
	switch {
	case op == "list" && len(pos) == 2:
		var attrs map[string]string
		if err := c.call(http.MethodGet, path, nil, &attrs); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, attrs)
		}
		keys := make([]string, 0, len(attrs))
		for k := range attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%s\n", k, attrs[k])
		}
		return nil
	case op == "get" && len(pos) == 3:
		var a map[string]string
		if err := c.call(http.MethodGet, path+"/"+pos[2], nil, &a); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, a)
		}
		fmt.Fprintln(w, a["value"])
		return nil
	case op == "set" && len(pos) == 4:
		return c.call(http.MethodPut, path+"/"+pos[2], api.AttrRequest{Value: pos[3]}, nil)
	case op == "delete" && len(pos) == 3:
		return c.call(http.MethodDelete, path+"/"+pos[2], nil, nil)
	}
	return fail(2, "usage: attr list|get|set|delete TICKET [NAME [VALUE]]")
}

// cmdHeld answers, by its exit status, whether the member asked holds the
// ticket with a valid lease.
func cmdHeld(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("held", flag.ContinueOnError)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: held TICKET")
	}
	t, err := c.ticket(pos[0])
	if err != nil {
		return err
	}
	if !t.HeldLocally {
		return fail(1, "%s is not held by %s (owner %s)", t.Name, t.Local, orDash(t.Owner))
	}
	fmt.Fprintf(w, "%s is held by %s\n", t.Name, t.Local)
	return nil
}

// cmdCIB puts a ticket in standby or activates it in the asked site's
// local CIB (Booth's one safe manual CIB change, before planned work).
func cmdCIB(c *client, args []string, w io.Writer, op string) error {
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: %s TICKET", op)
	}
	var r api.CommandResult
	if err := c.call(http.MethodPost, "/api/v1/tickets/"+pos[0]+"/"+op, nil, &r); err != nil {
		return err
	}
	fmt.Fprintln(w, r.Detail)
	return nil
}

// cmdKeygen writes a new random cluster key (32 bytes, as Booth's
// authfile) or API token to a file only its owner can read. It refuses to
// overwrite an existing file.
func cmdKeygen(_ *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	token := fs.Bool("token", false, "write an API token instead of a cluster key")
	serf := fs.Bool("serf", false, "write a serf keyring (JSON list with one base64 AES-256 key)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: keygen [-token|-serf] FILE")
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fail(1, "random: %v", err)
	}
	var data []byte
	switch {
	case *serf:
		data, _ = json.Marshal([]string{base64.StdEncoding.EncodeToString(b)})
	case *token:
		data = []byte(base64.RawURLEncoding.EncodeToString(b))
	default:
		// A printable key, as Booth's authfile usually is.
		data = []byte(base64.RawURLEncoding.EncodeToString(b)[:43])
	}
	f, err := os.OpenFile(pos[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fail(1, "%s exists: not overwriting a key", pos[0])
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fail(1, "%v", err)
	}
	if err := f.Close(); err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(w, "wrote %s\n", pos[0])
	return nil
}

// cmdRepl shows the replicated volumes as the member asked sees them, or
// changes a volume's role (for the OCF agent and planned work), or starts
// an online verify against a peer.
func cmdRepl(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("repl", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	repair := fs.Bool("repair", false, "verify: resync the blocks found different")
	noWait := fs.Bool("no-wait", false, "verify: start it and return (repl status follows it)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	const use = "usage: repl [--json] | repl status VOLUME | repl promote|demote|invalidate|discard-my-data|skip-initial-sync VOLUME | repl resize VOLUME SIZE | repl verify [--repair] [--no-wait] VOLUME PEER"
	switch {
	case len(pos) == 0:
		var vs []api.Volume
		if err := c.call(http.MethodGet, "/api/v1/replication", nil, &vs); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, vs)
		}
		return printVolumes(w, vs)
	case len(pos) == 2 && pos[0] == "status":
		var v api.Volume
		if err := c.call(http.MethodGet, "/api/v1/replication/"+pos[1], nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, v)
		}
		return printVolumes(w, []api.Volume{v})
	case len(pos) == 2 && (pos[0] == "promote" || pos[0] == "demote" || pos[0] == "invalidate" || pos[0] == "discard-my-data" || pos[0] == "skip-initial-sync"):
		var r api.CommandResult
		if err := c.call(http.MethodPost, "/api/v1/replication/"+pos[1]+"/"+pos[0], nil, &r); err != nil {
			return err
		}
		fmt.Fprintln(w, r.Detail)
		return nil
	case len(pos) == 3 && pos[0] == "resize":
		var r api.CommandResult
		if err := c.call(http.MethodPost, "/api/v1/replication/"+pos[1]+"/resize", api.ResizeRequest{Size: pos[2]}, &r); err != nil {
			return err
		}
		fmt.Fprintln(w, r.Detail)
		return nil
	case len(pos) == 3 && pos[0] == "verify":
		var job api.VerifyJob
		if err := c.call(http.MethodPost, "/api/v1/replication/"+pos[1]+"/verify", api.VerifyRequest{Peer: pos[2], Repair: *repair}, &job); err != nil {
			return err
		}
		if *noWait {
			fmt.Fprintf(w, "%s: verify against %s started (ticketctl repl status %s follows it)\n", pos[1], pos[2], pos[1])
			return nil
		}
		// The verify runs in the daemon; follow it however long it takes.
		for job.Running {
			time.Sleep(500 * time.Millisecond)
			var st api.Volume
			if err := c.call(http.MethodGet, "/api/v1/replication/"+pos[1], nil, &st); err != nil {
				return err
			}
			if st.Verify == nil || !st.Verify.Started.Equal(job.Started) {
				return fail(1, "%s: the verify was replaced by another", pos[1])
			}
			job = *st.Verify
		}
		if *asJSON {
			return printJSON(w, job)
		}
		if job.Error != "" {
			return fail(1, "%s: verify against %s: %s (%d of %d blocks checked)", pos[1], job.Peer, job.Error, job.Checked, job.Total)
		}
		fmt.Fprintf(w, "%s: %d blocks checked against %s, %d different", pos[1], job.Checked, job.Peer, job.Differing)
		if job.Resynced {
			fmt.Fprint(w, " (resynced)")
		}
		fmt.Fprintln(w)
		if job.Differing > 0 && !job.Resynced {
			return fail(1, "%s differs from %s in %d blocks", pos[1], pos[2], job.Differing)
		}
		return nil
	}
	return fail(2, "%s", use)
}

func printVolumes(w io.Writer, vs []api.Volume) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "no replicated volumes at this member (a site's are its [[volumes]]; an arbitrator holds none)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tTICKET\tROLE\tDISK\tPEER\tLINK\tPEER DISK\tLAG\tRESYNC")
	for _, v := range vs {
		if len(v.Peers) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n", v.Volume, orDash(v.Ticket), v.Role, v.Disk)
		}
		for _, p := range v.Peers {
			lag := fmt.Sprintf("%dB/%.2fs", p.LagBytes, p.LagSeconds)
			resync := "-"
			if p.ResyncTotal > 0 {
				resync = fmt.Sprintf("%.0f%%", 100*float64(p.ResyncTotal-p.ResyncRemaining)/float64(p.ResyncTotal))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Volume, orDash(v.Ticket), v.Role, v.Disk,
				p.Name, p.State, orDash(string(p.PeerDisk)), lag, resync)
		}
		if v.SplitBrains > 0 {
			fmt.Fprintf(tw, "%s\tSPLIT BRAIN: %d detected, %d blocks discarded here\t\t\t\t\t\t\t\n", v.Volume, v.SplitBrains, v.Discarded)
		}
		if j := v.Verify; j != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\n", v.Volume, verifyLine(*j))
		}
	}
	return tw.Flush()
}

// verifyLine says how the running (or last) verify of a volume stands.
func verifyLine(j api.VerifyJob) string {
	pct := 100 * float64(j.Checked) / float64(max(j.Total, 1))
	switch {
	case j.Running:
		return fmt.Sprintf("VERIFY against %s: %.0f%% (%d of %d blocks), %d different so far, since %s", j.Peer, pct, j.Checked, j.Total, j.Differing, j.Started.Format(time.TimeOnly))
	case j.Error != "":
		return fmt.Sprintf("VERIFY against %s failed at %.0f%%: %s", j.Peer, pct, j.Error)
	}
	line := fmt.Sprintf("VERIFY against %s done: %d blocks, %d different", j.Peer, j.Checked, j.Differing)
	if j.Resynced {
		line += ", resynced"
	}
	return line
}

// cmdDNSDS prints the DS records of a signed zone, as the member serves
// it (args: "ds", then the command's own).
func cmdDNSDS(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("dns ds", flag.ContinueOnError)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fail(2, "usage: dns ds ZONE")
	}
	zone, err := dnskey.Origin(pos[0])
	if err != nil {
		return fail(2, "%v", err)
	}
	var st api.DNS
	if err := c.call(http.MethodGet, "/api/v1/dns", nil, &st); err != nil {
		return err
	}
	for _, z := range st.Zones {
		if z.Origin != zone {
			continue
		}
		if len(z.DS) == 0 {
			return fail(1, "%s is not signed (no dnssec_keys)", zone)
		}
		for _, ds := range z.DS {
			fmt.Fprintln(w, ds)
		}
		return nil
	}
	return fail(1, "%s: no such zone at this member", zone)
}

// cmdDNSKeygen writes a new DNSSEC key file (args: "keygen", then the
// command's own).
func cmdDNSKeygen(_ *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("dns keygen", flag.ContinueOnError)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fail(2, "usage: dns keygen ZONE FILE")
	}
	if _, err := dnskey.Origin(pos[0]); err != nil {
		return fail(2, "%v", err)
	}
	text, err := dnskey.New(pos[0])
	if err != nil {
		return err
	}
	f, err := os.OpenFile(pos[1], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(1, "%v", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %s", pos[1], strings.SplitN(text, "\n", 2)[0][2:]+"\n")
	return nil
}

// cmdDNS shows the member's DNS: each failover name, what it answers now
// and why, the health of the targets from every vantage point, the zone
// serial and the NOTIFY results.
func cmdDNS(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(2, "usage: dns [--json]")
	}
	var st api.DNS
	if err := c.call(http.MethodGet, "/api/v1/dns", nil, &st); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, z := range st.Zones {
		fmt.Fprintf(tw, "zone %s serial %d (served on %s)\n", z.Origin, z.Serial, st.Listen)
		fmt.Fprintln(tw, "NAME\tTYPE\tTICKET\tOWNER\tANSWER\tTTL\tWHY")
		for _, n := range z.Names {
			answer := strings.Join(n.Targets, ",")
			if answer == "" {
				answer = "(no data)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.Name, n.Type, n.Ticket, orDash(n.Owner), answer, n.TTL, n.Why)
		}
		if len(z.Checks) > 0 {
			fmt.Fprintln(tw, "\nSITE\tTARGET\tCHECK\tSTATE\tVANTAGE POINTS\tHERE")
			for _, ck := range z.Checks {
				var vs []string
				for v, s := range ck.Vantages {
					vs = append(vs, v+"="+string(s))
				}
				sort.Strings(vs)
				here := ck.Local
				if ck.Progress != "" {
					here += " (" + ck.Progress + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ck.Site, ck.Target, orDash(ck.Check), ck.State, orDash(strings.Join(vs, " ")), orDash(here))
			}
		}
		for _, n := range z.Notify {
			signed := "unsigned"
			if n.Key != "" {
				signed = "signed with " + n.Key
			}
			fmt.Fprintf(tw, "NOTIFY %s (%s): serial %d, %s (%d retries)\n", n.Target, signed, n.Serial, n.Result, n.Retries)
		}
		if z.Update != nil {
			fmt.Fprintf(tw, "UPDATE %s: serial %d, %s (%d retries)\n", z.Update.Target, z.Update.Serial, z.Update.Result, z.Update.Retries)
		}
	}
	return tw.Flush()
}

// cmdWatch refreshes the summary the dashboard shows, in the terminal:
// tickets, members, replication and DNS (when the member has them).
func cmdWatch(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	interval := fs.Duration("interval", 2*time.Second, "time between refreshes")
	count := fs.Int("count", 0, "stop after this many refreshes (0: until interrupted)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *interval <= 0 {
		return fail(2, "usage: watch [--interval D] [--count N]")
	}
	clear := isTerminal(w)
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		var b strings.Builder
		if clear {
			b.WriteString("\x1b[H\x1b[2J")
		} else if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "geobooth at %s · %s\n\n", c.base, time.Now().Format("15:04:05"))
		if err := cmdList(c, nil, &b); err != nil {
			fmt.Fprintf(&b, "tickets: %v\n", err)
		}
		b.WriteString("\n")
		if err := cmdPeers(c, nil, &b); err != nil {
			fmt.Fprintf(&b, "members: %v\n", err)
		}
		var vs []api.Volume
		if c.call(http.MethodGet, "/api/v1/replication", nil, &vs) == nil && len(vs) > 0 {
			b.WriteString("\n")
			printVolumes(&b, vs)
		}
		var ds api.DNS
		if c.call(http.MethodGet, "/api/v1/dns", nil, &ds) == nil {
			for _, z := range ds.Zones {
				fmt.Fprintf(&b, "\nDNS %s serial %d\n", z.Origin, z.Serial)
				for _, n := range z.Names {
					fmt.Fprintf(&b, "  %s %s → %s (TTL %d; %s)\n", n.Name, n.Type, orDash(strings.Join(n.Targets, ",")), n.TTL, n.Why)
				}
			}
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
