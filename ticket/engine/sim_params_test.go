package engine

import (
	"math/rand"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// simParams is one run's world: the cluster's configuration and how often
// each kind of trouble comes.
type simParams struct {
	cfg Config
	// change, when set, is a configuration rolled out member by member
	// during the run.
	change *Config

	lossP, dupP, crashP, wipeP, partitionP, diskP, commandP float64
	// extremeRate: how often a clock runs at the drift bound.
	extremeRate float64
	maxDelay    time.Duration
	chaos       time.Duration
	stable      time.Duration
	// writeMax bounds a write's latency; cibMax a grant's.
	writeMax, cibMax time.Duration
	// slowStopP: how often a stop takes longer than stop_timeout.
	slowStopP float64
	// guard: how long resources outlive a dead daemon.
	guard                       time.Duration
	handlerFailP, handoverFailP float64
	// forceP: how often a forced grant, unfiltered, is among the commands.
	forceP        float64
	checkLiveness bool
}

var simMembers = map[int][]ticket.Member{
	2: {{Name: "east", Role: ticket.Site}, {Name: "west", Role: ticket.Site}},
	3: {{Name: "east", Role: ticket.Site}, {Name: "west", Role: ticket.Site}, {Name: "arbitrator", Role: ticket.Arbitrator}},
	5: {{Name: "east", Role: ticket.Site}, {Name: "west", Role: ticket.Site}, {Name: "north", Role: ticket.Site, Weight: 1},
		{Name: "arb1", Role: ticket.Arbitrator}, {Name: "arb2", Role: ticket.Arbitrator}},
}

// randomTicket draws a valid ticket configuration. One run in eight takes
// the boundary values: the drift bound, no acquire_after, the longest
// stop_timeout the lease allows.
func randomTicket(rnd *rand.Rand, name string, n int, manual, boundary bool) ticket.Config {
	timeout := time.Duration(50+rnd.Intn(200)) * time.Millisecond
	retries := 3 + rnd.Intn(3)
	renewal := timeout*time.Duration(retries+1) + time.Duration(rnd.Intn(3)+1)*timeout
	expire := 2*renewal + time.Duration(rnd.Intn(4))*timeout
	d := []float64{0.01, 0.05, 0.1}[rnd.Intn(3)]
	c := ticket.Config{Name: name, Expire: expire, RenewalFreq: renewal, Timeout: timeout, Retries: retries, MaxClockDrift: d}
	if rnd.Intn(2) == 0 {
		c.AcquireAfter = time.Duration(rnd.Intn(3)) * timeout
	}
	c.StopTimeout = time.Duration(rnd.Int63n(int64(timeout)))
	if rnd.Intn(4) == 0 {
		c.BeforeAcquireHandler = []string{"check"}
	}
	if rnd.Intn(2) == 0 {
		c.TimerSlack = ticket.SlackFor(timeout)
	}
	if manual {
		c.Mode = ticket.Manual
	}
	if boundary {
		c.MaxClockDrift, c.AcquireAfter = ticket.MaxDrift, 0
	}
	for len(c.Validate(n)) > 0 {
		c.Expire += timeout
	}
	if boundary {
		// The longest stop the lease allows.
		c.StopTimeout = time.Duration(float64(c.LeaseLength()-c.RenewalFreq-c.Timeout-c.TimerSlack-time.Millisecond) / (1 + c.MaxClockDrift))
	}
	return c
}

// randomParams picks a configuration and a mix of trouble from the seed.
func randomParams(rnd *rand.Rand) simParams {
	n := []int{3, 3, 5}[rnd.Intn(3)]
	manual := rnd.Intn(8) == 0
	if manual && rnd.Intn(2) == 0 {
		n = 2
	}
	boundary := rnd.Intn(8) == 0
	tc := randomTicket(rnd, "web", n, manual, boundary)
	cfg := Config{Members: simMembers[n], Tickets: []ticket.Config{tc}, Digest: 1, MaxElections: 1 + rnd.Intn(4)}
	if rnd.Intn(4) == 0 {
		// A second ticket, with timings of its own, shares the member's
		// store and loop.
		cfg.Tickets = append(cfg.Tickets, randomTicket(rnd, "db", n, false, false))
		cfg.Tickets[1].MaxClockDrift = tc.MaxClockDrift
		for len(cfg.Tickets[1].Validate(n)) > 0 {
			cfg.Tickets[1].Expire += cfg.Tickets[1].Timeout
		}
	}
	expire := tc.Expire
	// The network and the store are as fast as the fastest ticket's
	// timeout needs: a round trip fits in it.
	timeout := tc.Timeout
	for _, t := range cfg.Tickets {
		timeout = min(timeout, t.Timeout)
	}
	p := simParams{
		cfg:   cfg,
		lossP: []float64{0, 0.05, 0.2}[rnd.Intn(3)], dupP: 0.05 * float64(rnd.Intn(3)),
		crashP: 0.06, wipeP: []float64{0, 0.3, 0.6}[rnd.Intn(3)], partitionP: 0.25, diskP: 0.04, commandP: 0.2,
		extremeRate: 0.7, maxDelay: timeout, chaos: 12 * expire, stable: 6*expire + tc.AcquireAfter + 10*tc.Timeout,
		writeMax: timeout / time.Duration(1+rnd.Intn(8)), cibMax: timeout, slowStopP: 0.1,
		handlerFailP: 0.1, handoverFailP: 0.2, forceP: 0, checkLiveness: !manual,
	}
	for _, t := range cfg.Tickets {
		p.stable = max(p.stable, 6*t.Expire+t.AcquireAfter+10*t.Timeout)
	}
	if boundary {
		// With the longest stop the lease allows, a renewal has a single
		// timeout to be acknowledged before the owner must stop: a round
		// trip must fit in it for the cluster to stay live.
		p.maxDelay = timeout / 3
	}
	// A site's guard must fit in every ticket's crash margin (the
	// configuration check says so).
	margin := tc.CrashMargin() - tc.TimerSlack
	for _, t := range cfg.Tickets {
		margin = min(margin, t.CrashMargin()-t.TimerSlack)
	}
	if margin > 0 {
		p.guard = time.Duration(rnd.Int63n(int64(margin)))
	}
	if rnd.Intn(8) == 0 {
		p.forceP = 1
	}
	if rnd.Intn(4) == 0 && !manual {
		p.change = changedConfig(rnd, cfg)
		for _, t := range p.change.Tickets {
			p.stable = max(p.stable, 6*t.Expire+t.AcquireAfter+10*t.Timeout)
		}
	}
	return p
}

// changedConfig is a configuration change an operator may roll out one
// member at a time: a longer or shorter expire (and renewal), or the
// member list in another order.
func changedConfig(rnd *rand.Rand, cfg Config) *Config {
	next := cfg
	next.Tickets = append([]ticket.Config(nil), cfg.Tickets...)
	next.Digest = cfg.Digest + 1
	switch rnd.Intn(3) {
	case 0, 1:
		t := &next.Tickets[0]
		if rnd.Intn(2) == 0 {
			t.Expire, t.RenewalFreq = t.Expire*3, t.RenewalFreq*3
		} else {
			t.Expire, t.RenewalFreq = t.Expire/3, t.RenewalFreq/3
			for len(t.Validate(len(cfg.Members))) > 0 {
				t.Expire += t.Timeout
				t.RenewalFreq = min(t.RenewalFreq+t.Timeout, t.Expire/2)
			}
		}
	default:
		next.Members = append([]ticket.Member(nil), cfg.Members...)
		rnd.Shuffle(len(next.Members), func(i, j int) { next.Members[i], next.Members[j] = next.Members[j], next.Members[i] })
	}
	return &next
}
