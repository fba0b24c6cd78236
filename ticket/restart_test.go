package ticket

import (
	"testing"
	"time"
)

// Rules about what a member may believe and promise after a restart, a
// configuration change or a lost lease.

func TestRestartedMemberShowsNoOwnerUntilTheOwnerRenews(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.crash(west)
	c.boot(west, c.disk[west])
	// The disk says east held the ticket; that is no proof it still does.
	if v := c.st[west].View(c.now); v.Owner != None {
		t.Fatalf("restarted west shows owner %d from its disk: %+v", v.Owner, v)
	}
	c.deliverAll()
	// The arbitrator heard east renew in its term: its answer proves it.
	if v := c.st[west].View(c.now); v.Owner != east {
		t.Fatalf("after the sync answers west shows %+v, want east", v)
	}
	if v := c.st[west].View(c.now); v.Expires > c.now+c.cfg.Expire {
		t.Fatalf("view of east runs to %v, past a lease from now (%v)", v.Expires-c.now, c.cfg.Expire)
	}
}

func TestSyncAnswerNamesNoOwnerWhoseLeaseRanOut(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.crash(east)
	c.crash(west)
	c.advance(c.cfg.Expire + time.Second)
	// The arbitrator's disk still names east as the last owner.
	if c.disk[arb].Owner != east {
		t.Fatalf("arbitrator's disk owner %d", c.disk[arb].Owner)
	}
	c.boot(west, c.disk[west])
	c.deliverAll()
	if v := c.st[west].View(c.now); v.Owner != None {
		t.Fatalf("west learned an owner whose lease ran out: %+v", v)
	}
}

func TestVoterRefusesOtherSitesForAcquireAfterPastAHoldersLease(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.isolate(east)
	a := &c.st[arb]
	end := a.promiseUntil
	c.advance(end - c.now + 100*time.Millisecond)
	if why, rem := a.refusal(west, false, c.now); why != RefuseStopping || rem <= 0 || rem > c.cfg.AcquireAfter {
		t.Fatalf("just after east's lease the arbitrator answers west %v (%v), want %v within acquire_after", why, rem, RefuseStopping)
	}
	c.advance(c.cfg.AcquireAfter)
	if why, _ := a.refusal(west, false, c.now); why != 0 {
		t.Fatalf("acquire_after past the lease the arbitrator still refuses west: %v", why)
	}
}

func TestVoterPromiseEndingLetsTheCandidateRetryOnlyAfterAcquireAfter(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	// West has missed every renewal: it knows of no owner and asks at once
	// (as after its own restart window); the arbitrator refuses with what
	// is left of its promise to east.
	c.isolate(east)
	c.cut[[2]int{east, west}], c.cut[[2]int{west, east}] = true, true
	w := &c.st[west]
	w.viewOwner, w.viewExpires = None, 0
	c.command(west, Command{Op: OpGrant, Site: west})
	c.deliverAll()
	promise := c.st[arb].promiseUntil
	if w.hold == owner {
		t.Fatal("west acquired while the arbitrator's promise to east ran")
	}
	for !w.Holds(c.now) {
		if c.now > promise+2*c.cfg.Expire {
			t.Fatal("west never acquired")
		}
		c.advance(10 * time.Millisecond)
	}
	if c.now < promise+c.cfg.AcquireAfter {
		t.Fatalf("west acquired %v after the arbitrator's promise to east ended, before acquire_after (%v)", c.now-promise, c.cfg.AcquireAfter)
	}
}

