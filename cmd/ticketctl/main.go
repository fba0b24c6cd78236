// Command ticketctl is the operator's CLI for geobooth, Booth-like:
//
//	ticketctl [-config FILE | -addr HOST:PORT -token-file FILE] COMMAND [flags] [args]
//
// The commands, their flags, the environment and the exit statuses are in
// one table (table), from which the usage, `help COMMAND`, the completion
// scripts and the man page are written. Read commands take --json. The
// exit status is 0 on success; otherwise a one-line reason goes to stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/geobooth/geobooth/kit/buildinfo"
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

// command is one entry of the command table: the usage, `help`, the
// completion scripts and the man page are all written from it, and a
// command's flags from its own flag set (asked with -h).
type command struct {
	name     string // "grant"; "tls ca" for a subcommand
	synopsis string // flags and arguments after the name
	summary  string // what it does; more lines are indented in the usage
	run      func(c *client, args []string, stdout io.Writer) error
	// local commands need no daemon.
	local bool
}

var table = []command{
	{name: "list", synopsis: "[--json]", summary: "tickets as this member sees them", run: cmdList},
	{name: "grant", synopsis: "[-F] [-s SITE] [--no-wait] TICKET", summary: "grant a ticket (to this member's site by default)", run: cmdGrant},
	{name: "revoke", synopsis: "[-F] [--no-wait] TICKET", summary: "revoke a ticket (-F: only here)", run: cmdRevoke},
	{name: "move", synopsis: "[--timeout D] TICKET SITE", summary: "planned handover to SITE", run: cmdMove},
	{name: "peers", synopsis: "[--json]", summary: "members: status, clock offset, config and zones, version, wire", run: cmdPeers},
	{name: "attr", synopsis: "list|get|set|delete TICKET [NAME [VALUE]] [--json]", summary: "a ticket's attributes", run: cmdAttr},
	{name: "standby", synopsis: "TICKET", summary: "stop the ticket's resources in this site's CIB (planned work)",
		run: func(c *client, a []string, w io.Writer) error { return cmdCIB(c, a, w, "standby") }},
	{name: "activate", synopsis: "TICKET", summary: "let the ticket's resources run again in this site's CIB",
		run: func(c *client, a []string, w io.Writer) error { return cmdCIB(c, a, w, "activate") }},
	{name: "held", synopsis: "TICKET", summary: "exit 0 when the member asked holds the ticket, 1 when not (for scripts and agents)", run: cmdHeld},
	{name: "repl", synopsis: "[--json] [status VOLUME] | promote|demote|invalidate|discard-my-data|skip-initial-sync VOLUME | resize VOLUME SIZE | verify [--repair] [--no-wait] VOLUME PEER",
		summary: "replicated volumes: role, disk state, peers, lag, resync;\npromote only where the volume's ticket is held; verify compares\nwith a peer's copy online (--repair resyncs the differences from\nthe primary, or from either side with no primary); invalidate\ndiscards this copy for a full sync from a peer; discard-my-data\nresolves a split brain at the side whose changes are to go;\nskip-initial-sync declares new replicas on blank devices equal;\nresize grows the volume online once every site's storage grew", run: cmdRepl},
	{name: "dns", synopsis: "[--json]", summary: "failover names: the answer now and why, target health per vantage point, serial, NOTIFY", run: cmdDNS},
	{name: "dns ds", synopsis: "ZONE", summary: "the DS records of a signed zone's keys, to give its parent", run: cmdDNSDS},
	{name: "dns keygen", synopsis: "ZONE FILE", summary: "write a new DNSSEC key for ZONE (ECDSA P-256, combined signing key;\nmode 0600): list it in the zone's dnssec_keys on every member", run: cmdDNSKeygen, local: true},
	{name: "events", synopsis: "[-f] [--since SEQ] [--count N] [--json]", summary: "the member's recent events, oldest first; -f follows them as they happen", run: cmdEvents},
	{name: "watch", synopsis: "[--interval D] [--count N]", summary: "a live terminal summary: tickets, members, replication, DNS", run: cmdWatch},
	{name: "import-booth", synopsis: "[-o FILE] BOOTH.CONF", summary: "the geobooth cluster file that matches a booth.conf, with what differs\nexplained at its top (docs/booth.md)", run: cmdImportBooth, local: true},
	{name: "keygen", synopsis: "[-token|-serf] FILE", summary: "write a new cluster key, API token or serf keyring (mode 0600)", run: cmdKeygen, local: true},
	{name: "tls ca", synopsis: "[-days N] [-dir DIR] [-name CLUSTER]", summary: "make the cluster's CA (ca.pem, ca-key.pem)", run: cmdTLS, local: true},
	{name: "tls cert", synopsis: "[-host H]... [-ca FILE] [-ca-key FILE] [-dir DIR] [-days N] MEMBER",
		summary: "make a member's certificate and key, signed by the CA", run: cmdTLS, local: true},
	{name: "version", summary: "this program's version (--version too)", local: true},
	{name: "help", synopsis: "[COMMAND]", summary: "this text, or a command's flags", local: true},
	{name: "completion", synopsis: "bash|zsh|fish", summary: "a shell completion script, for example\n. <(ticketctl completion bash)", local: true},
	{name: "man", summary: "the manual page (roff), for example ticketctl man | man -l -", local: true},
}

