package pacemaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/kit/confkit"
	tc "github.com/geobooth/geobooth/kit/testenv"
)

// site is one simulated Pacemaker site: a CIB file the real tools read and
// write with CIB_file.
type site struct {
	t   *testing.T
	cib string
}

func newSite(t *testing.T, testdata string) *site {
	t.Helper()
	tc.RequireTool(t, "crm_ticket", "pacemaker-cli-utils")
	tc.RequireTool(t, "crm_simulate", "pacemaker-cli-utils")
	b, err := os.ReadFile(filepath.Join("testdata", testdata))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cib.xml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &site{t: t, cib: p}
}

// tool runs a Pacemaker tool on the site's CIB file.
func (s *site) tool(name string, args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "CIB_file="+s.cib)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return string(out), 0
}

// settle runs one scheduler transition and stores the result, as the
// cluster would act on the CIB.
func (s *site) settle() {
	s.t.Helper()
	if out, code := s.tool("crm_simulate", "-x", s.cib, "-S", "-X", "-Q"); code != 0 {
		s.t.Fatalf("crm_simulate: %d %s", code, out)
	}
}

func (s *site) locate(rsc string) string {
	out, _ := s.tool("crm_resource", "--locate", "-r", rsc)
	return strings.TrimSpace(out)
}

// promoted lists the nodes where the clone's instance is promoted, from
// crm_mon's XML.
func (s *site) roles() string {
	out, code := s.tool("crm_mon", "-1", "--output-as=xml")
	if code != 0 {
		s.t.Fatalf("crm_mon: %s", out)
	}
	return out
}

func testConfig() Config {
	c := Default()
	c.Driver = "crm_ticket"
	c.Timeout = confkit.Duration(5 * time.Second)
	return c
}

func newDriver(t *testing.T, s *site, cfg Config, escalate func(error)) (*Driver, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	cfg.CIBFile = s.cib
	cib := &CrmTicket{Path: cfg.CrmTicket, CrmMon: cfg.CrmMon, CrmAttribute: cfg.CrmAttribute, CIBFile: s.cib}
	return NewDriver(cib, cfg, "east", "geobooth-test", slog.New(slog.NewTextHandler(io.Discard, nil)), reg, escalate), reg
}

