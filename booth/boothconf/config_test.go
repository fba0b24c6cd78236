package boothconf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// configCase is a booth.conf text Booth accepts (errLine 0) or refuses at
// a line, with the words its error says.
type configCase struct {
	name    string
	text    string
	errLine int
	errSays string
}

var configCases = []configCase{
	{"minimal", "site=\"10.1.1.1\"\nticket=\"web\"\n", 0, ""},
	{"no final newline, trailing blanks, comments", "# c\nsite = \"10.1.1.1\"   \n\n  ticket = 'web'  # t\n   expire = 300", 0, ""},
	{"unquoted values, a comment after a port", "port = 9930 # p\nsite = 10.1.1.1\nsite = 10.1.1.2\narbitrator = 10.1.1.3\nticket = web\n", 0, ""},
	{"milliseconds", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=10500ms\ntimeout=500ms\nrenewal-freq=5s\n", 5, "Expected time >0 for renewal-freq"},
	{"milliseconds accepted", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=10500ms\ntimeout=500ms\nretries=3\nrenewal-freq=5000ms\n", 0, ""},
	{"defaults", "site=\"10.1.1.1\"\nticket=\"__defaults__\"\nexpire=60\nretries=4\nticket=\"a\"\nticket=\"b\"\nexpire=120\n", 0, ""},
	{"defaults are checked too", "site=\"10.1.1.1\"\nticket=\"__defaults__\"\nexpire=40\nretries=4\nticket=\"a\"\n", 5, "cannot exceed renewal frequency"},
	{"the default retries do not fit a short expire", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=30\n", 3, "cannot exceed renewal frequency"},
	{"everything a ticket takes", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=600\ntimeout=5\nretries=10\nrenewal-freq=300\nacquire-after=60\nbefore-acquire-handler=/usr/share/booth/service-runnable db\nattr-prereq=auto repl eq ok\nmode=manual\nweights=1,2;3\n", 0, ""},
	{"bad transport", "transport=\"SNEAKERNET\"\nsite=\"10.1.1.1\"\n", 1, `invalid transport protocol "SNEAKERNET"`},
	{"two transports", "transport=UDP\ntransport=UDP\n", 2, "multiple transport lines"},
	{"a ticket key before a ticket", "site=\"10.1.1.1\"\nexpire=30\n", 2, `Unexpected keyword "expire"`},
	{"an unknown key in a ticket", "site=\"10.1.1.1\"\nticket=\"web\"\nunknown-keyword=value\n", 3, `Unknown keyword "unknown-keyword"`},
	{"unquoted space in a ticket name", "site=\"10.1.1.1\"\nticket=unquoted space\n", 2, `ticket name "unquoted space" invalid`},
	{"a ticket twice", "site=\"10.1.1.1\"\nticket=\"web\"\nticket=\"web\"\n", 3, `ticket name "web" used again`},
	{"retries too few", "site=\"10.1.1.1\"\nticket=\"web\"\nretries=2\n", 3, "range [3, 100]"},
	{"retries do not fit the renewal", "site=\"10.1.1.1\"\nticket=\"a\"\ntimeout=2\nretries=3\nrenewal-freq=8\nticket=\"b\"\n", 6, "cannot exceed renewal frequency"},
	{"retries do not fit, last ticket", "site=\"10.1.1.1\"\nticket=\"a\"\ntimeout=2\nretries=3\nrenewal-freq=8\n", 5, "cannot exceed renewal frequency"},
	{"zero expire", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=0\n", 3, "Expected time >0 for expire"},
	{"negative acquire-after", "site=\"10.1.1.1\"\nticket=\"web\"\nacquire-after=-1\n", 3, "Expected time >=0 for acquire-after"},
	{"a time with a unit Booth lacks", "site=\"10.1.1.1\"\nticket=\"web\"\nexpire=10m\n", 3, "Expected time >0 for expire"},
	{"no =", "site \"10.1.1.1\"\n", 1, "Expected '=' after key"},
	{"no key", "= 1\n", 1, "No key"},
	{"no value", "port =\n", 1, "No value"},
	{"unterminated quote", "site=\"10.1.1.1\n", 1, "Unterminated quoted string"},
	{"surplus after a quoted value", "site=\"10.1.1.1\" x\n", 1, "Surplus data after value"},
	{"a value over 64 characters", "name=" + strings.Repeat("n", 65) + "\n", 1, "key/value too long"},
	{"bad attr-prereq", "site=\"10.1.1.1\"\nticket=\"web\"\nattr-prereq=sometimes repl eq ok\n", 3, "sometimes is not a grant type"},
	{"bad weights", "site=\"10.1.1.1\"\nticket=\"web\"\nweights=1,x\n", 3, `Invalid character at "x"`},
	{"a bad address", "site=\"10.1.1.300\"\n", 1, "is bad"},
	{"seventeen members", func() string {
		var b strings.Builder
		for i := 1; i <= 17; i++ {
			fmt.Fprintf(&b, "site=\"10.1.2.%d\"\n", i)
		}
		return b.String()
	}(), 17, "too many nodes"},
}

// The configurations in Booth's own repository: its server tests'
// typical file and the variants they try (test/serverenv.py,
// test/servertests.py), and the examples of its manual (docs/boothd.8.txt).
var boothRepoCases = []configCase{
	{"Booth's tests: the typical file", "# This is like the config in the manual\ntransport=\"UDP\"\nport=\"9929\"\n# Here's another comment\n#arbitrator=\"147.2.207.14\"\nsite=\"147.4.215.19\"\n#site=\"147.18.2.1\"\nticket=\"ticketA\"\nticket=\"ticketB\"\n", 0, ""},
	{"Booth's tests: no transport line", "port=\"9929\"\nsite=\"147.4.215.19\"\nticket=\"ticketA\"\nticket=\"ticketB\"\n", 0, ""},
	{"Booth's tests: an unquoted space in a ticket name", "transport=\"UDP\"\nsite=\"147.4.215.19\"\nticket=unquoted space\n", 3, `ticket name "unquoted space" invalid`},
	{"Booth's tests: an unknown keyword before the tickets", "unknown-keyword=\"UDP\"\nsite=\"147.4.215.19\"\nticket=\"ticketA\"\n", 1, `Unexpected keyword "unknown-keyword"`},
	{"Booth's tests: an unknown keyword in a ticket", "transport=\"UDP\"\nsite=\"147.4.215.19\"\nticket=\"ticketA\"\nunknown-keyword=value", 4, `Unknown keyword "unknown-keyword"`},
	{"Booth's manual: the minimal file", "site=\"192.168.201.100\"\nsite=\"192.168.202.100\"\narbitrator=\"192.168.203.100\"\nticket=\"ticket-db8\"\n", 0, ""},
	// Booth refuses its own manual's example: timeout·(retries+1) = 60 s
	// is not below renewal-freq = 60 s.
	{"Booth's manual: the full example", "# D-85774\nsite=\"192.168.201.100\"\n# D-90409\nsite=\"::ffff:192.168.202.100\"\n# A-1120\narbitrator=\"192.168.203.100\"\n\nticket=\"ticket-db8\"\n    expire        = 600\n    acquire-after = 60\n    timeout       = 10\n    retries       = 5\n    renewal-freq  = 60\n    before-acquire-handler = /usr/share/booth/service-runnable db8\n    attr-prereq = auto repl_state eq ACTIVE\n", 15, "cannot exceed renewal frequency"},
	{"Booth's manual: a manual ticket", "site=\"192.168.201.100\"\nsite=\"192.168.202.100\"\nticket=\"manual-ticket\"\n    mode = MANUAL\n", 0, ""},
}

func init() { configCases = append(configCases, boothRepoCases...) }

func TestParseConfigAsBoothDoes(t *testing.T) {
	for _, c := range configCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig(strings.NewReader(c.text), "/etc/booth/test.conf")
			if c.errLine == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if cfg.Name != "test" {
					t.Errorf("name %q, want the file's base name", cfg.Name)
				}
				return
			}
			want := fmt.Sprintf("/etc/booth/test.conf:%d: ", c.errLine)
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), c.errSays) {
				t.Fatalf("err = %v, want %q…%q", err, want, c.errSays)
			}
		})
	}
}