// environment lists the variables that stand for global flags.
var environment = []struct{ name, flag, what string }{
	{"GEOBOOTH_CONFIG", "config", "a member's configuration file"},
	{"GEOBOOTH_ADDR", "addr", "the daemon's API address"},
	{"GEOBOOTH_TOKEN_FILE", "token-file", "the API token's file"},
	{"GEOBOOTH_CA", "ca", "the cluster CA's certificate"},
}

// exitCodes are ticketctl's exit statuses.
var exitCodes = []struct {
	code int
	what string
}{
	{0, "success (held: the ticket is held)"},
	{1, "the operation failed or was refused (held: not held); the reason is on stderr"},
	{2, "usage or configuration error: unknown command, bad flags or arguments, no daemon named"},
	{3, "the daemon cannot be reached, or its answer cannot be read"},
	{4, "the daemon refused the API token"},
}

// find returns the table entry args name ("tls cert" takes two words),
// and how many words it took.
func find(args []string) (*command, int) {
	if len(args) == 0 {
		return nil, 0
	}
	if len(args) > 1 {
		for i := range table {
			if table[i].name == args[0]+" "+args[1] {
				return &table[i], 2
			}
		}
	}
	for i := range table {
		if table[i].name == args[0] || strings.HasPrefix(table[i].name, args[0]+" ") {
			return &table[i], 1
		}
	}
	return nil, 0
}

// globalFlags declares the flags before COMMAND; their defaults come from
// the environment.
type globalFlags struct {
	config, addr, tokenFile, ca *string
	version                     *bool
}

func newGlobalFlags() (*flag.FlagSet, globalFlags) {
	fs := flag.NewFlagSet("ticketctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := func(flag string) string {
		for _, e := range environment {
			if e.flag == flag {
				return os.Getenv(e.name)
			}
		}
		return ""
	}
	g := globalFlags{
		config:    fs.String("config", env("config"), "a member's daemon configuration (API address, token, CA); default: the one member configuration in "+defaultConfigDir),
		addr:      fs.String("addr", env("addr"), "the daemon's API address (host:port or URL)"),
		tokenFile: fs.String("token-file", env("token-file"), "file holding the API token"),
		ca:        fs.String("ca", env("ca"), "the cluster's CA, to reach an API served over HTTPS"),
		version:   fs.Bool("version", false, "print the version and exit"),
	}
	return fs, g
}

