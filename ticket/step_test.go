package ticket

import (
	"errors"
	"testing"
	"time"
)

const (
	east = 0
	west = 1
	arb  = 2
)

func grantedCluster(t *testing.T, cfg *Config) *testCluster {
	c := newTestCluster(t, cfg, threeMembers())
	c.bootFresh()
	c.grant(east, east)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d, want east", o)
	}
	return c
}

func TestGrantOnFreshClusterAcquiresAndStartsResources(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	effs := c.take(east)
	start, ok := hasEffect[StartResources](effs)
	if !ok {
		t.Fatalf("no StartResources in %v", effs)
	}
	if start.Term != c.st[east].P.Term || start.LeaseEnd <= c.now {
		t.Fatalf("start = %+v at %v", start, c.now)
	}
	for _, i := range []int{west, arb} {
		if v := c.st[i].View(c.now); v.Owner != east || v.State != "granted" {
			t.Errorf("member %d view = %+v, want owner east granted", i, v)
		}
	}
}

func TestFirstBootAbstainsForStretchedExpire(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	for i := range c.st {
		c.boot(i, nil)
	}
	c.deliverAll()
	r := c.command(east, Command{Op: OpGrant, Site: east})
	if r.Err != nil {
		t.Fatalf("grant during the window should wait, got %v", r.Err)
	}
	c.deliverAll()
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("held during the restart window: %v", h)
	}
	window := c.cfg.stretched(c.cfg.binding())
	c.advance(window - 200*time.Millisecond)
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("held before the window of %v ended: %v", window, h)
	}
	if o, _ := c.waitOwner(3 * time.Second); o != east {
		t.Fatalf("owner = %d after the window, want east", o)
	}
}

func TestVoterPersistsBeforeAnsweringAVote(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	c.bootFresh()
	c.take(arb)
	req := Message{Type: MsgVoteReq, Ticket: "web", Term: 7, From: east, To: arb, Round: 1, Reason: ReasonGrant, Site: east, Acked: None}
	var msgs []Message
	var effs []Effect
	c.st[arb], msgs, effs = Step(c.st[arb], Receive{Msg: req}, c.now)
	p, ok := hasEffect[Persist](effs)
	if !ok || p.State.Term != 7 || p.State.Acked != east {
		t.Fatalf("vote without persisting term 7 / acked east first: effects %v", effs)
	}
	if _, isPersist := effs[0].(Persist); !isPersist {
		t.Fatalf("Persist is not the first effect: %v", effs)
	}
	if len(msgs) != 1 || !msgs[0].OK {
		t.Fatalf("answer = %v, want one granted vote", msgs)
	}
}

func TestVoterRefusesAnotherSiteWhilePromised(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	req := Message{Type: MsgVoteReq, Ticket: "web", Term: 99, From: west, To: arb, Round: 5, Reason: ReasonAuto, Site: west, Acked: None}
	_, msgs, _ := Step(c.st[arb], Receive{Msg: req}, c.now)
	if len(msgs) != 1 || msgs[0].OK || msgs[0].Reason != RefusePromised {
		t.Fatalf("answer = %v, want refused (promised)", msgs)
	}
	if msgs[0].Remaining <= 0 || msgs[0].Remaining > c.cfg.Expire {
		t.Fatalf("remaining = %v, want within (0, expire]", msgs[0].Remaining)
	}
	if msgs[0].Site != east {
		t.Fatalf("refusal names owner %d, want east", msgs[0].Site)
	}
}

func TestVoterVotesOncePerTermAndRefusesStaleTerms(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	c.bootFresh()
	s := c.st[arb]
	vote := func(from int, term uint64) Message {
		var msgs []Message
		s, msgs, _ = Step(s, Receive{Msg: Message{Type: MsgVoteReq, Ticket: "web", Term: term, From: from, To: arb,
			Round: term, Reason: ReasonGrant, Site: from, Acked: None}}, c.now)
		return msgs[0]
	}
	if m := vote(east, 3); !m.OK {
		t.Fatalf("first vote refused: %v", m)
	}
	// Release the promise (east gave up), so only the term rule remains.
	s, _, _ = Step(s, Receive{Msg: Message{Type: MsgRelease, Ticket: "web", Term: 3, From: east, To: arb, Reason: ReasonAbort, Site: None, Acked: None}}, c.now)
	if m := vote(west, 3); m.OK || m.Reason != RefuseVoted {
		t.Fatalf("second vote in term 3: %v, want refused (voted)", m)
	}
	if m := vote(west, 2); m.OK || m.Reason != RefuseStaleTerm {
		t.Fatalf("vote in older term 2: %v, want refused (stale)", m)
	}
	if m := vote(west, 4); !m.OK {
		t.Fatalf("vote in newer term 4 refused: %v", m)
	}
}

