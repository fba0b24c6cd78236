package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// cword is a first word of the command table as completion sees it, with
// its second words (subcommands) and its flags.
type cword struct {
	name    string
	summary string
	subs    []string
	flags   []*flag.Flag
}

func completionWords() []cword {
	var out []cword
	index := map[string]int{}
	for i := range table {
		c := &table[i]
		w := strings.Fields(c.name)
		j, ok := index[w[0]]
		if !ok {
			j = len(out)
			index[w[0]] = j
			out = append(out, cword{name: w[0], summary: strings.SplitN(c.summary, "\n", 2)[0]})
		}
		if len(w) > 1 {
			out[j].subs = append(out[j].subs, w[1])
		}
		seen := map[string]bool{}
		for _, f := range out[j].flags {
			seen[f.Name] = true
		}
		flagsOf(c).VisitAll(func(f *flag.Flag) {
			if !seen[f.Name] {
				out[j].flags = append(out[j].flags, f)
			}
		})
	}
	if i, ok := index["completion"]; ok {
		out[i].subs = []string{"bash", "zsh", "fish"}
	}
	return out
}

func globalFlagList() []*flag.Flag {
	fs, _ := newGlobalFlags()
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// dashed is a flag as typed: one dash for one letter, two for words
// (both work with Go's flag package).
func dashed(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// takesValue says whether a flag needs an argument.
func takesValue(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

func cmdCompletion(args []string, w io.Writer) error {
	if len(args) != 1 {
		return fail(2, "usage: completion bash|zsh|fish")
	}
	switch args[0] {
	case "bash":
		_, err := io.WriteString(w, bashCompletion())
		return err
	case "zsh":
		_, err := io.WriteString(w, "#compdef ticketctl\n# zsh runs the bash completion: autoload -U +X bashcompinit && bashcompinit\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion())
		return err
	case "fish":
		_, err := io.WriteString(w, fishCompletion())
		return err
	}
	return fail(2, "completion: unknown shell %q (bash, zsh or fish)", args[0])
}

func bashCompletion() string {
	var b strings.Builder
	words := completionWords()
	var first []string
	for _, c := range words {
		first = append(first, c.name)
	}
	var globals, valued []string
	for _, f := range globalFlagList() {
		globals = append(globals, dashed(f))
		if takesValue(f) {
			valued = append(valued, "-"+f.Name, "--"+f.Name)
		}
	}
	b.WriteString("# bash completion for ticketctl (written by ticketctl completion bash)\n")
	b.WriteString("_ticketctl() {\n")
	b.WriteString("    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i\n")
	fmt.Fprintf(&b, "    case $prev in %s) COMPREPLY=($(compgen -f -- \"$cur\")); return;; esac\n", strings.Join(valued, "|"))
	b.WriteString("    for ((i = 1; i < COMP_CWORD; i++)); do\n")
	fmt.Fprintf(&b, "        case ${COMP_WORDS[i]} in %s) ((i++));; -*) ;; *) cmd=${COMP_WORDS[i]}; break;; esac\n", strings.Join(valued, "|"))
	b.WriteString("    done\n")
	b.WriteString("    case $cmd in\n")
	fmt.Fprintf(&b, "    \"\") COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", strings.Join(append(first, globals...), " "))
	for _, c := range words {
		var opts []string
		for _, f := range c.flags {
			opts = append(opts, dashed(f))
		}
		opts = append(opts, c.subs...)
		fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", c.name, strings.Join(opts, " "))
	}
	b.WriteString("    esac\n}\ncomplete -F _ticketctl ticketctl\n")
	return b.String()
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for ticketctl (written by ticketctl completion fish)\ncomplete -c ticketctl -f\n")
	for _, f := range globalFlagList() {
		fmt.Fprintf(&b, "complete -c ticketctl -n __fish_use_subcommand -l %s -d %s%s\n", f.Name, fishQuote(f.Usage), fishArg(f))
	}
	for _, c := range completionWords() {
		fmt.Fprintf(&b, "complete -c ticketctl -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
		for _, s := range c.subs {
			fmt.Fprintf(&b, "complete -c ticketctl -n '__fish_seen_subcommand_from %s' -a %s\n", c.name, s)
		}
		for _, f := range c.flags {
			opt := "-l " + f.Name
			if len(f.Name) == 1 {
				opt = "-s " + f.Name
			}
			fmt.Fprintf(&b, "complete -c ticketctl -n '__fish_seen_subcommand_from %s' %s -d %s%s\n", c.name, opt, fishQuote(f.Usage), fishArg(f))
		}
	}
	return b.String()
}

func fishArg(f *flag.Flag) string {
	if takesValue(f) {
		return " -r"
	}
	return ""
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
