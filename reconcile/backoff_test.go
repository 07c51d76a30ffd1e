package reconcile

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

var _ Clock = (*fake.Clock)(nil)

func TestBackoffNext(t *testing.T) {
	low := func(n time.Duration) time.Duration { return 0 }
	high := func(n time.Duration) time.Duration { return n - 1 }
	tests := []struct {
		name    string
		b       Backoff
		resetAt int // Reset before this call (0 = never)
		want    []time.Duration
	}{
		{
			name: "equal jitter, lowest draw: half of each doubled delay, capped",
			b:    Backoff{Initial: 2 * time.Second, Max: 10 * time.Second, Rand: low},
			want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second},
		},
		{
			name: "equal jitter, highest draw: just under the full delay",
			b:    Backoff{Initial: 2 * time.Second, Max: 10 * time.Second, Rand: high},
			want: []time.Duration{2*time.Second - 1, 4*time.Second - 1, 8*time.Second - 1, 10*time.Second - 1, 10*time.Second - 1},
		},
		{
			name:    "reset starts over from the initial delay",
			b:       Backoff{Initial: time.Second, Max: time.Minute, Rand: low},
			resetAt: 3,
			want:    []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 500 * time.Millisecond, time.Second},
		},
		{
			name: "zero value: 2s doubling, capped at 5m",
			b:    Backoff{Rand: high},
			want: []time.Duration{
				2*time.Second - 1, 4*time.Second - 1, 8*time.Second - 1, 16*time.Second - 1, 32*time.Second - 1,
				64*time.Second - 1, 128*time.Second - 1, 256*time.Second - 1, 5*time.Minute - 1, 5*time.Minute - 1,
			},
		},
		{
			name: "initial above the cap is the cap",
			b:    Backoff{Initial: time.Hour, Max: 4 * time.Second, Rand: low},
			want: []time.Duration{2 * time.Second, 2 * time.Second},
		},
		{
			name: "many failures do not overflow",
			b:    Backoff{Initial: time.Second, Max: time.Hour, Rand: low, failures: 500},
			want: []time.Duration{30 * time.Minute},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for i, want := range tt.want {
				if tt.resetAt > 0 && i == tt.resetAt {
					b.Reset()
				}
				if got := b.Next(); got != want {
					t.Errorf("call %d: Next() = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestBackoffJitterStaysInBounds(t *testing.T) {
	b := Backoff{Initial: 2 * time.Second, Max: 8 * time.Second}
	for i := range 200 {
		ceiling := 8 * time.Second // 2s, 4s, then capped
		if i < 2 {
			ceiling = 2 * time.Second << i
		}
		got := b.Next()
		if got < ceiling/2 || got >= ceiling {
			t.Fatalf("call %d: %v outside [%v, %v)", i+1, got, ceiling/2, ceiling)
		}
	}
	if b.Failures() != 200 {
		t.Fatalf("Failures() = %d, want 200", b.Failures())
	}
}

func TestBackoffWait(t *testing.T) {
	clock := fake.NewClock()
	b := Backoff{Initial: time.Second, Rand: func(time.Duration) time.Duration { return 0 }}
	done := make(chan error, 1)
	go func() { done <- b.Wait(context.Background(), clock) }()
	fake.Eventually(t, "Wait to start its timer", func() bool { return clock.Pending() == 1 })
	clock.Advance(499 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before its delay", err)
	default:
	}
	clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("Wait after the delay: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- b.Wait(ctx, clock) }()
	fake.Eventually(t, "Wait to start its timer", func() bool { return clock.Pending() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v, want context.Canceled", err)
	}
}
