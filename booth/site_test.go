package booth

import (
	"net/netip"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// trio is two site engines and an arbitrator engine exchanging messages
// in memory on a virtual clock; a member that is down neither receives
// nor ticks. Each member ticks as its shell does: when NextTick said,
// looked at again after each message it handles.
type trio struct {
	t       *testing.T
	now     time.Duration
	members map[uint32]*Engine
	down    map[uint32]bool
	queue   []Send
	// cib is each site's last CIB write per ticket.
	cib map[uint32]map[string]CIBWrite
	// handlerOK says how a site's handler ends.
	handlerOK map[uint32]bool
	// notes are the client results each site gave.
	notes map[uint32][]Notice
	// due is when each member's shell ticks next: what NextTick said after
	// its last tick (the shell sleeps until then unless woken).
	due map[uint32]time.Duration
}

func newTrio(t *testing.T, extra string) *trio {
	t.Helper()
	c := testConf(t, timed+extra)
	tr := &trio{t: t, members: map[uint32]*Engine{}, down: map[uint32]bool{}, cib: map[uint32]map[string]CIBWrite{},
		handlerOK: map[uint32]bool{}, notes: map[uint32][]Notice{}, due: map[uint32]time.Duration{}}
	for _, a := range []netip.Addr{east, west, arb} {
		tr.start(c, a)
	}
	return tr
}

// start (re)starts member a from cfg, with what its CIB holds.
func (tr *trio) start(c *boothconf.Config, a netip.Addr) {
	e, err := NewEngine(c, a, nil)
	if err != nil {
		tr.t.Fatal(err)
	}
	id := boothconf.SiteID(a)
	if w, ok := tr.cib[id]["web"]; ok {
		e.LoadCIB("web", w.Granted, uint32(w.Owner), 0, w.Term, nil)
	} else {
		tr.cib[id] = map[string]CIBWrite{}
	}
	tr.members[id] = e
	tr.down[id] = false
	tr.handlerOK[id] = true
	tr.queue = append(tr.queue, e.Start(tr.now)...)
	tr.effects(id)
}

func (tr *trio) effects(id uint32) {
	e := tr.members[id]
	eff := e.TakeEffects()
	for _, w := range eff.CIB {
		tr.cib[id][w.Ticket] = w
	}
	for _, n := range eff.RunHandler {
		e.HandlerDone(n, tr.handlerOK[id])
		tr.due[id] = tr.now // the handler's end wakes the shell
	}
	for _, n := range eff.StopHandler {
		e.HandlerDone(n, false)
	}
	tr.notes[id] = append(tr.notes[id], eff.Notify...)
}

// deliver passes every queued message (and those they cause).
func (tr *trio) deliver() {
	for len(tr.queue) > 0 {
		s := tr.queue[0]
		tr.queue = tr.queue[1:]
		if tr.down[s.To] || tr.down[s.Msg.From] {
			continue
		}
		out, err := tr.members[s.To].Receive(tr.now, s.Msg)
		if err != nil {
			tr.t.Fatalf("%v to %#x: %v", s.Msg.Cmd, s.To, err)
		}
		tr.queue = append(tr.queue, out...)
		tr.effects(s.To)
		tr.woken(s.To)
	}
}

// woken is the shell's tick loop woken after a message or a request: it
// sleeps no longer than the engine's next tick now says.
func (tr *trio) woken(id uint32) {
	tr.due[id] = min(tr.due[id], tr.members[id].NextTick(tr.now))
}

// run advances the clock by d in steps of 10 ms, ticking and delivering.
func (tr *trio) run(d time.Duration) {
	end := tr.now + d
	for tr.now < end {
		tr.now += 10 * time.Millisecond
		for _, a := range []netip.Addr{east, west, arb} {
			id := boothconf.SiteID(a)
			if !tr.down[id] && tr.now >= tr.due[id] {
				tr.queue = append(tr.queue, tr.members[id].Tick(tr.now)...)
				tr.effects(id)
				tr.due[id] = tr.members[id].NextTick(tr.now)
			}
		}
		tr.deliver()
		tr.checkOneGrant()
	}
}

// checkOneGrant: never are both sites' CIBs granted at once.
func (tr *trio) checkOneGrant() {
	if tr.granted(east) && tr.granted(west) {
		tr.t.Fatalf("at %v both sites have web granted in their CIB", tr.now)
	}
}

func (tr *trio) granted(a netip.Addr) bool {
	return !tr.down[boothconf.SiteID(a)] && tr.cib[boothconf.SiteID(a)]["web"].Granted
}

func (tr *trio) leader(a netip.Addr) netip.Addr {
	return tr.members[boothconf.SiteID(a)].Tickets()[0].Leader
}

// client sends a grant or revoke of web to site a and returns the reply.
func (tr *trio) client(a netip.Addr, cmd Code, options uint32) Message {
	id := boothconf.SiteID(a)
	m := Message{Header: Header{Cmd: cmd, Options: options}, HasTicket: true, Ticket: Ticket{Name: "web"}}
	reply, _ := tr.members[id].SiteAnswer(tr.now, m)
	tr.queue = append(tr.queue, tr.members[id].flush()...)
	tr.effects(id)
	tr.woken(id)
	tr.deliver()
	return reply
}

func TestASiteGrantedLeadsRenewsAndWritesItsCIB(t *testing.T) {
	tr := newTrio(t, "")
	tr.run(3 * time.Second)
	if r := tr.client(east, CmdGrant, 0); r.Result != ResultMore {
		t.Fatalf("grant answered %v, want More", r.Result)
	}
	tr.run(time.Second)
	if !tr.granted(east) || tr.leader(west) != east || tr.leader(arb) != east {
		t.Fatalf("after the grant: east CIB %+v, west follows %v, arbitrator %v", tr.cib[boothconf.SiteID(east)]["web"], tr.leader(west), tr.leader(arb))
	}
	if w := tr.cib[boothconf.SiteID(west)]["web"]; w.Granted || w.Owner != int32(boothconf.SiteID(east)) {
		t.Fatalf("west's CIB %+v: want revoked with owner east", w)
	}
	if n := tr.notes[boothconf.SiteID(east)]; len(n) == 0 || n[len(n)-1].Msg.Result != 0 {
		t.Fatalf("the waiting client was told %+v, want success last", n)
	}
	// Renewals keep it at east for several leases.
	tr.run(100 * time.Second)
	if !tr.granted(east) || tr.leader(arb) != east {
		t.Fatalf("after 100 s: east granted %v, arbitrator follows %v", tr.granted(east), tr.leader(arb))
	}
	if r := tr.client(west, CmdGrant, 0); r.Result != ResultOver {
		t.Fatalf("a grant at west while east holds: %v, want Over", r.Result)
	}
}

func TestALostSiteIsReplacedAfterItsLease(t *testing.T) {
	tr := newTrio(t, " acquire-after = 5\n")
	tr.run(3 * time.Second)
	tr.client(east, CmdGrant, 0)
	tr.run(5 * time.Second)
	tr.down[boothconf.SiteID(east)] = true
	died := tr.now
	tr.run(60 * time.Second)
	if !tr.granted(west) || tr.leader(arb) != west {
		t.Fatalf("after east died: west granted %v, arbitrator follows %v", tr.granted(west), tr.leader(arb))
	}
	at := tr.members[boothconf.SiteID(arb)].Tickets()[0]
	if took := at.Expires - 30*time.Second - died; took < 30*time.Second {
		t.Fatalf("west's lease began %v after east died: before east's lease (30 s) and acquire-after could end", took)
	}
}

func TestRevokeAtTheLeaderClearsEverySite(t *testing.T) {
	tr := newTrio(t, "")
	tr.run(3 * time.Second)
	tr.client(east, CmdGrant, 0)
	tr.run(2 * time.Second)
	if r := tr.client(west, CmdClientRevoke, 0); r.Result != ResultRedirect {
		t.Fatalf("revoke at west: %v, want a redirect to the leader", r.Result)
	}
	if r := tr.client(east, CmdClientRevoke, 0); r.Result != 0 {
		t.Fatalf("revoke at east: %v", r.Result)
	}
	tr.run(40 * time.Second)
	if tr.granted(east) || tr.granted(west) || tr.leader(arb).IsValid() || !tr.members[boothconf.SiteID(arb)].Tickets()[0].Revoked {
		t.Fatalf("after the revoke: east %v west %v arbitrator %+v", tr.granted(east), tr.granted(west), tr.members[boothconf.SiteID(arb)].Tickets()[0])
	}
}

func TestAFailingHandlerStepsDownAndTheOtherSiteTakesOver(t *testing.T) {
	tr := newTrio(t, " before-acquire-handler = /bin/check\n")
	tr.run(3 * time.Second)
	tr.client(east, CmdGrant, 0)
	tr.run(2 * time.Second)
	if !tr.granted(east) {
		t.Fatal("east not granted")
	}
	tr.handlerOK[boothconf.SiteID(east)] = false
	tr.run(20 * time.Second)
	if !tr.granted(west) || tr.leader(arb) != west {
		t.Fatalf("after east's handler failed: west granted %v, arbitrator follows %v", tr.granted(west), tr.leader(arb))
	}
}

func TestARestartedLeaderTakesItsTicketBackFromTheCIB(t *testing.T) {
	tr := newTrio(t, "")
	tr.run(3 * time.Second)
	tr.client(east, CmdGrant, 0)
	tr.run(5 * time.Second)
	c := tr.members[boothconf.SiteID(east)]
	cfg := &boothconf.Config{}
	*cfg = boothconf.Config{Members: c.order, Tickets: []boothconf.TicketConfig{c.tickets[0].cfg}}
	tr.down[boothconf.SiteID(east)] = true
	tr.run(2 * time.Second)
	tr.start(cfg, east)
	tr.run(40 * time.Second)
	if !tr.granted(east) || tr.granted(west) || tr.leader(arb) != east {
		t.Fatalf("after east's restart: east %v west %v arbitrator follows %v", tr.granted(east), tr.granted(west), tr.leader(arb))
	}
}

func TestAManualTicketIsGrantedAtOnceWithoutExpiry(t *testing.T) {
	tr := newTrio(t, " mode = manual\n")
	tr.run(3 * time.Second)
	if r := tr.client(west, CmdGrant, 0); r.Result != ResultMore {
		t.Fatalf("grant: %v", r.Result)
	}
	tr.run(time.Hour)
	if !tr.granted(west) || tr.leader(arb) != west {
		t.Fatalf("manual ticket after an hour: west %v arbitrator follows %v", tr.granted(west), tr.leader(arb))
	}
}

// With a site unreachable, a grant is written to the CIB only a lease
// plus acquire-after later (that site may still run it), unless -F.
func TestAGrantWithASiteUnreachableIsCommittedAfterALease(t *testing.T) {
	for _, force := range []bool{false, true} {
		tr := newTrio(t, " acquire-after = 5\n")
		tr.down[boothconf.SiteID(west)] = true
		tr.run(3 * time.Second)
		var opt uint32
		if force {
			opt = OptionForce
		}
		tr.client(east, CmdGrant, opt)
		tr.run(4 * time.Second) // the election ends after timeout and its random delay
		if tr.leader(arb) != east || tr.granted(east) != force {
			t.Fatalf("force %v, 4 s after the grant: arbitrator follows %v, east's CIB granted %v", force, tr.leader(arb), tr.granted(east))
		}
		tr.run(26 * time.Second)
		if tr.granted(east) != force {
			t.Fatalf("force %v: committed %v 30 s after the grant, before expire + acquire-after", force, tr.granted(east))
		}
		tr.run(15 * time.Second) // past 35 s, at the next resend or renewal
		if !tr.granted(east) {
			t.Fatalf("force %v: not committed after expire + acquire-after", force)
		}
	}
}

// attr-prereq: a manual grant waits for the geostore attribute to hold
// its value; geostore set, get, list and delete at a site.
func TestAttrPrereqAndGeostoreAtASite(t *testing.T) {
	tr := newTrio(t, " attr-prereq = manual sr_status eq ACTIVE\n")
	tr.run(3 * time.Second)
	if r := tr.client(east, CmdGrant, 0); r.Result != ResultAttrPrereq {
		t.Fatalf("grant without the attribute: %v, want APrq", r.Result)
	}
	e := tr.members[boothconf.SiteID(east)]
	set := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	if rv := e.SetAttr("web", "sr_status", "ACTIVE", set); rv != 0 {
		t.Fatalf("set: %v", rv)
	}
	if v, rv := e.GetAttr("web", "sr_status"); rv != 0 || v != "ACTIVE\n" {
		t.Fatalf("get: %q %v", v, rv)
	}
	if l, rv := e.ListAttrs("web"); rv != 0 || l != "sr_status ACTIVE 2026-12-03 10:00:00\n" {
		t.Fatalf("list: %q %v", l, rv)
	}
	if r := tr.client(east, CmdGrant, 0); r.Result != ResultMore {
		t.Fatalf("grant with the attribute: %v, want More", r.Result)
	}
	tr.run(2 * time.Second)
	if !tr.granted(east) {
		t.Fatal("not granted with the prerequisite met")
	}
	if rv := e.DelAttr("web", "sr_status"); rv != 0 {
		t.Fatalf("delete: %v", rv)
	}
	if _, rv := e.GetAttr("web", "sr_status"); rv != ResultNoAttr {
		t.Fatalf("get after delete: %v, want NAtr", rv)
	}
	if rv := e.DelAttr("nosuch", "x"); rv != ResultInvalid {
		t.Fatalf("delete on an unknown ticket: %v", rv)
	}
}
