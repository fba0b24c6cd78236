package pacemaker

import (
	"context"
	"sync"
	"time"
)

// fakeClock: pauses (After) take no time; a call's timeout fires only when
// the test advances the clock past it, so a slow machine cannot make a
// failing call time out, nor a hanging one answer.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	timeouts []*fakeTimeout
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

func (c *fakeClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	c.mu.Lock()
	t := &fakeTimeout{Context: ctx, deadline: c.now.Add(d), done: make(chan struct{})}
	c.timeouts = append(c.timeouts, t)
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { t.end(ctx.Err()) })
	return t, func() { stop(); t.end(context.Canceled) }
}

// pending counts the timeouts running (calls in flight).
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timeouts {
		if !t.ended() {
			n++
		}
	}
	return n
}

// advance moves the clock on and ends the timeouts it passes.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimeout
	for _, t := range c.timeouts {
		if !c.now.Before(t.deadline) {
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.end(context.DeadlineExceeded)
	}
}

// fakeTimeout is a context that ends when its clock passes its deadline,
// its parent ends or it is cancelled.
type fakeTimeout struct {
	context.Context
	deadline time.Time
	mu       sync.Mutex
	err      error
	done     chan struct{}
}

func (t *fakeTimeout) Deadline() (time.Time, bool) { return t.deadline, true }
func (t *fakeTimeout) Done() <-chan struct{}       { return t.done }

func (t *fakeTimeout) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *fakeTimeout) end(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
		close(t.done)
	}
}

func (t *fakeTimeout) ended() bool { return t.Err() != nil }
