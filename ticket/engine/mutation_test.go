package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/ticket/internal/mutation"
)

// Each test removes one safety mechanism, of the protocol or of this
// engine, and checks that the simulator's default mix finds a violation
// within the seeds CI runs: proof that the simulator can fail, and that
// each mechanism is needed. The seed that catches each is in
// ticket/README.md.

const mutationSeeds = 2000

func mutate(set func(*mutation.Set)) func(*simParams) {
	return func(p *simParams) {
		for i := range p.cfg.Tickets {
			set(&p.cfg.Tickets[i].Mutations)
		}
		if p.change != nil {
			for i := range p.change.Tickets {
				set(&p.change.Tickets[i].Mutations)
			}
		}
	}
}

func catchWithin(t *testing.T, seeds int, m func(*simParams)) {
	t.Helper()
	for seed := int64(1); seed <= int64(seeds); seed++ {
		v, s := runSeed(seed, m, false)
		if v != "" && !s.operator && !strings.HasPrefix(v, "liveness:") {
			t.Logf("caught at seed %d: %s", seed, v)
			return
		}
	}
	t.Fatalf("no violation in %d seeds with the mechanism removed", seeds)
}

func TestSimulatorCatchesStopLeadWithoutStopTimeout(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.NoStopTimeoutMargin = true }))
}

func TestSimulatorCatchesLatencyBeforeEveryStop(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.StopLatency = 50 * time.Millisecond }))
}

func TestSimulatorCatchesGrantAcceptedWhileReleasing(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.GrantWhileReleasing = true }))
}

func TestSimulatorCatchesLeaseCountedFromTheAck(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.AckTiming = true }))
}

func TestSimulatorCatchesMissingDriftMargin(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.NoDriftMargin = true }))
}

// At the smallest drift the mix draws (1 %) the margin is small, and a
// missing one is still found.
func TestSimulatorCatchesMissingDriftMarginAtOnePercent(t *testing.T) {
	catchWithin(t, mutationSeeds, func(p *simParams) {
		mutate(func(m *mutation.Set) { m.NoDriftMargin = true })(p)
		for _, c := range []*Config{&p.cfg, p.change} {
			if c == nil {
				continue
			}
			for i := range c.Tickets {
				c.Tickets[i].MaxClockDrift = 0.01
			}
		}
	})
}

func TestSimulatorCatchesVotesNotPersisted(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.VotesNotPersisted = true }))
}

func TestSimulatorCatchesPersistFailureIgnored(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.IgnorePersistFailure = true }))
}

func TestSimulatorCatchesMissingRestartAbstention(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.NoRestartAbstention = true }))
}

func TestSimulatorCatchesLastSendTiming(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.LastSendTiming = true }))
}

func TestSimulatorCatchesMissingSlackMargin(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.NoSlackMargin = true }))
}

func TestSimulatorCatchesVotersIgnoringPromises(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.IgnorePromises = true }))
}

func TestSimulatorCatchesObserversTrustingEveryRenewal(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.ObserverTrustsRenewals = true }))
}

func TestSimulatorCatchesMessagesNotAgedWhileTheirStateWasWritten(t *testing.T) {
	catchWithin(t, mutationSeeds, mutate(func(m *mutation.Set) { m.UnagedMessages = true }))
}
