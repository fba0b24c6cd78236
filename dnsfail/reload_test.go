package dnsfail

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/geobooth/geobooth/kit/testenv"
)

// query1 sends one query over net ("udp" or "tcp") and returns the answer.
func query1(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

func soaSerial(t *testing.T, addr string) uint32 {
	t.Helper()
	r := query1(t, addr, "udp", "example.test.", dns.TypeSOA)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA answer %v", r.Answer)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// Issue 19: SIGHUP reloads the zones. A changed zone file is served at
// once (UDP, TCP, and the answer cache) with a higher serial; a broken
// one is refused and the old zone still answers; a change that needs a
// restart is named.
func TestReloadServesTheNewZoneAndRefusesABrokenOne(t *testing.T) {
	cfg := testConfig(t, testZone, nil, nil)
	o := &owners{}
	s := startServer(t, cfg, o, "east", nil)
	addr := s.Addrs()[0]
	if r := query1(t, addr, "udp", "new.example.test.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("new.example.test before the reload: %s", dns.RcodeToString[r.Rcode])
	}
	before := soaSerial(t, addr)

	if err := os.WriteFile(cfg.Zones[0].File, []byte(testZone+"new A 192.0.2.77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, network := range []string{"udp", "tcp"} {
		r := query1(t, addr, network, "new.example.test.", dns.TypeA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.77" {
			t.Fatalf("over %s after the reload: %v", network, r)
		}
	}
	after := soaSerial(t, addr)
	if int32(after-before) <= 0 {
		t.Fatalf("serial %d after the reload, was %d", after, before)
	}
	if st := s.Status().Zones[0]; st.Serial != after || st.Changes[len(st.Changes)-1].What != "reload" {
		t.Fatalf("status after the reload: serial %d, changes %+v", st.Serial, st.Changes)
	}

	// The same content again: nothing changes.
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if again := soaSerial(t, addr); again != after {
		t.Fatalf("serial %d after reloading the same zone, was %d", again, after)
	}

	for name, text := range map[string]string{
		"garbage":        "this is not a zone\n",
		"invalid record": testZone + "bad A 999.1.1.1\n",
		"clash":          testZone + "www A 192.0.2.1\n",
	} {
		if err := os.WriteFile(cfg.Zones[0].File, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg); err == nil {
			t.Fatalf("%s: reload accepted", name)
		}
		r := query1(t, addr, "udp", "new.example.test.", dns.TypeA)
		if len(r.Answer) != 1 {
			t.Fatalf("%s: the old zone no longer answers: %v", name, r)
		}
		if got := soaSerial(t, addr); got != after {
			t.Fatalf("%s: serial %d after a refused reload, was %d", name, got, after)
		}
	}

	moved := cfg
	moved.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if err := s.Reload(moved); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Fatalf("a new listen address: %v, want a refusal naming the restart", err)
	}
}

// A reload starts the checks it adds and stops those it drops.
func TestReloadStartsAndStopsChecks(t *testing.T) {
	eastWeb, westWeb := httpServer(t), httpServer(t)
	cfg := testConfig(t, testZone, map[string]string{"east": eastWeb + "/ok"}, nil)
	s := startServer(t, cfg, &owners{}, "east", nil)
	eastKey, westKey := eastWeb+"/ok", westWeb+"/ok"
	if _, ok := s.health.checks()[eastKey]; !ok {
		t.Fatalf("checks %v, want %s", s.health.checks(), eastKey)
	}
	next := testConfig(t, testZone, map[string]string{"west": westWeb + "/ok"}, nil)
	next.Listen = cfg.Listen
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	checks := s.health.checks()
	if _, ok := checks[eastKey]; ok {
		t.Fatalf("dropped check %s still registered", eastKey)
	}
	if _, ok := checks[westKey]; !ok {
		t.Fatalf("added check %s not registered", westKey)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if st := s.health.state(westKey); st != stateUp {
			return fmt.Errorf("added check %s is %s", westKey, st)
		}
		return nil
	})
}
