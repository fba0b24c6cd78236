package engine

import "time"

// pacer bounds the elections of this member's own under way at once by a
// window that adapts to what the member and its voters carry, as TCP's
// congestion window does: it starts small, grows by one per election
// answered (won or refused: the voters carry the load), which doubles it
// each round, up to a threshold, then by one per window of elections
// answered, and halves when an election goes unanswered (no majority
// answered in time: the voters, or the way to them, are overloaded) or
// datagrams are dropped for want of room. As TCP cuts once per window of
// data, it cuts once per round of elections: an unanswered election cuts
// only if it started after the last cut (the elections of one storm fail
// together and must not cut the window to nothing), and drops, while
// elections of ours run, cut at most once per second. The window stays
// between minWindow and max_elections.
type pacer struct {
	max, window, threshold float64
	// running counts acquisitions under way; deferred counts those that
	// had to wait.
	running  int
	deferred uint64
	// lastCut: when the window was last cut (cut: it has been).
	lastCut time.Duration
	cut     bool
}

const (
	// initialWindow is where the window starts: enough for a few tickets
	// to fail over at once without waiting, small enough that thousands
	// do not flood the voters before the first answers show how much
	// they carry.
	initialWindow = 32
	// minWindow is the least it is cut to.
	minWindow = 4
	// dropCutEvery spaces the cuts for dropped datagrams.
	dropCutEvery = time.Second
)

func newPacer(maxElections int) pacer {
	m := float64(maxElections)
	return pacer{max: m, window: min(m, initialWindow), threshold: m}
}

func (p *pacer) limit() int { return max(1, int(p.window)) }

// free reports whether one more election may start.
func (p *pacer) free() bool { return p.running < p.limit() }

func (p *pacer) started() { p.running++ }

// ended: an acquisition that started at started ended, won, refused or
// unanswered. An answer, a vote or a refusal, shows the voters carry the
// load.
func (p *pacer) ended(unanswered bool, started, now time.Duration) {
	p.running--
	if unanswered {
		if !p.cut || started >= p.lastCut {
			p.halve(now)
		}
		return
	}
	if p.window < p.threshold {
		p.window++
	} else {
		p.window += 1 / p.window
	}
	p.window = min(p.window, p.max)
}

// dropped: datagrams were dropped for want of room. It says something of
// our elections' load only while some run (a restarted member's burst of
// sync requests says nothing of it).
func (p *pacer) dropped(now time.Duration) {
	if p.running > 0 && (!p.cut || now-p.lastCut >= dropCutEvery) {
		p.halve(now)
	}
}

func (p *pacer) halve(now time.Duration) {
	p.cut, p.lastCut = true, now
	p.threshold = max(min(minWindow, p.max), p.window/2)
	p.window = p.threshold
}
