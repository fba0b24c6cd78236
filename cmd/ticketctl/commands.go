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