func TestArbitratorCannotHoldAndIsNotVotedFor(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	c.bootFresh()
	if r := c.command(arb, Command{Op: OpGrant, Site: arb}); !errors.Is(r.Err, ErrNotSite) {
		t.Fatalf("grant to arbitrator: %v", r.Err)
	}
	_, msgs, _ := Step(c.st[east], Receive{Msg: Message{Type: MsgVoteReq, Ticket: "web", Term: 5, From: arb, To: east, Round: 1, Reason: ReasonGrant, Site: arb, Acked: None}}, c.now)
	if len(msgs) != 1 || msgs[0].OK || msgs[0].Reason != RefuseNotSite {
		t.Fatalf("vote for arbitrator: %v", msgs)
	}
}

func TestOwnerStopsBeforeLeaseEndsUnderMaxDrift(t *testing.T) {
	cfg := testConfig(Auto)
	cfg.StopTimeout = 500 * time.Millisecond
	cfg.TimerSlack = 5 * time.Millisecond
	c := grantedCluster(t, cfg)
	// Cut the owner off: no renewal is acknowledged any more.
	c.isolate(east)
	s := c.st[east]
	lastRound := s.renew
	if lastRound.Active {
		t.Fatal("renewal still in flight after delivery")
	}
	wantStop := s.stopAt
	// The last successful round was first sent at FirstSent: the owner must
	// stop by FirstSent + expire·(1−d)/(1+d) − stop_timeout, even when its
	// tick comes the timer slack late.
	d := cfg.MaxClockDrift
	limit := lastRound.FirstSent + time.Duration(float64(cfg.Expire)*(1-d)/(1+d)) - cfg.StopTimeout - cfg.TimerSlack
	if wantStop > limit {
		t.Fatalf("owner plans to stop at %v, later than first send + expire(1-d)/(1+d) - stop - slack = %v", wantStop, limit)
	}
	for c.now < wantStop {
		c.advance(100 * time.Millisecond)
	}
	if c.st[east].Holds(c.now) {
		t.Fatalf("owner still holds at %v, past its stop point %v", c.now, wantStop)
	}
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok || stop.Reason != "lease not renewed" {
		t.Fatalf("no StopResources for the lost lease")
	}
}

func TestOwnerRenewsFromFirstTransmissionNotRetransmission(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	// Drop the first transmission of the next renewal at both peers, so it
	// only succeeds on a retransmission one timeout later.
	c.advance(c.st[east].nextRenew - c.now - 50*time.Millisecond)
	c.cut[[2]int{east, west}], c.cut[[2]int{east, arb}] = true, true
	c.advance(100 * time.Millisecond)
	first := c.st[east].renew.FirstSent
	if !c.st[east].renew.Active {
		t.Fatal("renewal not under way")
	}
	c.heal()
	c.advance(1500 * time.Millisecond)
	s := c.st[east]
	want := first + s.cfg.LeaseLength()
	if s.leaseEnd != want {
		t.Fatalf("lease end = %v, want first transmission %v + lease = %v", s.leaseEnd, first, want)
	}
}

func TestOwnerKeepsTicketWhileMajorityRenews(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.isolate(west) // losing one member keeps a majority
	c.advance(60 * time.Second)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d, want east", o)
	}
}

func TestAutoTicketMovesAfterLeasePlusAcquireAfter(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	c.crash(east)
	_, took := c.waitOwner(cfg.Expire + cfg.AcquireAfter + 3*cfg.Timeout)
	if o := c.owner(); o != west {
		t.Fatalf("owner = %d, want west", o)
	}
	if took < cfg.Expire {
		t.Fatalf("west acquired %v after the crash, before a full lease (%v)", took, cfg.Expire)
	}
}

