package fake

import (
	"sync"
	"time"
)

// Clock is a reconcile Clock that moves only when a test calls Advance.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	c  chan time.Time
}

// NewClock returns a Clock stopped at a fixed time.
func NewClock() *Clock {
	return &Clock{now: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
}

// Now is the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once Advance has moved
// the clock by d (at once when d <= 0).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.now.Add(d), c: ch})
	return ch
}

// Advance moves the clock and fires every timer that is due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
			continue
		}
		w.c <- c.now // buffered, sent once
	}
	c.waiters = keep
}

// Pending is how many timers have not fired yet.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// AutoClock is a reconcile Clock whose timers fire at once, moving its
// time forward: a gate that waits out a 15s bake runs in microseconds and
// still sees 15s pass.
type AutoClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewAutoClock returns an AutoClock starting at a fixed time.
func NewAutoClock() *AutoClock {
	return &AutoClock{now: time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)}
}

// Now is the clock's current time.
func (c *AutoClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After moves the clock by d and returns a channel that already holds the
// new time.
func (c *AutoClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}