func TestRestartWindowCoversALongerExpireFromBeforeAConfigurationChange(t *testing.T) {
	long := testConfig(Auto)
	long.Expire, long.RenewalFreq = 60*time.Second, 20*time.Second
	c := grantedCluster(t, long)
	disk := *c.disk[arb]
	if disk.Binding != long.Expire+long.AcquireAfter {
		t.Fatalf("persisted binding %v, want %v", disk.Binding, long.Expire+long.AcquireAfter)
	}
	// The arbitrator restarts with expire 10 s: it promised east for 60.
	short := testConfig(Auto)
	a := NewState(short, &Cluster{Members: threeMembers(), Self: arb})
	a, _, _ = Step(a, Boot{Persisted: &disk, Seed: 7}, c.now)
	if got, want := a.windowUntil-c.now, short.stretched(long.Expire+long.AcquireAfter); got != want {
		t.Fatalf("restart window %v, want %v (the old expire's)", got, want)
	}
	at := c.now + short.stretched(short.Expire+short.AcquireAfter) + time.Second
	if a.MayAcknowledge(west, at) {
		t.Fatal("past the new expire's window the arbitrator would acknowledge west while it may still owe east 60 s")
	}
	// Its next write still carries the old binding while the window lasts.
	a, _, effs := Step(a, Command{ID: 1, Op: OpAttrSet, Attr: "x", Value: "1"}, at)
	p, ok := hasEffect[Persist](effs)
	if !ok || p.State.Binding != long.Expire+long.AcquireAfter {
		t.Fatalf("persisted %+v, want the old binding kept", p)
	}
	_, _, effs = Step(a, Command{ID: 2, Op: OpAttrSet, Attr: "x", Value: "2"}, a.windowUntil+time.Second)
	if p, _ := hasEffect[Persist](effs); p.State.Binding != short.Expire+short.AcquireAfter {
		t.Fatalf("after the window the binding is %v, want the new one", p.State.Binding)
	}
}

func TestForcedRevokeAtAManualVoterKeepsItsLockAcrossRestarts(t *testing.T) {
	c := grantedCluster(t, testConfig(Manual))
	if r := c.command(arb, Command{Op: OpRevoke, Force: true}); r.Err != nil {
		t.Fatal(r.Err)
	}
	c.crash(arb)
	c.boot(arb, c.disk[arb])
	c.advance(2 * c.cfg.Expire)
	if c.st[arb].MayAcknowledge(west, c.now) {
		t.Fatal("after a local forced revoke and a restart the arbitrator would vote for west while east holds the manual ticket")
	}
	c.isolate(east)
	c.command(west, Command{Op: OpGrant, Site: west})
	c.deliverAll()
	c.advance(5 * time.Second)
	if c.st[west].Holds(c.now) {
		t.Fatal("west took the manual ticket while east holds it")
	}
}

func TestResourcesFoundRunningAtBootStopBeforeTheOldLeaseEnds(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	leaseEnd := c.st[east].leaseEnd
	c.crash(east)
	// Only the daemon restarted: Pacemaker still runs the resources.
	c.isolate(east)
	c.up[east] = true
	c.step(east, Boot{Persisted: c.disk[east], Seed: 9, Running: true, LeaseEnd: leaseEnd})
	if !c.st[east].ResourcesRunning() {
		t.Fatal("resources running under our own lease were not kept")
	}
	c.take(east)
	stopAt := leaseEnd - c.cfg.stopLead()
	c.advance(stopAt - c.now - time.Millisecond)
	if _, ok := hasEffect[StopResources](c.take(east)); ok || !c.st[east].ResourcesRunning() {
		t.Fatal("stopped before the stop lead")
	}
	c.advance(100 * time.Millisecond)
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok {
		t.Fatalf("no stop by %v past the stop point", c.now-stopAt)
	}
	if stop.Deadline > leaseEnd {
		t.Fatalf("stop deadline %v is past the lease end", stop.Deadline-leaseEnd)
	}
}

func TestResourcesRunningAtBootWithoutOurLeaseStopAtOnce(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	c.crash(west)
	c.up[west] = true
	c.step(west, Boot{Persisted: c.disk[west], Seed: 3, Running: true, LeaseEnd: c.now + time.Minute})
	stop, ok := hasEffect[StopResources](c.take(west))
	if !ok || c.st[west].ResourcesRunning() {
		t.Fatal("resources granted locally but not held here were kept")
	}
	if stop.Deadline != 0 {
		t.Fatalf("deadline %v from now, want none (no lease, no stop_timeout)", stop.Deadline-c.now)
	}
}

func TestOwnerStopDeadlineIsItsLeaseEnd(t *testing.T) {
	cfg := testConfig(Auto)
	cfg.StopTimeout = 500 * time.Millisecond
	c := grantedCluster(t, cfg)
	c.take(east)
	c.isolate(east)
	leaseEnd := c.st[east].leaseEnd
	c.advance(leaseEnd - c.now)
	stop, ok := hasEffect[StopResources](c.take(east))
	if !ok {
		t.Fatal("no stop")
	}
	if stop.Deadline != leaseEnd {
		t.Fatalf("deadline %v from the lease end, want at it", stop.Deadline-leaseEnd)
	}
}