func TestRestartedOwnerSeesNewOwnerAndDoesNotReclaim(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	c.crash(east)
	c.waitOwner(cfg.Expire + cfg.AcquireAfter + 3*cfg.Timeout)
	c.boot(east, c.disk[east])
	c.advance(8 * time.Second)
	if o := c.owner(); o != west {
		t.Fatalf("owner = %d after east restarted, want west", o)
	}
	if v := c.st[east].View(c.now); v.Owner != west {
		t.Fatalf("east's view: owner %d, want west", v.Owner)
	}
}

func TestRestartedOwnerRegainsItsTicketQuickly(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	c.crash(east)
	c.advance(time.Second)
	c.boot(east, c.disk[east])
	c.advance(time.Second)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d, want east to have re-acquired at once", o)
	}
}

func TestWipedVoterAbstainsThenVotes(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.crash(arb)
	c.boot(arb, nil)
	req := Message{Type: MsgVoteReq, Ticket: "web", Term: 50, From: west, To: arb, Round: 9, Reason: ReasonGrant, Site: west, Acked: None}
	_, msgs, _ := Step(c.st[arb], Receive{Msg: req}, c.now)
	if msgs[0].OK || msgs[0].Reason != RefuseRestarting {
		t.Fatalf("wiped voter in its window: %v, want refused (restarting)", msgs[0])
	}
	rn := Message{Type: MsgRenew, Ticket: "web", Term: c.st[east].P.Term, From: east, To: arb, Round: 9, Site: east, Acked: None}
	_, msgs, _ = Step(c.st[arb], Receive{Msg: rn}, c.now)
	if msgs[0].OK {
		t.Fatalf("wiped voter acknowledged a renewal in its window")
	}
}

func TestRestartedVoterAcknowledgesOnlyItsPersistedOwner(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.crash(arb)
	c.boot(arb, c.disk[arb])
	term := c.st[east].P.Term
	_, msgs, _ := Step(c.st[arb], Receive{Msg: Message{Type: MsgRenew, Ticket: "web", Term: term, From: east, To: arb, Round: 3, Site: east, Acked: None}}, c.now)
	if !msgs[0].OK {
		t.Fatalf("restarted voter refused its persisted owner's renewal: %v", msgs[0])
	}
	_, msgs, _ = Step(c.st[arb], Receive{Msg: Message{Type: MsgVoteReq, Ticket: "web", Term: term + 5, From: west, To: arb, Round: 3, Reason: ReasonGrant, Site: west, Acked: None}}, c.now)
	if msgs[0].OK || msgs[0].Reason != RefuseRestarting {
		t.Fatalf("restarted voter voted for another site in its window: %v", msgs[0])
	}
}

func TestGrantToOwnerSucceedsAndGrantElsewhereSaysUseMove(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	if r := c.command(arb, Command{Op: OpGrant, Site: east}); r.Err != nil {
		t.Fatalf("grant to the owner: %v", r.Err)
	}
	if r := c.command(arb, Command{Op: OpGrant, Site: west}); !errors.Is(r.Err, ErrHeldElsewhere) {
		t.Fatalf("grant to west while east holds: %v", r.Err)
	}
	if r := c.command(west, Command{Op: OpGrant, Site: west}); !errors.Is(r.Err, ErrHeldElsewhere) {
		t.Fatalf("grant at west while east renews: %v", r.Err)
	}
}

func TestGrantWaitsOutLeaseOfSilentOwner(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	c.isolate(east)
	// West sees no renewal for longer than a renewal period: the owner is
	// silent, so the grant waits instead of refusing.
	c.advance(cfg.RenewalFreq + cfg.Timeout*time.Duration(cfg.Retries+1) + time.Second)
	r := c.command(west, Command{Op: OpGrant, Site: west})
	if r.Err != nil {
		t.Fatalf("grant: %v", r.Err)
	}
	if c.st[west].Holds(c.now) {
		t.Fatal("west holds at once, before east's lease ran out")
	}
	if o, _ := c.waitOwner(cfg.Expire + cfg.AcquireAfter + 3*cfg.Timeout); o != west {
		t.Fatalf("owner = %d, want west", o)
	}
}

