package booth

import (
	"net/netip"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/booth/handover"
)

// handoverOf is member a's handover for web.
func handoverOf(t *testing.T, e *Engine) handover.Ticket {
	t.Helper()
	h := e.Handover()
	if len(h) != 1 || h[0].Name != "web" {
		t.Fatalf("handover: %+v", h)
	}
	return h[0]
}

// Every member of a cluster whose ticket is held names the holder as its
// last promise, with the lease's binding from booth.conf.
func TestTheHandoverNamesTheHolderEverywhere(t *testing.T) {
	tr := newTrio(t, " acquire-after = 5\n")
	tr.run(3 * time.Second)
	tr.client(east, CmdGrant, 0)
	tr.run(40 * time.Second)
	for _, a := range []netip.Addr{east, west, arb} {
		h := handoverOf(t, tr.members[boothconf.SiteID(a)])
		if h.Acked != east || h.Owner != east || !h.Granted || h.Manual || h.Binding != 35*time.Second {
			t.Errorf("%v's handover: %+v, want east acked and owning, granted, binding 35 s", a, h)
		}
	}
}

// The last promise at an arbitrator: a vote in a term without a lease,
// the leader whose heartbeats it acknowledged, or nobody when a leader it
// did not vote for took over after its vote (it cannot tell which came
// last); a revoke leaves the ticket not granted.
func TestTheHandoverNamesTheLastPromiseOrNobody(t *testing.T) {
	a := testArbiter(t, "")
	if h := handoverOf(t, a); h.Acked.IsValid() || h.Owner.IsValid() || h.Granted {
		t.Fatalf("before anything: %+v", h)
	}
	one(t, a, 0, askVote(west, 3, ReasonAdmin))
	if h := handoverOf(t, a); h.Acked != west || h.Owner.IsValid() || h.Granted || h.Term != 3 {
		t.Fatalf("after a vote for west in term 3: %+v", h)
	}
	// East leads term 4 without this member's vote: its heartbeat is
	// acknowledged after the vote for west.
	one(t, a, time.Second, peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 4, 30, 0))
	if h := handoverOf(t, a); h.Acked.IsValid() || h.Owner != east || !h.Granted {
		t.Fatalf("after east's heartbeat of term 4: %+v, want nobody acked, east owning", h)
	}
	b := testArbiter(t, "")
	grant(t, b, 0)
	if h := handoverOf(t, b); h.Acked != east || h.Owner != east || !h.Granted {
		t.Fatalf("after voting for east and acknowledging it: %+v", h)
	}
	one(t, b, time.Second, peerMsg(east, CmdRevoke, boothconf.SiteID(east), 1, 29, ReasonAdmin))
	if h := handoverOf(t, b); h.Owner.IsValid() || h.Granted {
		t.Fatalf("after the revoke: %+v", h)
	}
}
