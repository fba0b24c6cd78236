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
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func manFlags(b *strings.Builder, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg := ""
		if takesValue(f) {
			name, _ := flag.UnquoteUsage(f)
			arg = " " + name
		}
		fmt.Fprintf(b, ".TP\n.B %s%s\n%s", roff(dashed(f)), roff(arg), roff(f.Usage))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(b, " (default %s)", roff(f.DefValue))
		}
		b.WriteString("\n")
	})
}

// manPage is ticketctl(1), from the command table.
func manPage() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH TICKETCTL 1 \"\" \"geobooth %s\" \"geobooth manual\"\n", roff(buildinfo.String()))
	b.WriteString(".SH NAME\nticketctl \\- the operator's command line for geobooth tickets, members, volumes and DNS\n")
	b.WriteString(".SH SYNOPSIS\n.B ticketctl\n[\\fB\\-config\\fR \\fIFILE\\fR | \\fB\\-addr\\fR \\fIHOST:PORT\\fR [\\fB\\-token\\-file\\fR \\fIFILE\\fR] [\\fB\\-ca\\fR \\fIFILE\\fR]] \\fICOMMAND\\fR [\\fIflags\\fR] [\\fIargs\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roff("ticketctl talks to one geoboothd over its HTTP API (the member named by -config, -addr or the environment) and shows or changes what that member sees: tickets, members, replicated volumes and DNS answers. keygen, tls, completion and man need no daemon.") + "\n")
	b.WriteString(".SH GLOBAL FLAGS\n")
	fs, _ := newGlobalFlags()
	manFlags(&b, fs)
	b.WriteString(".SH COMMANDS\n")
	for i := range table {
		c := &table[i]
		fmt.Fprintf(&b, ".SS %s\n", roff(strings.TrimSpace(c.name+" "+c.synopsis)))
		b.WriteString(roff(strings.ReplaceAll(c.summary, "\n", " ")) + "\n")
		var n int
		cfs := flagsOf(c)
		cfs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			b.WriteString(".RS\n")
			manFlags(&b, cfs)
			b.WriteString(".RE\n")
		}
	}
	b.WriteString(".SH ENVIRONMENT\n")
	for _, e := range environment {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s (the default of \\fB%s\\fR).\n", e.name, roff(e.what), roff("-"+e.flag))
	}
	b.WriteString(".SH FILES\n.TP\n.B " + roff(defaultConfigDir) + "/*.toml\n")
	b.WriteString(roff("Without -config, -addr or the environment, ticketctl uses the one member configuration (a file with local = ...) in this folder.") + "\n")
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", e.code, roff(e.what))
	}
	b.WriteString(".SH SEE ALSO\n.BR geoboothd (8),\n.BR crm_ticket (8),\n.BR booth (8)\n")
	return b.String()
}
