package reconcile

import (
	"context"
	"math/rand/v2"
	"time"
)

// Clock is the agent's view of time, injected so tests drive timers by hand
// instead of sleeping.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Backoff defaults: the first retry comes quickly (a registry that CI is
// still pushing to), later ones no more often than every five minutes so a
// git host or registry that is down is not hammered.
const (
	DefaultBackoffInitial = 2 * time.Second
	DefaultBackoffMax     = 5 * time.Minute
)

// Backoff computes retry delays: doubling from Initial, capped at Max, with
// "equal jitter" (half the delay fixed, half random) so many hosts failing
// together do not retry in lockstep, while a retry never comes much sooner
// than planned. Reset after a success. The zero value uses the defaults.
// A Backoff is not safe for concurrent use: each environment loop has its
// own.
type Backoff struct {
	Initial time.Duration // first delay; DefaultBackoffInitial when 0
	Max     time.Duration // cap; DefaultBackoffMax when 0
	// Rand returns a uniform duration in [0, n); nil uses math/rand/v2.
	// Tests set it to make delays exact.
	Rand func(n time.Duration) time.Duration

	failures int
}

// Next returns the delay before the next retry and counts one more failure.
func (b *Backoff) Next() time.Duration {
	initial, ceiling := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if ceiling <= 0 {
		ceiling = DefaultBackoffMax
	}
	if initial > ceiling {
		initial = ceiling
	}
	d := initial
	for i := 0; i < b.failures && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling {
		d = ceiling
	}
	b.failures++
	half := d / 2
	if half <= 0 {
		return d
	}
	random := rand.N[time.Duration]
	if b.Rand != nil {
		random = b.Rand
	}
	return d - half + random(half)
}

// Failures is how many delays Next handed out since the last Reset.
func (b *Backoff) Failures() int { return b.failures }

// Reset starts over from Initial: the thing that failed works again.
func (b *Backoff) Reset() { b.failures = 0 }

// Wait blocks for the next delay on clock, or until ctx is done, in which
// case it returns ctx.Err().
func (b *Backoff) Wait(ctx context.Context, clock Clock) error {
	if clock == nil {
		clock = realClock{}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clock.After(b.Next()):
		return nil
	}
}

// WallClock is the real clock, for options that take a Clock.
var WallClock Clock = realClock{}
