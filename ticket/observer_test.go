package ticket

import (
	"testing"
	"time"
)

// The observer's rule: until when a member may act on the owner it sees
// (answer DNS with it). The simulator checks it against every fault
// (checkTrust); these tests pin the rule on the cases it is made of.

func TestHolderActsOnItsLeaseUntilItBeginsToStop(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	v := c.st[east].View(c.now)
	if !v.HeldLocally || v.SafeUntil != c.st[east].stopAt || v.SafeUntil <= c.now || v.SafeUntil > c.st[east].leaseEnd {
		t.Fatalf("holder's view = %+v, want SafeUntil when it begins to stop (%v), no later than its lease ends (%v)", v, c.st[east].stopAt, c.st[east].leaseEnd)
	}
}

func TestObserverActsOnTheOwnerForTheReportedLeaseLessDriftAndOneTimeout(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	// The new owner announced itself at once: the renewal carried how long
	// its lease ran, and nothing waited in flight (deliverAll is instant).
	rem := c.st[east].stopAt - c.now
	want := c.now + time.Duration(float64(rem)*(1-cfg.MaxClockDrift)/(1+cfg.MaxClockDrift)) - cfg.Timeout
	for _, i := range []int{west, arb} {
		v := c.st[i].View(c.now)
		if v.Owner != east || v.SafeUntil != want {
			t.Errorf("member %d: owner %d SafeUntil %v, want east until %v", i, v.Owner, v.SafeUntil, want)
		}
		if v.SafeUntil >= v.Expires {
			t.Errorf("member %d acts on east until %v, not before its own view of the lease ends (%v)", i, v.SafeUntil, v.Expires)
		}
	}
}

func TestObserverNeverActsOnTheOwnerPastItsLease(t *testing.T) {
	c := grantedCluster(t, testConfig(Auto))
	// Renewals go on, then the owner is cut off: at every instant, what
	// the others act on ends before east's own lease does (one shared
	// clock here, so the two compare directly).
	for step := 0; step < 300; step++ {
		if step == 120 {
			c.isolate(east)
		}
		c.advance(100 * time.Millisecond)
		end := c.st[east].stopAt
		for _, i := range []int{west, arb} {
			if v := c.st[i].View(c.now); v.Owner == east && v.SafeUntil > end {
				t.Fatalf("step %d: member %d acts on east until %v, past the instant east stops acting as the owner %v", step, i, v.SafeUntil, end)
			}
		}
	}
}

func TestARenewalThatNoMajorityGrantedExtendsNoObserversTrust(t *testing.T) {
	cfg := testConfig(Auto)
	c := grantedCluster(t, cfg)
	before, stop := c.st[east].leaseEnd, c.st[east].stopAt
	// West hears east's next renewal, but no acknowledgement reaches east:
	// its lease is not extended, and west may not act on the extension it
	// asked for.
	c.cut[[2]int{west, east}], c.cut[[2]int{east, arb}], c.cut[[2]int{arb, east}] = true, true, true
	c.advance(cfg.RenewalFreq + 200*time.Millisecond)
	if c.st[east].leaseEnd != before {
		t.Fatalf("east's lease was extended to %v without a majority", c.st[east].leaseEnd)
	}
	v := c.st[west].View(c.now)
	if v.Owner != east || v.Expires <= before {
		t.Fatalf("west's view = %+v: the test needs west to have seen the renewal", v)
	}
	if v.SafeUntil > stop {
		t.Fatalf("west acts on east until %v, past the instant east stops acting as the owner (%v)", v.SafeUntil, stop)
	}
}

func TestObserverActsOnAManualOwnerWithoutEnd(t *testing.T) {
	c := newTestCluster(t, testConfig(Manual), threeMembers())
	c.bootFresh()
	c.grant(east, east)
	c.advance(time.Second)
	for _, i := range []int{east, west, arb} {
		if v := c.st[i].View(c.now); v.Owner != east || v.SafeUntil != Forever {
			t.Errorf("member %d: owner %d SafeUntil %v, want east for ever", i, v.Owner, v.SafeUntil)
		}
	}
}

func TestNoOwnerMeansNothingToActOn(t *testing.T) {
	c := newTestCluster(t, testConfig(Auto), threeMembers())
	c.bootFresh()
	for i := range c.st {
		if v := c.st[i].View(c.now); v.Owner != None || v.SafeUntil != 0 {
			t.Errorf("member %d: owner %d SafeUntil %v, want none", i, v.Owner, v.SafeUntil)
		}
	}
}

// Found by the simulator (seed 18052 of 25,000): an owner that won and at
// once had to reassert in a higher term lost its lease during the
// reassertion; the failed round's abort freed a voter whose vote was all
// that still bound it, while the resources were stopping.
func TestFailedElectionFreesNoVoterWhileOurResourcesStop(t *testing.T) {
	for _, stopping := range []bool{true, false} {
		c := newTestCluster(t, testConfig(Auto), threeMembers())
		c.bootFresh()
		s := &c.st[east]
		s.elect = round{Active: true, ID: 7, Term: s.P.Term + 1, Reason: ReasonReassert, Acks: 1<<east | 1<<arb}
		if stopping {
			s.stopToken = 42
		}
		var o out
		s.electionFailed(&o, c.now, "no majority answered")
		aborts := 0
		for _, m := range o.msgs {
			if m.Type == MsgRelease && m.Reason == ReasonAbort {
				aborts++
			}
		}
		if stopping && aborts != 0 {
			t.Errorf("resources stopping: %d aborts sent, want none", aborts)
		}
		if !stopping && aborts != 1 {
			t.Errorf("nothing running: %d aborts sent, want 1 (to the arbitrator)", aborts)
		}
	}
}
