package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/dnsfail/dnskey"
)

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
