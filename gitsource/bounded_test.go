package gitsource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestBoundedAbandonsWhatIgnoresItsDeadline: an operation that never
// returns (go-git waiting on a child that never exits) is abandoned at its
// deadline plus the grace; the cache lock stays held while it runs, both
// against this process (a clear error at the next deadline) and against
// others (the file lock), and is free again once it returns.
func TestBoundedAbandonsWhatIgnoresItsDeadline(t *testing.T) {
	s, err := New(Options{URL: "/nonexistent/repo", StateDir: t.TempDir(), Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	unlock, err := s.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	abandoned, err := bounded(ctx, func() error { <-release; return nil })
	if took := time.Since(start); took > 50*time.Millisecond+abandonGrace+time.Second {
		t.Fatalf("bounded returned after %s; want about the deadline plus %s", took, abandonGrace)
	}
	if abandoned == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("bounded = %v, %v; want an abandoned operation and a deadline error saying so", abandoned, err)
	}
	s.abandon(abandoned)
	unlock()

	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := s.lock(short); err == nil || !strings.Contains(err.Error(), "abandoned at its deadline has not returned yet") {
		t.Fatalf("lock while an abandoned operation runs: %v; want it refused, saying why", err)
	}
	other, cancelOther := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelOther()
	if _, err := lockFile(other, s.lockPath); err == nil {
		t.Fatal("another process could take the file lock while an abandoned operation runs")
	}

	close(release)
	wait, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	unlock, err = s.lock(wait)
	if err != nil {
		t.Fatalf("lock after the abandoned operation returned: %v", err)
	}
	unlock()
}

// TestBoundedReturnsWhatReturns: an operation that returns, in time or
// just after its deadline, is not abandoned and its own error is kept.
func TestBoundedReturnsWhatReturns(t *testing.T) {
	boom := errors.New("boom")
	if done, err := bounded(context.Background(), func() error { return boom }); done != nil || err != boom {
		t.Fatalf("bounded = %v, %v; want nil, boom", done, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	late := func() error { <-ctx.Done(); return ctx.Err() }
	if done, err := bounded(ctx, late); done != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bounded = %v, %v; want nil, the op's deadline error", done, err)
	}
}
