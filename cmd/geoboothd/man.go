package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/geobooth/geobooth/kit/buildinfo"
)

// roff escapes text for a man page.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// manPage is geoboothd(8), its options from the flag set itself.
func manPage(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH GEOBOOTHD 8 \"\" \"geobooth %s\" \"geobooth manual\"\n", roff(buildinfo.String()))
	b.WriteString(".SH NAME\ngeoboothd \\- the geobooth daemon of a geo cluster's site or arbitrator\n")
	b.WriteString(".SH SYNOPSIS\n.B geoboothd\n\\fB\\-config\\fR \\fIFILE\\fR [\\fIoptions\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roff("geoboothd is one member of a geo cluster: a site, which may hold tickets and runs what they guard (Pacemaker tickets in its CIB, replicated volumes, DNS answers), or an arbitrator, which votes. A majority grants a ticket as an expiring lease; the owner renews it; when the owner is lost the lease runs out and another site may take it. It reads one TOML file, stays in the foreground and logs to standard error.") + "\n")
	b.WriteString(".SH OPTIONS\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		arg := ""
		if name != "" {
			arg = " " + name
		}
		fmt.Fprintf(&b, ".TP\n.B \\-%s%s\n%s\n", roff(f.Name), roff(arg), roff(usage))
	})
	b.WriteString(".SH SIGNALS\n")
	for _, s := range [][2]string{
		{"SIGTERM, SIGINT", "stop: leave the membership pool, close the replicas and the listeners, exit 0. A ticket held is not revoked: its lease runs out unless the member is back before."},
		{"SIGHUP", "reload: the zones and zone files, health checks, API tokens, log level, alert hooks and TLS files; a configuration that does not load, or that changes what needs a restart, is refused with the reason in the log, and the running one stays (systemctl reload)."},
	} {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(s[0]), roff(s[1]))
	}
	b.WriteString(".SH SYSTEMD\n")
	b.WriteString(roff("Run by geoboothd@NAME.service (Type=notify): READY=1 once its listeners are bound and its stored ticket state is read, WATCHDOG=1 only while the ticket loop runs, STOPPING=1 at stop.") + "\n")
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range [][2]string{
		{"0", "stopped by a signal; with -check, -version or -man: done"},
		{"1", "could not start, or a part failed while running (a revoke the local CIB refuses makes it exit, so the local cluster can recover)"},
		{"2", "the configuration does not load (each problem on its own line, with file, line and key)"},
	} {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", e[0], roff(e[1]))
	}
	b.WriteString(".SH FILES\n.TP\n.B /etc/geobooth/NAME.toml\n" + roff("the member's configuration (geoboothd@NAME)") + "\n.TP\n.B /var/lib/geobooth/NAME\n" +
		roff("its durable state: ticket votes and promises, replica metadata, DNS serials; never delete it while the cluster runs") + "\n")
	b.WriteString(".SH SEE ALSO\n.BR ticketctl (1),\n.BR crm_ticket (8),\n.BR systemd.service (5)\n")
	return b.String()
}