func TestNeverGrantedTicketIsNotAcquired(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	c.bootFresh()
	c.advance(60 * time.Second)
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("a ticket nobody granted was acquired by %v", h)
	}
}

func TestRevokeReleasesEverywhereAndStopsManagement(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	if r := c.command(arb, Command{Op: OpRevoke}); r.Err != nil {
		t.Fatalf("revoke: %v", r.Err)
	}
	c.deliverAll()
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok {
		t.Fatal("owner did not stop its resources")
	}
	if c.st[east].release.Active {
		t.Fatal("release sent before the resources stopped")
	}
	c.step(east, Stopped{Token: stop.Token})
	c.deliverAll()
	c.advance(cfg.Expire * 3)
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("revoked ticket held by %v", h)
	}
	for i := range c.st {
		if v := c.st[i].View(c.now); v.Owner != None || v.Managed || v.State != "revoked" {
			t.Errorf("member %d view after revoke = %+v", i, v)
		}
	}
}

func TestRevokeWithForceIsLocal(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	if r := c.command(west, Command{Op: OpRevoke, Force: true}); r.Err != nil {
		t.Fatalf("revoke -F: %v", r.Err)
	}
	if c.st[west].P.Managed {
		t.Fatal("west still manages the ticket after a local revoke")
	}
	if !c.st[east].Holds(c.now) {
		t.Fatal("a local revoke at west ended east's lease")
	}
}

func TestMoveHandsOverOnlyWhenReady(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.take(east)
	if r := c.command(arb, Command{Op: OpMove, Site: west}); r.Err != nil {
		t.Fatalf("move: %v", r.Err)
	}
	c.deliverAll()
	prep, ok := hasEffect[PrepareHandover](c.take(east))
	if !ok || prep.To != west {
		t.Fatalf("no PrepareHandover to west")
	}
	// Not ready: the move aborts and east keeps the ticket.
	c.step(east, HandoverDone{Token: prep.Token, OK: false})
	if o := c.owner(); o != east {
		t.Fatalf("owner after an aborted move = %d", o)
	}
	if _, ok := hasEffect[StopResources](c.take(east)); ok {
		t.Fatal("aborted move stopped the resources")
	}
	c.command(east, Command{Op: OpMove, Site: west})
	prep, _ = hasEffect[PrepareHandover](c.take(east))
	c.step(east, HandoverDone{Token: prep.Token, OK: true})
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok {
		t.Fatal("ready move did not stop resources")
	}
	c.deliverAll()
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("held by %v while east's resources are stopping", h)
	}
	// A grant back to east while it hands over would win a term that the
	// pending release then gives away too: refused until the move is done.
	if r := c.command(east, Command{Op: OpGrant, Site: east}); !errors.Is(r.Err, ErrBusy) {
		t.Fatalf("grant during the handover: %v %q, want ErrBusy", r.Err, r.Detail)
	}
	c.step(east, Stopped{Token: stop.Token})
	c.deliverAll()
	if o := c.owner(); o != west {
		t.Fatalf("owner after the move = %d, want west at once", o)
	}
}

func TestBeforeAcquireHandlerFailureRelinquishes(t *testing.T) {
	cfg := testConfig(Auto)
	cfg.BeforeAcquireHandler = []string{"/bin/check"}
	c := newTestCluster(t, cfg, threeMembers())
	c.bootFresh()
	c.command(east, Command{Op: OpGrant, Site: east})
	h, ok := hasEffect[RunHandler](c.take(east))
	if !ok || h.Kind != HandlerAcquire {
		t.Fatal("no handler run before acquiring")
	}
	if len(c.holders()) != 0 {
		t.Fatal("acquired before the handler answered")
	}
	c.step(east, HandlerDone{Token: h.Token, OK: true})
	c.deliverAll()
	c.owner()
	c.take(east)
	c.advance(cfg.RenewalFreq + 100*time.Millisecond)
	var renewH RunHandler
	for _, e := range c.take(east) {
		if x, ok := e.(RunHandler); ok && x.Kind == HandlerRenew {
			renewH = x
		}
	}
	if renewH.Token == 0 {
		t.Fatal("no handler run before renewal")
	}
	c.step(east, HandlerDone{Token: renewH.Token, OK: false})
	if c.st[east].Holds(c.now) {
		t.Fatal("still holding after the handler failed at renewal")
	}
	if _, ok := hasEffect[StopResources](c.take(east)); !ok {
		t.Fatal("resources not stopped after the handler failed")
	}
}