func TestGrantStartsAndRevokeStopsTheResource(t *testing.T) {
	s := newSite(t, "stop.xml")
	d, reg := newDriver(t, s, testConfig(), nil)
	ctx := context.Background()
	s.settle()
	if got := s.locate("svc"); !strings.Contains(got, "NOT running") {
		t.Fatalf("before the grant: %s", got)
	}
	exp := time.Now().Add(10 * time.Second).Truncate(time.Second)
	if err := d.GrantTicket(ctx, "web", 7, exp); err != nil {
		t.Fatal(err)
	}
	st, err := d.State(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Granted || st.Owner != "east" || st.Term != 7 || !st.Expires.Equal(exp) {
		t.Fatalf("state after grant = %+v", st)
	}
	out, _ := s.tool("crm_ticket", "-t", "web", "-G", "geobooth-cfg-name")
	if strings.TrimSpace(out) != "geobooth-test" {
		t.Fatalf("geobooth-cfg-name = %q", out)
	}
	s.settle()
	if got := s.locate("svc"); !strings.Contains(got, "is running on: node1") {
		t.Fatalf("after the grant: %s", got)
	}
	if err := d.Revoke(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	st, _ = d.State(ctx, "web")
	if st.Granted || st.Owner != "" {
		t.Fatalf("state after revoke = %+v", st)
	}
	s.settle()
	if got := s.locate("svc"); !strings.Contains(got, "NOT running") {
		t.Fatalf("after the revoke: %s", got)
	}
	if n := testutil.ToFloat64(d.met.calls.WithLabelValues("revoke", "ok")); n != 1 {
		t.Fatalf("revoke ok calls = %v", n)
	}
	_ = reg
}

func TestGrantPromotesAndRevokeDemotesAPromotableClone(t *testing.T) {
	s := newSite(t, "demote.xml")
	d, _ := newDriver(t, s, testConfig(), nil)
	ctx := context.Background()
	s.settle()
	if strings.Contains(s.roles(), `role="Promoted"`) {
		t.Fatal("promoted without the ticket")
	}
	if err := d.GrantTicket(ctx, "web", 1, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.settle()
	if !strings.Contains(s.roles(), `role="Promoted"`) {
		t.Fatalf("not promoted with the ticket:\n%s", s.roles())
	}
	if err := d.Revoke(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	s.settle()
	roles := s.roles()
	if strings.Contains(roles, `role="Promoted"`) || !strings.Contains(roles, `role="Unpromoted"`) {
		t.Fatalf("after revoke the clone should run unpromoted:\n%s", roles)
	}
}

func TestStandbyStopsAndActivateRestarts(t *testing.T) {
	s := newSite(t, "stop.xml")
	d, _ := newDriver(t, s, testConfig(), nil)
	ctx := context.Background()
	d.GrantTicket(ctx, "web", 1, time.Now().Add(time.Minute))
	if err := d.PrepareHandover(ctx, "web", "west"); err != nil {
		t.Fatal(err)
	}
	s.settle()
	if got := s.locate("svc"); !strings.Contains(got, "NOT running") {
		t.Fatalf("in standby: %s", got)
	}
	// The next grant here ends the standby of the move.
	if err := d.GrantTicket(ctx, "web", 2, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.settle()
	if got := s.locate("svc"); !strings.Contains(got, "is running") {
		t.Fatalf("granted again after a move: %s", got)
	}
	d.Standby(ctx, "web")
	d.Activate(ctx, "web")
	s.settle()
	if st, _ := d.State(ctx, "web"); st.Standby || !st.Granted {
		t.Fatalf("after activate: %+v", st)
	}
	// A move that cannot go on (the data did not drain) activates again.
	if err := d.PrepareHandover(ctx, "web", "west"); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.State(ctx, "web"); !st.Standby {
		t.Fatalf("handover did not put the ticket in standby: %+v", st)
	}
	if err := d.AbortHandover(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	s.settle()
	if st, _ := d.State(ctx, "web"); st.Standby || !st.Granted {
		t.Fatalf("after an aborted move: %+v", st)
	}
	if got := s.locate("svc"); !strings.Contains(got, "is running") {
		t.Fatalf("after an aborted move: %s", got)
	}
}

func TestTwentyConcurrentAttributeUpdatesAllLand(t *testing.T) {
	s := newSite(t, "stop.xml")
	d, _ := newDriver(t, s, testConfig(), nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- d.SetAttr(ctx, "web", fmt.Sprintf("a%d", i), fmt.Sprint(i))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := d.State(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if v := st.Attrs[fmt.Sprintf("a%d", i)]; v != fmt.Sprint(i) {
			t.Errorf("a%d = %q: an update was lost", i, v)
		}
	}
	if err := d.DeleteAttr(ctx, "web", "a3"); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteAttr(ctx, "web", "never-set"); err != nil {
		t.Fatalf("deleting a missing attribute: %v", err)
	}
}

// fake writes a crm_ticket stand-in.
func fake(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "crm_ticket")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingHangingOrFailingCrmTicket(t *testing.T) {
	s := &site{t: t, cib: filepath.Join(t.TempDir(), "cib.xml")}
	cases := []struct {
		name, path, want, result string
	}{
		{"missing", "/nonexistent/crm_ticket", "no such file", "error"},
		{"hanging", fake(t, "sleep 60"), "no answer within 300ms", "timeout"},
		{"failing", fake(t, "echo 'Could not connect to the CIB' >&2; exit 102"), "exit 102: Could not connect to the CIB", "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.CrmTicket, cfg.Timeout, cfg.Retries = c.path, confkit.Duration(300*time.Millisecond), 2
			d, _ := newDriver(t, s, cfg, nil)
			clock := newFakeClock()
			d.clock = clock
			// call runs f; a hanging call's attempts end when the test
			// advances the clock past their timeout.
			call := func(attempts int, f func() error) error {
				done := make(chan error, 1)
				go func() { done <- f() }()
				for a := 1; c.result == "timeout" && a <= attempts; a++ {
					tc.Eventually(t, 10*time.Second, func() error {
						if n := clock.pending(); n != 1 {
							return fmt.Errorf("attempt %d: %d calls in flight", a, n)
						}
						return nil
					})
					clock.advance(cfg.Timeout.D())
				}
				return <-done
			}
			err := call(3, func() error { return d.Revoke(context.Background(), "web") })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if n := testutil.ToFloat64(d.met.calls.WithLabelValues("revoke", c.result)); n != 3 {
				t.Fatalf("%s calls counted = %v, want 3 (1 + 2 retries)", c.result, n)
			}
			// A renewal is tried once: the next one comes soon.
			call(1, func() error { return d.Renewed(context.Background(), "web", 1, time.Now()) })
			if n := testutil.ToFloat64(d.met.calls.WithLabelValues("renew", c.result)); n != 1 {
				t.Fatalf("renew %s calls counted = %v, want 1", c.result, n)
			}
		})
	}
}

func TestNoopDriverRefusesStandby(t *testing.T) {
	d := NewDriver(Noop{}, Default(), "east", "x", slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), nil)
	ctx := context.Background()
	if err := d.GrantTicket(ctx, "web", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := d.Revoke(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := d.Standby(ctx, "web"); !errors.Is(err, ErrNoPacemaker) {
		t.Fatalf("standby on a site without Pacemaker: %v", err)
	}
	if err := d.PrepareHandover(ctx, "web", "west"); err != nil {
		t.Fatalf("a move from a site without Pacemaker: %v", err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add("State XML:\n\n<ticket_state id=\"web\" granted=\"true\" owner=\"east\" term=\"3\" expires=\"5\" x=\"y\"/>\n")
	f.Add("")
	f.Add("State XML:\n\n<tickets/>")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseState(s)
		if err == nil && st.Attrs == nil {
			t.Fatal("nil attributes")
		}
	})
}

func TestWaitStoppedWaitsForTheClusterToStopWhatTheTicketGuards(t *testing.T) {
	for _, c := range []struct{ cib, rsc string }{{"stop.xml", "svc"}, {"demote.xml", "vol-clone"}} {
		t.Run(c.cib, func(t *testing.T) {
			s := newSite(t, c.cib)
			cfg := testConfig()
			d, _ := newDriver(t, s, cfg, nil)
			ctx := context.Background()
			s.settle()
			if err := d.GrantTicket(ctx, "web", 1, time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			s.settle()
			if err := d.Revoke(ctx, "web"); err != nil {
				t.Fatal(err)
			}
			// The CIB says revoked, but the scheduler has not acted yet.
			short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			err := d.WaitStopped(short, "web")
			cancel()
			if err == nil || !strings.Contains(err.Error(), c.rsc) {
				t.Fatalf("WaitStopped before the resources stopped: %v, want an error naming %s", err, c.rsc)
			}
			done := make(chan error, 1)
			go func() {
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				done <- d.WaitStopped(wctx, "web")
			}()
			s.settle()
			if err := <-done; err != nil {
				t.Fatalf("WaitStopped after the scheduler stopped them: %v", err)
			}
		})
	}
}

func TestEscalateExitsOnlyWhenConfiguredTo(t *testing.T) {
	for _, policy := range []string{"exit", "log"} {
		cfg := Default()
		cfg.OnRevokeFailure = policy
		var escalated error
		d := NewDriver(Noop{}, cfg, "east", "x", slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(),
			func(err error) { escalated = err })
		d.Escalate("web", "not stopped by the lease end")
		if (escalated != nil) != (policy == "exit") {
			t.Errorf("on_revoke_failure = %s: escalated %v", policy, escalated)
		}
		if n := testutil.ToFloat64(d.met.escalations); n != 1 {
			t.Errorf("on_revoke_failure = %s: escalations counted %v", policy, n)
		}
	}
}

// A revoke goes before operations that wait for a CIB file: it does not
// queue behind grants and renewals of other tickets.
func TestRevokeGoesBeforeWaitingOperations(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	// Every call takes 200 ms and records its ticket.
	path := fake(t, `t="$2"; sleep 0.2; echo "$t" >> `+order)
	cfg := testConfig()
	cfg.CrmTicket, cfg.Retries = path, 0
	s := &site{t: t, cib: filepath.Join(dir, "cib.xml")}
	d, _ := newDriver(t, s, cfg, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	waitFor := func(n int) {
		tc.Eventually(t, 5*time.Second, func() error {
			if waiting, busy := d.lock.queued(); waiting != n || !busy {
				return fmt.Errorf("%d operations wait (busy %v), want %d", waiting, busy, n)
			}
			return nil
		})
	}
	run(func() { d.GrantTicket(ctx, "first", 1, time.Now()) })
	waitFor(0)
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("renew%d", i)
		run(func() { d.Renewed(ctx, name, 1, time.Now()) })
	}
	waitFor(4)
	run(func() { d.Revoke(ctx, "stop") })
	wg.Wait()
	b, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(b))
	if len(got) != 6 || got[0] != "first" || got[1] != "stop" {
		t.Fatalf("calls ran in the order %v, want first, then the revoke before the waiting renewals", got)
	}
}

func TestParseConstraintsAndRunning(t *testing.T) {
	cons := `Constraints XML:

<rsc_ticket id="a" rsc="svc" ticket="web" loss-policy="stop"/>
<rsc_ticket id="b" rsc="vol-clone" rsc-role="Promoted" ticket="web" loss-policy="demote"/>
<rsc_ticket id="c" ticket="web" loss-policy="stop"><resource_set id="s"><resource_ref id="ip"/><resource_ref id="fs"/></resource_set></rsc_ticket>
<rsc_ticket id="d" rsc="frozen" ticket="web" loss-policy="freeze"/>`
	g, err := parseConstraints(cons)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g) != "[{svc false} {vol-clone true} {ip false} {fs false}]" {
		t.Fatalf("guarded = %v", g)
	}
	mon := `<pacemaker-result><resources>
<resource id="svc" role="Stopped" active="false"/>
<clone id="vol-clone"><resource id="vol" role="Unpromoted" active="true"/><resource id="vol" role="Promoted" active="true"/></clone>
<group id="g"><resource id="ip" role="Started" active="true"/><resource id="fs" role="Stopped" active="false"/></group>
<resource id="frozen" role="Started" active="true"/>
</resources></pacemaker-result>`
	running, err := runningOf(mon, g)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(running) != "[ip vol-clone]" {
		t.Fatalf("running = %v", running)
	}
}

func FuzzParseConstraints(f *testing.F) {
	f.Add("Constraints XML:\n\n<rsc_ticket id=\"a\" rsc=\"svc\" ticket=\"web\"/>")
	f.Add("")
	f.Add("Constraints XML:\n\n<rsc_ticket><resource_set><resource_ref id=\"x\"/></resource_set></rsc_ticket>")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := parseConstraints(s)
		if err != nil {
			return
		}
		if _, err := runningOf("<r><resources><resource id=\"x\" active=\"true\"/></resources></r>", g); err != nil {
			t.Fatal(err)
		}
	})
}