func TestConfigValuesAsBoothReadsThem(t *testing.T) {
	text := "port = 9930 # p\nsite = 10.1.1.1\narbitrator = \"10.1.1.3\"\nsite = 10.1.1.2\n" +
		"ticket=\"__defaults__\"\nexpire=60\nretries=4\nacquire-after=9\nmode=manual\n" +
		"ticket=\"a\"\nticket=\"b\"\nexpire=120\ntimeout=500ms\nweights=1,2;3\n"
	cfg, err := ParseConfig(strings.NewReader(text), "b.conf")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 9930 || len(cfg.Members) != 3 || !cfg.Members[1].Arbitrator || cfg.Members[0].ID != SiteID(netip.MustParseAddr("10.1.1.1")) {
		t.Fatalf("port %d, members %+v", cfg.Port, cfg.Members)
	}
	a, b := cfg.Tickets[0], cfg.Tickets[1]
	// From __defaults__ a ticket takes expire, timeout, retries, weights
	// and mode, and nothing else (acquire-after stays 0), as Booth does.
	if a.Expire != time.Minute || a.Retries != 4 || !a.Manual || a.AcquireAfter != 0 || a.RenewalFreq != 30*time.Second {
		t.Errorf("a = %+v", a)
	}
	if b.Expire != 2*time.Minute || b.Timeout != 500*time.Millisecond || b.RenewalFreq != time.Minute || fmt.Sprint(b.Weights) != "[1 2 3]" {
		t.Errorf("b = %+v", b)
	}
	if !cfg.Millis {
		t.Error("a time of 500ms must switch the wire unit to milliseconds")
	}
}

// The same cases through the real booth client, which reads the file
// before anything else: it refuses each at the same line, and accepts
// the others.
func TestBoothAgreesOnEveryConfigCase(t *testing.T) {
	bin := testenv.RequireTool(t, "booth", "booth")
	lineRe := regexp.MustCompile(`in config file line (\d+)`)
	dir := t.TempDir()
	cases := append([]configCase{}, configCases...)
	// The example Booth ships (Debian installs it with the package).
	if b, err := os.ReadFile("/usr/share/doc/booth/examples/booth.conf.example"); err == nil {
		cases = append(cases, configCase{"Booth's example", string(b), 0, ""})
	} else {
		t.Logf("Booth's example is not installed (%v): the cases only", err)
	}
	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprintf("case%d.conf", i))
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		out, _ := exec.CommandContext(ctx, bin, "list", "-c", path).CombinedOutput()
		cancel()
		booth := 0
		if m := lineRe.FindSubmatch(out); m != nil {
			booth, _ = strconv.Atoi(string(m[1]))
		} else if strings.Contains(string(out), "cannot read config") {
			booth = -1
		}
		_, err := ParseConfig(strings.NewReader(c.text), path)
		ours := 0
		if err != nil {
			ours = -1
			if m := regexp.MustCompile(`\.conf:(\d+): `).FindStringSubmatch(err.Error()); m != nil {
				ours, _ = strconv.Atoi(m[1])
			}
		}
		if booth != ours {
			t.Errorf("%s: booth says line %d (0: accepted), we say %d (%v)\n%s", c.name, booth, ours, err, out)
		}
	}
}