func TestAttrPrereqBlocksAutomaticAcquisition(t *testing.T) {
	cfg := testConfig(Auto)
	p, err := ParseAttrPrereq("auto repl eq ACTIVE")
	if err != nil {
		t.Fatal(err)
	}
	cfg.AttrPrereqs = []AttrPrereq{p}
	c := grantedCluster(t, cfg)
	c.crash(east)
	c.advance(3 * cfg.Expire)
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("acquired by %v without repl=ACTIVE", h)
	}
	c.command(west, Command{Op: OpAttrSet, Attr: "repl", Value: "ACTIVE"})
	c.deliverAll()
	if o, _ := c.waitOwner(cfg.RenewalFreq + 3*cfg.Timeout); o != west {
		t.Fatalf("owner = %d, want west once repl=ACTIVE", o)
	}
}

func TestAttributesReplicateToEveryMember(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.command(west, Command{Op: OpAttrSet, Attr: "db", Value: "primary"})
	c.deliverAll()
	for i := range c.st {
		if v, ok := c.st[i].attr("db"); !ok || v != "primary" {
			t.Errorf("member %d: db = %q %v", i, v, ok)
		}
	}
	c.command(arb, Command{Op: OpAttrDelete, Attr: "db"})
	c.deliverAll()
	for i := range c.st {
		if _, ok := c.st[i].attr("db"); ok {
			t.Errorf("member %d still has db after delete", i)
		}
	}
	// A member that missed an update catches up through the renewal digest.
	c.isolate(arb)
	c.command(east, Command{Op: OpAttrSet, Attr: "x", Value: "1"})
	c.advance(5 * time.Second)
	c.heal()
	c.advance(c.cfg.RenewalFreq + time.Second)
	if v, ok := c.st[arb].attr("x"); !ok || v != "1" {
		t.Fatalf("arbitrator did not catch up: x = %q %v", v, ok)
	}
}

func TestManualTicketWorksWithTwoSitesAndNeverMovesByItself(t *testing.T) {
	cfg := testConfig(Manual)
	c := newTestCluster(t, cfg, threeMembers()[:2])
	c.bootFresh()
	c.grant(east, east)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d", o)
	}
	c.crash(east)
	c.advance(5 * cfg.Expire)
	if h := c.holders(); len(h) != 0 {
		t.Fatalf("manual ticket moved by itself to %v", h)
	}
	if r := c.command(west, Command{Op: OpGrant, Site: west}); !errors.Is(r.Err, ErrHeldElsewhere) {
		t.Fatalf("grant without force while east held it: %v", r.Err)
	}
	if r := c.command(west, Command{Op: OpGrant, Site: west, Force: true}); r.Err != nil {
		t.Fatalf("grant -F: %v", r.Err)
	}
	if o := c.owner(); o != west {
		t.Fatalf("owner after grant -F = %d", o)
	}
	// The old owner comes back and yields to the higher term.
	c.boot(east, c.disk[east])
	c.advance(cfg.RenewalFreq + 2*cfg.Timeout)
	if o := c.owner(); o != west {
		t.Fatalf("owner after east returned = %d, want west", o)
	}
	if v := c.st[east].View(c.now); v.Owner != west {
		t.Fatalf("east's view = %+v", v)
	}
}

func TestManualOwnerResumesAfterRestartWhenConfirmed(t *testing.T) {
	cfg := testConfig(Manual)
	c := newTestCluster(t, cfg, threeMembers())
	c.bootFresh()
	c.grant(east, east)
	c.crash(east)
	c.boot(east, c.disk[east])
	if c.st[east].Holds(c.now) {
		t.Fatal("manual owner resumed before a majority confirmed")
	}
	c.deliverAll()
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d after confirmation, want east", o)
	}
}

