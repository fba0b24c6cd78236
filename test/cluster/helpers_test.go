package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/dnsfail/dnskey"
	"github.com/miekg/dns"

	"github.com/geobooth/geobooth/internal/config"
	tc "github.com/geobooth/geobooth/internal/testcluster"
	"github.com/geobooth/geobooth/ticket"
)

func runCmd(bin string, args ...string) (string, string, int) {
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	return out.String(), errb.String(), 0
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// sendGarbage sends the member datagrams it must refuse: a wrong HMAC, a
// truncated datagram, random bytes, a datagram from a member whose
// configuration differs, and a replay of a valid one.
func sendGarbage(t *testing.T, c *tc.Cluster, to *tc.Member) {
	t.Helper()
	cfg, err := config.Load(to.Config, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", to.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	env := ticket.Envelope{
		Msg:  ticket.Message{Type: ticket.MsgSyncReq, Ticket: "web", From: 1, To: cfg.Self, Site: ticket.None, Acked: ticket.None},
		Time: time.Now().UnixNano(), Epoch: uint64(time.Now().UnixNano()), Seq: 1, Digest: cfg.Digest(),
	}
	good, err := ticket.Encode(env, cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := ticket.Encode(env, []byte("not the cluster key"))
	env.Digest++
	env.Seq++
	otherConfig, _ := ticket.Encode(env, cfg.Key)
	random := make([]byte, 200)
	rand.New(rand.NewSource(1)).Read(random)
	for _, d := range [][]byte{wrongKey, good[:10], random, otherConfig, good, good} {
		if _, err := conn.Write(d); err != nil {
			t.Fatal(err)
		}
	}
}

// exampleDNSSECKey writes the DNSSEC key examples/local/dns.toml names
// (run/example.test.key, which ./cluster start makes) under dir.
func exampleDNSSECKey(t *testing.T, dir string) {
	t.Helper()
	text, err := dnskey.New("example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run", "example.test.key"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyExampleZones copies examples/local's zones file and zone file into
// dir (the members' [dns] name dns.toml), with a DNSSEC key of its own.
func copyExampleZones(t *testing.T, dir string) {
	t.Helper()
	exampleDNSSECKey(t, dir)
	for _, f := range []string{"dns.toml", "example.test.zone"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "local", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dnsMembers writes (not starts) east, west and an arbitrator, each with
// a DNS server on a port of its own (returned by member) serving the
// zones file zonesFile(member) of the cluster's folder.
func dnsMembers(t *testing.T, zonesFile func(member string) string) (*tc.Cluster, map[string]int) {
	t.Helper()
	ports := map[string]int{}
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		Extra: func(m *tc.Member) string {
			ports[m.Name] = tc.FreePort(t)
			return fmt.Sprintf("[dns]\nlisten = \"127.0.0.1:%d\"\nzones_file = %q\n", ports[m.Name], zonesFile(m.Name))
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	return c, ports
}

// every runs f each interval in the background until the returned stop is
// called; stop returns once f's last run ended (it may be called again).
func every(interval time.Duration, f func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
			f()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// wwwA asks server for www.example.test. A: the addresses answered, joined
// by commas ("" for no data), or an error (no answer, or not NOERROR).
func wwwA(server string, timeout time.Duration) (string, error) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	r, _, err := (&dns.Client{Timeout: timeout}).Exchange(q, server)
	if err != nil {
		return "", err
	}
	if r.Rcode != dns.RcodeSuccess {
		return "", fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ","), nil
}
