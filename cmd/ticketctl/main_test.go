package main

import (
	"errors"
	"strings"
	"testing"
)

// Issue 19: --help, -h and no arguments printed the usage on one line and
// exited 2, `grant -h` printed only "flag: help requested", `help` was an
// unknown command, `list nosuch` ignored its argument, and there was no
// version.
func TestHelpVersionAndExtraArguments(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		err := run(args, &strings.Builder{})
		var h *helpText
		if !errors.As(err, &h) || !strings.Contains(h.text, "\ncommands:\n") || !strings.Contains(h.text, "\n  keygen [-token|-serf] FILE") {
			t.Errorf("%v: %v", args, err)
		}
	}
	err := run([]string{"grant", "-h"}, &strings.Builder{})
	var h *helpText
	if !errors.As(err, &h) || !strings.Contains(h.text, "flags of grant:") || !strings.Contains(h.text, "-s string") {
		t.Errorf("grant -h: %v", err)
	}
	var out strings.Builder
	if err := run([]string{"version"}, &out); err != nil || !strings.HasPrefix(out.String(), "ticketctl ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	var ee *exitError
	err = run([]string{"-addr", "127.0.0.1:1", "list", "nosuch"}, &strings.Builder{})
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(ee.msg, `"nosuch" is one too many`) {
		t.Errorf("list nosuch: %v", err)
	}
	err = run(nil, &strings.Builder{})
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(ee.msg, "no command\n\nusage:") {
		t.Errorf("no arguments: %v", err)
	}
}
