package engine

import "time"

// pacer bounds the elections of this member's own under way at once by a
// window that adapts to what the member and its voters carry, as TCP's
// congestion window does: it starts small, grows by one per election won
// (doubling each round) up to a threshold, then by one per window of
// elections won, and halves, at most once per timeout, when an election
// fails or datagrams are dropped for want of room. The threshold and the
// window stay between 1 and max_elections.
type pacer struct {
	max, window, threshold float64
	// running counts acquisitions under way; deferred counts those that
	// had to wait.
	running  int
	deferred uint64
	// every: at most one cut per this long (the shortest ticket timeout).
	every, lastCut time.Duration
	cut            bool
}

// initialWindow is where the window starts: enough for a few tickets to
// fail over at once without waiting, small enough that thousands do not
// flood the voters before the first answers show how much they carry.
const initialWindow = 16

func newPacer(maxElections int, every time.Duration) pacer {
	m := float64(maxElections)
	return pacer{max: m, window: min(m, initialWindow), threshold: m, every: every}
}

func (p *pacer) limit() int { return max(1, int(p.window)) }

// free reports whether one more election may start.
func (p *pacer) free() bool { return p.running < p.limit() }

func (p *pacer) started() { p.running++ }

// ended: an acquisition ended, won or not.
func (p *pacer) ended(won bool, now time.Duration) {
	p.running--
	if !won {
		p.congested(now)
		return
	}
	if p.window < p.threshold {
		p.window++
	} else {
		p.window += 1 / p.window
	}
	p.window = min(p.window, p.max)
}

// congested halves the window, once per timeout at most.
func (p *pacer) congested(now time.Duration) {
	if p.cut && now-p.lastCut < p.every {
		return
	}
	p.cut, p.lastCut = true, now
	p.threshold = max(1, p.window/2)
	p.window = p.threshold
}
