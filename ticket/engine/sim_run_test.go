package engine

import (
	"math/rand"
	"strings"
	"testing"
)

func runSeed(seed int64, mutate func(*simParams), keep bool) (string, *sim) {
	p := randomParams(rand.New(rand.NewSource(seed)))
	if mutate != nil {
		mutate(&p)
	}
	s := newSim(seed, p)
	s.keepAll = keep
	return s.run(), s
}

func TestSimulatorSafetyAndLiveness(t *testing.T) {
	if *simSeed >= 0 {
		v, s := runSeed(*simSeed, nil, true)
		for _, l := range s.trace {
			t.Log(l)
		}
		if v != "" && !s.operator {
			t.Fatalf("seed %d: %s", *simSeed, v)
		}
		return
	}
	n := simSeedCount()
	if testing.Short() {
		n /= 10
	}
	steps, operator, refusals := 0, 0, 0
	for seed := int64(1); seed <= int64(n); seed++ {
		v, s := runSeed(seed, nil, false)
		steps += s.steps
		refusals += s.refusals
		if s.operator {
			operator++
			continue
		}
		if v != "" {
			t.Logf("trace (last lines) of seed %d:\n%s", seed, strings.Join(s.trace, "\n"))
			t.Fatalf("seed %d: %s\nreplay: go test ./ticket/engine -run TestSimulatorSafetyAndLiveness -sim.seed=%d -v", seed, v, seed)
		}
	}
	t.Logf("%d seeds, %d engine rounds, invariants checked after every event; %d runs ended by an operator's forced grant", n, steps, operator)
}
