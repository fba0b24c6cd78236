package booth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/booth/boothconf"
)

// testServer is the arbitrator of a three-member booth.conf, not
// listening.
func testServer(t testing.TB) *Server {
	t.Helper()
	s := quietServer(t, testConf(t, ""), arb)
	s.epoch = time.Now()
	return s
}

// Booth's replay check: newer than the peer's last message, or at most
// maxtimeskew (600 s) old.
func TestReplayCheckIsBooths(t *testing.T) {
	s := testServer(t)
	wall := time.Unix(1_800_000_000, 0)
	p := &peerStats{}
	at := func(d time.Duration) Header {
		ts := wall.Add(d)
		return Header{Secs: uint32(ts.Unix()), Usecs: uint32(ts.Nanosecond() / 1000)}
	}
	for _, c := range []struct {
		sent time.Duration
		want bool
	}{
		{-time.Second, true},            // the first
		{-500 * time.Millisecond, true}, // newer than the last
		{-time.Second, true},            // replayed, but within maxtimeskew
		{-601 * time.Second, false},     // too old
		{time.Hour, true},               // no upper bound, as in Booth
	} {
		if got := s.fresh(p, at(c.sent), wall); got != c.want {
			t.Errorf("message sent at %v: fresh %v, want %v", c.sent, got, c.want)
		}
	}
}

func TestAuthfileAsBoothReadsIt(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := LoadAuthKey(write("ok", "  a booth key  \n", 0o600))
	if err != nil || string(key) != "a booth key" {
		t.Fatalf("trimmed ASCII key = %q, %v", key, err)
	}
	long := strings.Repeat("k", 80)
	if key, err := LoadAuthKey(write("long", long, 0o600)); err != nil || len(key) != 64 {
		t.Fatalf("a long key: %d bytes, %v; want its first 64", len(key), err)
	}
	for name, c := range map[string]struct {
		text string
		mode os.FileMode
		says string
	}{
		"short":    {"1234567", 0o600, "at least 8"},
		"readable": {"a booth key", 0o640, "readable by group or others"},
	} {
		if _, err := LoadAuthKey(write(name, c.text, c.mode)); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %q", name, err, c.says)
		}
	}
}

// ticketctl grant against the Booth arbitrator's status listener gets a
// clear refusal, not a 404.
func TestCommandsAtTheStatusListenerAreRefusedClearly(t *testing.T) {
	s := testServer(t)
	h := s.Handler(prometheus.NewRegistry(), http.NotFoundHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/tickets/web/grant", strings.NewReader(`{}`)))
	var r api.CommandResult
	if rec.Code != http.StatusConflict || json.Unmarshal(rec.Body.Bytes(), &r) != nil || !strings.Contains(r.Detail, "booth grant") {
		t.Fatalf("grant: %d %s", rec.Code, rec.Body)
	}
	// At a site, the refusal names Booth's client there.
	site := quietServer(t, testConf(t, ""), east)
	srec := httptest.NewRecorder()
	site.Handler(prometheus.NewRegistry(), http.NotFoundHandler()).ServeHTTP(srec, httptest.NewRequest(http.MethodPost, "/api/v1/tickets/web/revoke", strings.NewReader(`{}`)))
	if srec.Code != http.StatusConflict || !strings.Contains(srec.Body.String(), "booth grant -s 192.0.2.1 TICKET") {
		t.Fatalf("revoke at a site's status listener: %d %s", srec.Code, srec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/tickets", nil))
	var ts []api.Ticket
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ts) != nil || len(ts) != 1 || ts[0].Name != "web" || ts[0].Owner != "" {
		t.Fatalf("tickets: %d %s", rec.Code, rec.Body)
	}
}

// The events an alert hook reads: after a sequence number, oldest first;
// the channel given out closes at the next event.
func TestEventsSinceFeedAlertHooks(t *testing.T) {
	s := testServer(t)
	evs, gap, changed := s.EventsSince(0)
	if len(evs) != 0 || gap {
		t.Fatalf("before anything: %v %v", evs, gap)
	}
	grant(t, s.arb, 0)
	s.mu.Lock()
	s.recordChanges(0, time.Now())
	s.mu.Unlock()
	select {
	case <-changed:
	default:
		t.Fatal("the channel did not close at the event")
	}
	evs, _, _ = s.EventsSince(0)
	if len(evs) != 1 || evs[0].Kind != "granted" || evs[0].Owner != east.String() {
		t.Fatalf("after the grant: %+v", evs)
	}
	s.arb.Tick(time.Hour)
	s.mu.Lock()
	s.recordChanges(time.Hour, time.Now())
	s.mu.Unlock()
	after, gap, _ := s.EventsSince(evs[0].Seq)
	if len(after) != 1 || after[0].Kind != "lost" || after[0].Seq != evs[0].Seq+1 || gap {
		t.Fatalf("after the lease: %+v gap %v", after, gap)
	}
}

// CI: booth list at the arbitrator showed the revoke (its state) while
// ticketctl events did not yet (events were recorded after the lock was
// let go). A datagram's change is an event before anyone can see it.
func TestADatagramsChangeIsAnEventAtOnce(t *testing.T) {
	s := quietServer(t, testConf(t, timed), arb)
	s.epoch = time.Now()
	src := netip.MustParseAddrPort("192.0.2.1:9929")
	s.datagram(Encode(peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 30, 0), nil), src)
	if evs := s.Events(); len(evs) != 1 || evs[0].Kind != "granted" || evs[0].Owner != "192.0.2.1" {
		t.Fatalf("events after east's heartbeat: %+v", evs)
	}
	s.datagram(Encode(peerMsg(east, CmdRevoke, boothconf.SiteID(east), 1, 29, ReasonAdmin), nil), src)
	if evs := s.Events(); len(evs) != 2 || evs[0].Kind != "revoked" {
		t.Fatalf("events after east's revoke (newest first): %+v", evs)
	}
}
