package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/geobooth/geobooth/api"
)

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
