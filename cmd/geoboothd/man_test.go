package main

import (
	"flag"
	"os/exec"
	"strings"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

// geoboothd(8) lists every option of the daemon's flag set and is valid
// roff (groff reports nothing).
func TestManPage(t *testing.T) {
	fs := flag.NewFlagSet("geoboothd", flag.ContinueOnError)
	fs.String("config", "", "daemon configuration `FILE` (TOML)")
	fs.Bool("check", false, "validate the configuration and exit")
	page := manPage(fs)
	for _, want := range []string{".SH OPTIONS", `\-config FILE`, `\-check`, ".SH SIGNALS", "SIGHUP", ".SH EXIT STATUS"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q in\n%s", want, page)
		}
	}
	groff := testenv.RequireTool(t, "groff", "groff-base")
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
}