func TestConfigValidation(t *testing.T) {
	base := DefaultConfig("web").Resolved()
	if errs := base.Validate(3); len(errs) > 0 {
		t.Fatalf("Booth defaults refused: %v", errs)
	}
	if base.Expire != 600*time.Second || base.RenewalFreq != 300*time.Second || base.Timeout != 5*time.Second || base.Retries != 10 {
		t.Fatalf("defaults = %+v", base)
	}
	cases := map[string]func(*Config){
		"retries below 3":         func(c *Config) { c.Retries = 2 },
		"retry time over renewal": func(c *Config) { c.Timeout = 30 * time.Second },
		"renewal not below expire": func(c *Config) {
			c.RenewalFreq = c.Expire
		},
		"drift over 10%":      func(c *Config) { c.MaxClockDrift = 0.2 },
		"stop eats the lease": func(c *Config) { c.StopTimeout = 300 * time.Second },
		"slack eats the lease": func(c *Config) {
			c.StopTimeout = 280 * time.Second
			c.TimerSlack = 4 * time.Second
		},
		"slack not below timeout": func(c *Config) { c.TimerSlack = c.Timeout },
		"negative slack":          func(c *Config) { c.TimerSlack = -1 },
		"weights per member":      func(c *Config) { c.Weights = []int{1} },
		"name with space":         func(c *Config) { c.Name = "a b" },
		"empty attr_prereq key":   func(c *Config) { c.AttrPrereqs = []AttrPrereq{{Auto: true}} },
	}
	for name, mutate := range cases {
		c := base
		mutate(&c)
		if errs := c.Validate(3); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
	// The stop just fits without the slack: the budget counts it (and
	// stop_timeout stretched by the drift bound, as the owner's clock sees
	// it).
	c := base
	c.StopTimeout = 280 * time.Second
	if errs := c.Validate(3); len(errs) > 0 {
		t.Fatalf("stop that fits refused: %v", errs)
	}
	if s := SlackFor(5 * time.Second); s != MaxTimerSlack {
		t.Errorf("slack for 5s = %v", s)
	}
	if s := SlackFor(40 * time.Millisecond); s != 2*time.Millisecond {
		t.Errorf("slack for 40ms = %v, want a twentieth", s)
	}
}

func TestParseAttrPrereq(t *testing.T) {
	p, err := ParseAttrPrereq("auto repl_state ne DEGRADED")
	if err != nil || !p.Auto || p.Name != "repl_state" || !p.Negate || p.Value != "DEGRADED" || p.String() != "auto repl_state ne DEGRADED" {
		t.Fatalf("parse = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "auto x eq", "sometimes x eq y", "auto x gt y"} {
		if _, err := ParseAttrPrereq(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestManualOwnerWaitsForEveryOtherMemberOfThreeBeforeResuming(t *testing.T) {
	cfg := testConfig(Manual)
	c := newTestCluster(t, cfg, threeMembers())
	c.bootFresh()
	c.grant(east, east)
	c.crash(east)
	c.cut[[2]int{east, west}], c.cut[[2]int{west, east}] = true, true
	c.boot(east, c.disk[east])
	c.advance(3 * cfg.RenewalFreq)
	if c.st[east].Holds(c.now) {
		t.Fatal("resumed with only the arbitrator's confirmation: a forced grant at west may not have reached it")
	}
	c.heal()
	c.advance(cfg.RenewalFreq + time.Second)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d once west confirms, want east", o)
	}
}

// A member still in its restart window cannot acknowledge the owner, but
// it must learn that the ticket is granted: otherwise, once the owner
// dies, it refuses the other site as "not granted" and nothing fails over.
func TestMemberInItsWindowLearnsTheTicketIsGrantedAndFailoverWorks(t *testing.T) {
	cfg := testConfig(Auto)
	c := newTestCluster(t, cfg, threeMembers())
	c.boot(east, nil)
	c.boot(west, nil)
	c.deliverAll()
	c.advance(5 * time.Second)
	c.boot(arb, nil) // its window ends 5 s after the sites'
	c.deliverAll()
	c.advance(cfg.stretched(cfg.binding()) - 5*time.Second + 100*time.Millisecond)
	c.grant(east, east)
	if o := c.owner(); o != east {
		t.Fatalf("owner = %d", o)
	}
	if !c.st[arb].P.Managed {
		t.Fatal("the arbitrator in its window does not know the ticket is granted")
	}
	c.crash(east)
	if o, _ := c.waitOwner(cfg.Expire + cfg.AcquireAfter + 3*cfg.Timeout); o != west {
		t.Fatalf("owner = %d, want west", o)
	}
}

// TestReleaseHandsTheTicketToASiteWhoseChecksPass: with runtime checks
// (LocalChecks) the state machine asks before acquiring even without a
// handler program; an owner that releases (its data cannot be served)
// stops, and another site whose check passes acquires.
func TestReleaseHandsTheTicketToASiteWhoseChecksPass(t *testing.T) {
	cfg := testConfig(Auto)
	cfg.LocalChecks = true
	c := newTestCluster(t, cfg, threeMembers())
	c.bootFresh()
	c.command(east, Command{Op: OpGrant, Site: east})
	h, ok := hasEffect[RunHandler](c.take(east))
	if !ok || h.Kind != HandlerAcquire || h.Force {
		t.Fatalf("no check before acquiring: %+v", h)
	}
	c.step(east, HandlerDone{Token: h.Token, OK: true})
	c.deliverAll()
	if c.owner() != east {
		t.Fatal("east did not acquire")
	}
	if s, ok := hasEffect[StartResources](c.take(east)); !ok || s.Forced {
		t.Fatalf("start: %+v %v", s, ok)
	}
	if r := c.command(west, Command{Op: OpRelease, Value: "no"}); !errors.Is(r.Err, ErrNotOwner) {
		t.Fatalf("release at a non-owner: %v", r.Err)
	}
	if r := c.command(east, Command{Op: OpRelease, Value: "volume data cannot be promoted"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok {
		t.Fatal("release did not stop the resources")
	}
	c.step(east, Stopped{Token: stop.Token})
	c.deliverAll()
	start := c.now
	for c.now-start < 2*cfg.Expire {
		for _, e := range c.take(west) {
			if h, ok := e.(RunHandler); ok {
				c.step(west, HandlerDone{Token: h.Token, OK: true})
			}
		}
		if hs := c.holders(); len(hs) == 1 && hs[0] == west {
			return
		}
		if len(c.holders()) > 1 {
			t.Fatalf("two holders: %v", c.holders())
		}
		c.advance(100 * time.Millisecond)
	}
	t.Fatalf("west did not acquire after east released; holders %v", c.holders())
}

// A site whose elections keep failing (no majority to be had) spreads its
// retries over a window that doubles each time, so that many tickets
// failing over at once do not retry into the same storm; once it can
// win again it does, and the count starts over.
func TestFailedElectionsBackOff(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	c.crash(east)
	c.isolate(arb)
	var starts []time.Duration
	active := false
	for end := c.now + 3*time.Minute; c.now < end; {
		c.advance(100 * time.Millisecond)
		if a := c.st[west].elect.Active; a && !active {
			starts = append(starts, c.now)
		}
		active = c.st[west].elect.Active
	}
	if len(starts) < 6 {
		t.Fatalf("west tried %d elections in 3 minutes", len(starts))
	}
	gap := func(i int) time.Duration { return starts[i+1] - starts[i] }
	first := (gap(0) + gap(1)) / 2
	last := (gap(len(starts)-2) + gap(len(starts)-3) + gap(len(starts)-4)) / 3
	t.Logf("%d elections; first gaps %v %v, last %v", len(starts), gap(0), gap(1), last)
	if last < 2*first || last < 4*cfg.Timeout {
		t.Errorf("retries do not back off: first gaps average %v, last %v", first, last)
	}
	if last > 20*cfg.Timeout {
		t.Errorf("retries back off without bound: last gaps average %v", last)
	}
	c.heal()
	if _, took := c.waitOwner(20 * cfg.Timeout); c.owner() != west {
		t.Fatalf("west does not win once the arbitrator is back (%v)", took)
	}
	if c.st[west].failed != 0 {
		t.Errorf("failed elections not reset after winning: %d", c.st[west].failed)
	}
}
