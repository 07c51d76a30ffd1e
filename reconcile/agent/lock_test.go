package agent

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// An apply of the environment by another process (here: another store on
// the same state dir) holds the lock past the agent's wait: the agent's
// pass fails transient, says for whom it waited, retries with backoff,
// and applies once the lock is free.
func TestAgentRetriesAnApplyThatAnotherHolds(t *testing.T) {
	f := newAgentFixture(t)
	f.opts.PollInterval = 10 * time.Hour
	f.runner.LockWait = 10 * time.Millisecond
	unlock, err := state.New(f.state, 0, zerolog.Nop()).LockApply(context.Background(), "prod", state.Holder{Command: "lockstep apply prod"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.start()
	f.settle("prod", 0)

	s := f.status("prod")
	if s.EngineErrors != 1 || !strings.Contains(s.LastError, "another apply of prod is still running: pid "+strconv.Itoa(os.Getpid())+" (lockstep apply prod)") {
		t.Fatalf("status while another apply holds the lock: %+v", s)
	}
	if d := s.NextRetry.Sub(f.clock.Now()); d < time.Second || d >= 2*time.Second {
		t.Fatalf("retry in %v, want the first backoff step [1s, 2s)", d)
	}
	if !strings.Contains(f.logs.String(), "waiting for the apply of prod by pid "+strconv.Itoa(os.Getpid())+" (lockstep apply prod) to finish") {
		t.Errorf("the agent did not say for whom it waits:\n%s", f.logs)
	}
	wantTriggers(t, f, "start:failed")

	unlock()
	f.advance("prod", s.NextRetry.Sub(f.clock.Now()))
	wantTriggers(t, f, "start:failed", "retry:noop")
	if s := f.status("prod"); s.LastError != "" || !s.NextRetry.IsZero() || s.LastPass == nil || s.LastPass.Result != reconcile.ResultNoop {
		t.Fatalf("status once the lock is free: %+v", s)
	}
}
