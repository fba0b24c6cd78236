// Command ticketctl is the operator's CLI for geobooth, Booth-like:
//
//	ticketctl [-config FILE | -addr HOST:PORT -token-file FILE] COMMAND [flags] [args]
//
// Commands: list, grant, revoke, move, peers, attr, standby, activate,
// held, repl, dns, watch, keygen. Read commands
// take --json. The exit status is 0 on success; otherwise a one-line
// reason goes to stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/geobooth/geobooth/internal/buildinfo"
)

// exitError carries an exit status with its one-line reason.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

const usage = `usage: ticketctl [-config FILE | -addr HOST:PORT [-token-file FILE] [-ca FILE]] COMMAND [flags] [args]

commands:
  list [--json]                          tickets as this member sees them
  grant [-F] [-s SITE] [--no-wait] TICKET grant a ticket (to this member's site by default)
  revoke [-F] [--no-wait] TICKET          revoke a ticket (-F: only here)
  move [--timeout D] TICKET SITE          planned handover to SITE
  peers [--json]                         members and their status
  attr list|get|set|delete TICKET [NAME [VALUE]] [--json]
  standby TICKET | activate TICKET       stop / restart the ticket's resources in this site's CIB (planned work)
  repl [--json] [status VOLUME]          replicated volumes: role, disk state, peers, lag, resync
  repl promote|demote VOLUME             change a volume's role (promote only where its ticket is held)
  repl verify [--repair] VOLUME PEER     compare the volume with a peer's copy online;
                                         --repair (on the primary, or either side
                                         with no primary) resyncs the differences
                                         from this side
  dns [--json]                           failover names: the answer now and why, target health per vantage point, serial, NOTIFY
  watch [--interval D] [--count N]       a live terminal summary: tickets, members, replication, DNS
  held TICKET                            exit 0 when the member asked holds the ticket, 1 when not (for scripts and agents)
  keygen [-token|-serf] FILE             write a new cluster key (API token, serf keyring), mode 0600
  tls ca [-days N] [-dir DIR]            make the cluster's CA (ca.pem, ca-key.pem)
  tls cert [-host H]... MEMBER           make a member's certificate and key, signed by the CA
                                         (-ca FILE -ca-key FILE -dir DIR -days N)
  version                                this program's version (-version too)
  help                                   this text; COMMAND -h: the flags of COMMAND
`

type command struct {
	name string
	run  func(c *client, args []string, stdout io.Writer) error
	// local commands need no daemon.
	local bool
}

var commands = map[string]command{
	"list":     {name: "list", run: cmdList},
	"grant":    {name: "grant", run: cmdGrant},
	"revoke":   {name: "revoke", run: cmdRevoke},
	"move":     {name: "move", run: cmdMove},
	"peers":    {name: "peers", run: cmdPeers},
	"attr":     {name: "attr", run: cmdAttr},
	"standby":  {name: "standby", run: func(c *client, a []string, w io.Writer) error { return cmdCIB(c, a, w, "standby") }},
	"activate": {name: "activate", run: func(c *client, a []string, w io.Writer) error { return cmdCIB(c, a, w, "activate") }},
	"keygen":   {name: "keygen", run: cmdKeygen, local: true},
	"tls":      {name: "tls", run: cmdTLS, local: true},
	"held":     {name: "held", run: cmdHeld},
	"repl":     {name: "repl", run: cmdRepl},
	"dns":      {name: "dns", run: cmdDNS},
	"watch":    {name: "watch", run: cmdWatch},
}

func main() {
	err := run(os.Args[1:], os.Stdout)
	if err == nil {
		return
	}
	var help *helpText
	if errors.As(err, &help) {
		fmt.Print(help.text)
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	// The reason on the first line; a usage, when one follows, keeps its
	// lines.
	fmt.Fprintln(os.Stderr, "ticketctl:", strings.TrimSpace(err.Error()))
	os.Exit(code)
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ticketctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "a member's daemon configuration (API address, token, CA)")
	addr := fs.String("addr", "", "the daemon's API address (host:port or URL)")
	tokenFile := fs.String("token-file", "", "file holding the API token")
	caFile := fs.String("ca", "", "the cluster's CA, to reach an API served over HTTPS")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return &helpText{usage}
	} else if err != nil {
		return fail(2, "%v\n\n%s", err, usage)
	}
	rest := fs.Args()
	if *showVersion || len(rest) > 0 && rest[0] == "version" {
		fmt.Fprintln(stdout, "ticketctl", buildinfo.String())
		return nil
	}
	if len(rest) > 0 && rest[0] == "help" {
		return &helpText{usage}
	}
	if len(rest) == 0 {
		return fail(2, "no command\n\n%s", usage)
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		return fail(2, "unknown command %q (commands: %s)", rest[0], strings.Join(names, ", "))
	}
	var c *client
	wantsHelp := slices.ContainsFunc(rest[1:], func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
	if !cmd.local && !wantsHelp {
		var err error
		c, err = newClient(*cfgPath, *addr, *tokenFile, *caFile)
		if err != nil {
			return fail(2, "%v", err)
		}
	}
	return cmd.run(c, rest[1:], stdout)
}