// usage is the text of -h, --help and help.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: ticketctl [-config FILE | -addr HOST:PORT [-token-file FILE] [-ca FILE]] COMMAND [flags] [args]\n\ncommands:\n")
	for _, c := range table {
		left := "  " + strings.TrimSpace(c.name+" "+c.synopsis)
		lines := strings.Split(c.summary, "\n")
		if len(left) < 40 {
			fmt.Fprintf(&b, "%-40s %s\n", left, lines[0])
		} else {
			fmt.Fprintf(&b, "%s\n%-40s %s\n", left, "", lines[0])
		}
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%-40s %s\n", "", l)
		}
	}
	b.WriteString("\nglobal flags:\n")
	fs, _ := newGlobalFlags()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	b.WriteString("\nenvironment (defaults of the global flags):\n")
	for _, e := range environment {
		fmt.Fprintf(&b, "  %-20s -%s: %s\n", e.name, e.flag, e.what)
	}
	b.WriteString("\nexit status:\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.what)
	}
	b.WriteString("\nCOMMAND -h or help COMMAND: the flags of COMMAND.\n")
	return b.String()
}

// flagsOf returns a command's flag set, from the command itself.
func flagsOf(c *command) *flag.FlagSet {
	if c.run == nil {
		return flag.NewFlagSet(c.name, flag.ContinueOnError)
	}
	words := strings.Fields(c.name)
	err := c.run(nil, append(words[1:], "-h"), io.Discard)
	var h *helpText
	if errors.As(err, &h) && h.fs != nil {
		return h.fs
	}
	return flag.NewFlagSet(c.name, flag.ContinueOnError)
}

// commandHelp is `help COMMAND` and `COMMAND -h`.
func commandHelp(c *command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: ticketctl [global flags] %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.summary)
	fs := flagsOf(c)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(&b, "\nflags of %s:\n", c.name)
		fs.SetOutput(&b)
		fs.PrintDefaults()
	}
	return b.String()
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
	fs, g := newGlobalFlags()
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return &helpText{text: usage()}
	} else if err != nil {
		return fail(2, "%v\n\n%s", err, usage())
	}
	rest := fs.Args()
	if *g.version || len(rest) > 0 && rest[0] == "version" {
		fmt.Fprintln(stdout, "ticketctl", buildinfo.String())
		return nil
	}
	if len(rest) == 0 {
		return fail(2, "no command\n\n%s", usage())
	}
	switch rest[0] {
	case "help":
		if len(rest) == 1 {
			return &helpText{text: usage()}
		}
		c, _ := find(rest[1:])
		if c == nil {
			return fail(2, "help: unknown command %q (commands: %s)", strings.Join(rest[1:], " "), commandNames())
		}
		return &helpText{text: commandHelp(c)}
	case "completion":
		return cmdCompletion(rest[1:], stdout)
	case "man":
		if len(rest) != 1 {
			return fail(2, "usage: man (no arguments)")
		}
		_, err := io.WriteString(stdout, manPage())
		return err
	}
	cmd, n := find(rest)
	if cmd == nil {
		return fail(2, "unknown command %q (commands: %s)", rest[0], commandNames())
	}
	if n == 1 && len(rest) > 1 && isHelpFlag(rest[1]) {
		// grant -h; tls -h: every command of the group.
		var b strings.Builder
		for i := range table {
			if c := &table[i]; c.name == rest[0] || strings.HasPrefix(c.name, rest[0]+" ") {
				if b.Len() > 0 {
					b.WriteString("\n")
				}
				b.WriteString(commandHelp(c))
			}
		}
		return &helpText{text: b.String()}
	}
	var c *client
	if !cmd.local && !slices.ContainsFunc(rest[1:], isHelpFlag) {
		var err error
		c, err = newClient(*g.config, *g.addr, *g.tokenFile, *g.ca)
		if err != nil {
			return fail(2, "%v", err)
		}
	}
	err := cmd.run(c, rest[1:], stdout)
	var h *helpText
	if errors.As(err, &h) && h.fs != nil {
		// COMMAND [args] -h: the command's help, from the table.
		for i := range table {
			if table[i].name == h.fs.Name() {
				return &helpText{text: commandHelp(&table[i])}
			}
		}
	}
	return err
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// commandNames lists the first words of the commands, for errors.
func commandNames() string {
	var names []string
	for _, c := range table {
		if w := strings.Fields(c.name)[0]; !slices.Contains(names, w) {
			names = append(names, w)
		}
	}
	return strings.Join(names, ", ")
}
