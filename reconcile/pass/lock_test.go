package pass

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// lockFixture is a slow apply (its load waits for release) and a second
// pipeline over the same state dir and engine with a store of its own:
// what a second `lockstep apply` process is.
type lockFixture struct {
	*runnerFixture
	loading, release chan struct{}
	second           *Pipeline
	log              *fake.SyncBuffer
}

func newLockFixture(t *testing.T, wait time.Duration) *lockFixture {
	f := &lockFixture{runnerFixture: newRunnerFixture(t, nil, false), loading: make(chan struct{}), release: make(chan struct{}), log: &fake.SyncBuffer{}}
	// A host with the project's network and volume (the fake does not
	// keep those) and no container yet.
	o := fake.Converged(fake.Project())
	o.Containers = nil
	f.eng.UseWorld(o)
	f.eng.SetOnStart("migrate", func(c *compose.Container) { c.State, c.ExitCode = "exited", 0 })
	f.r.Gate = reconcile.GateOptions{Clock: fake.NewAutoClock()}
	second := *f.r.Pipeline
	second.State = state.New(f.state, 0, zerolog.Nop())
	second.LockWait = wait
	second.Log = zerolog.New(f.log)
	f.second = &second
	load := f.r.Load
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		close(f.loading)
		<-f.release
		return load(ctx, env, rel, need)
	}
	return f
}

// startSlowApply starts the first apply and returns once it holds the
// lock (it is loading).
func (f *lockFixture) startSlowApply(t *testing.T) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := f.r.Apply(context.Background(), prodEnv)
		done <- err
	}()
	<-f.loading
	return done
}

func creates(calls []string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, "create ") {
			n++
		}
	}
	return n
}

func TestApplyWaitsForAnotherApplyThenFindsNothingToDo(t *testing.T) {
	f := newLockFixture(t, time.Minute)
	first := f.startSlowApply(t)

	// A plan takes no lock: it answers while the apply runs.
	if res, err := f.second.Run(context.Background(), prodEnv, Options{Mode: ModePlan}); err != nil || res.Plan == nil {
		t.Fatalf("plan while an apply runs: %v", err)
	}
	second := make(chan error, 1)
	var res *Result
	go func() {
		var err error
		res, err = f.second.Run(context.Background(), prodEnv, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
		second <- err
	}()
	want := "waiting for the apply of prod by pid " + strconv.Itoa(os.Getpid())
	fake.Eventually(t, "the second apply to say what it waits for", func() bool { return strings.Contains(f.log.String(), want) })
	close(f.release)
	if err := <-first; err != nil {
		t.Fatalf("first apply: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second apply: %v\nlog: %s", err, f.log)
	}
	// It observed the host after the first apply: nothing left to do, and
	// no container made twice.
	if !res.Plan.Empty() || res.Applied != nil {
		t.Errorf("second apply: plan %v, applied %+v; want nothing to do", briefs(res.Plan), res.Applied)
	}
	if n := creates(f.eng.Calls()); n != 3 {
		t.Errorf("%d containers created, want 3 (one per service): %q", n, f.eng.Calls())
	}
	hist, _ := f.st.History("prod", 0)
	if len(hist) != 2 || hist[0].Result != reconcile.ResultApplied || hist[1].Result != reconcile.ResultNoop {
		t.Errorf("history %+v: want the apply, then the no-op", hist)
	}
}

func TestApplyGivesUpWhenAnotherHoldsTheLockTooLong(t *testing.T) {
	f := newLockFixture(t, 20*time.Millisecond)
	first := f.startSlowApply(t)
	before := len(f.eng.Calls())

	res, err := f.second.Run(context.Background(), prodEnv, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
	var be *state.BusyError
	if !errors.As(err, &be) || be.Holder.PID != os.Getpid() {
		t.Fatalf("err = %v, want a *state.BusyError naming this pid", err)
	}
	// The agent retries it with backoff: it needs a failed record.
	if rec := res.Record; rec == nil || rec.Result != reconcile.ResultFailed || rec.Class != reconcile.ClassEngine || !strings.Contains(rec.Error, "another apply of prod") {
		t.Errorf("record of the refused apply: %+v", res.Record)
	}
	if calls := f.eng.Calls()[before:]; len(calls) != 0 {
		t.Errorf("the refused apply asked the engine: %q", calls)
	}

	// Nor does a rollback run, or quarantine anything, while it is held.
	if err := f.st.PushHealthy("prod", state.HealthyRevision{Commit: fake.CommitB}); err != nil {
		t.Fatal(err)
	}
	rb, err := f.second.Rollback(context.Background(), prodEnv, fake.CommitA, Options{Trigger: reconcile.TriggerRollback})
	if !errors.As(err, &be) || rb.Record != nil {
		t.Errorf("rollback while held: %v, record %+v; want a *state.BusyError and nothing recorded", err, rb.Record)
	}
	if q, _ := f.st.Quarantine("prod"); len(q) != 0 {
		t.Errorf("a rollback that did not run quarantined %+v", q)
	}

	close(f.release)
	if err := <-first; err != nil {
		t.Fatalf("first apply: %v", err)
	}
	if hist, _ := f.st.History("prod", 0); len(hist) != 1 || hist[0].Result != reconcile.ResultApplied {
		t.Errorf("history %+v: want only the apply that ran", hist)
	}
}
