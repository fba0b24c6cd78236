package node

import "time"

// Clock gives the loop its two times: a monotonic one for the state
// machines and the wall clock for datagram timestamps and for operators.
type Clock interface {
	// Mono is the time since an arbitrary origin, never going back.
	Mono() time.Duration
	// Wall is the wall clock.
	Wall() time.Time
}

// SystemClock reads the operating system's clocks.
type SystemClock struct{ start time.Time }

// NewSystemClock starts a monotonic origin now.
func NewSystemClock() *SystemClock { return &SystemClock{start: time.Now()} }

// Mono returns the monotonic time since the clock was made.
func (c *SystemClock) Mono() time.Duration { return time.Since(c.start) }

// Wall returns time.Now().
func (c *SystemClock) Wall() time.Time { return time.Now() }

// wallOf converts a monotonic instant to wall time.
func wallOf(c Clock, mono time.Duration) time.Time {
	return c.Wall().Add(mono - c.Mono())
}
