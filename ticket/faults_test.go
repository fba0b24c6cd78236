package ticket

import (
	"testing"
)

// Each test removes one safety mechanism and checks that the simulator
// finds a violation within a bounded number of seeds: proof that the
// simulator can fail, and that each mechanism is needed.

func catchWithin(t *testing.T, seeds int, mutate func(*simParams)) {
	t.Helper()
	for seed := int64(1); seed <= int64(seeds); seed++ {
		v, _ := runSeed(t, seed, mutate, false)
		if v != "" && v[:9] != "liveness:" {
			t.Logf("caught at seed %d: %s", seed, v)
			return
		}
	}
	t.Fatalf("no safety violation in %d seeds with the mechanism removed", seeds)
}

func TestSimulatorCatchesMissingDriftMargin(t *testing.T) {
	catchWithin(t, 20000, func(p *simParams) {
		p.cfg.Mutations.NoDriftMargin = true
		p.cfg.MaxClockDrift = 0.1
		p.extremeRate = 1
	})
}

func TestSimulatorCatchesMissingRestartAbstention(t *testing.T) {
	catchWithin(t, 20000, func(p *simParams) {
		p.cfg.Mutations.NoRestartAbstention = true
		p.wipeP = 1
	})
}

func TestSimulatorCatchesLastSendTiming(t *testing.T) {
	catchWithin(t, 20000, func(p *simParams) {
		p.cfg.Mutations.LastSendTiming = true
		p.lossP, p.extremeRate = 0.4, 1
	})
}

// lateTicks makes every tick come a timer slack of 0.9 timeout late, with
// the narrowest margins otherwise: little drift, no acquire_after, short
// delays.
func lateTicks(p *simParams) {
	p.cfg.TimerSlack = p.cfg.Timeout * 9 / 10
	p.cfg.MaxClockDrift, p.cfg.AcquireAfter, p.maxDelay = 0.01, 0, p.cfg.Timeout/10
	for len(p.cfg.Validate(len(p.members))) > 0 {
		p.cfg.Expire += p.cfg.Timeout
	}
	p.lateMaxP, p.extremeRate = 1, 1
}

func TestSimulatorCatchesMissingSlackMargin(t *testing.T) {
	catchWithin(t, 20000, func(p *simParams) {
		lateTicks(p)
		p.cfg.Mutations.NoSlackMargin = true
	})
}

// The control: with the margin, the same late ticks are safe.
func TestLateTicksAreSafeWithTheSlackMargin(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	for seed := int64(1); seed <= int64(n); seed++ {
		if v, _ := runSeed(t, seed, lateTicks, false); v != "" && v[:9] != "liveness:" {
			t.Fatalf("seed %d: %s", seed, v)
		}
	}
}
