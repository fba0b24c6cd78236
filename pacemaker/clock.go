package pacemaker

import (
	"context"
	"time"
)

// Clock is the driver's time: its retry pauses, polls and the per-call
// timeout. The real one by default; tests inject one they advance, so that
// a slow machine cannot turn a failing call into a timed-out one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
	// WithTimeout is context.WithTimeout on this clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
