package pass

import (
	"context"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// TestStartedCalledBeforeANewCommitIsApplied: Started fires once, before
// the engine is changed, for a commit that is not what runs; a converged
// host (empty plan) and a repair of the commit that runs do not fire it.
func TestStartedCalledBeforeANewCommitIsApplied(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	for _, id := range []string{"new1", "new2", "new3"} {
		f.eng.Script(id, compose.Container{State: "running", Health: "healthy"})
	}
	f.eng.Script("new2", compose.Container{State: "exited", ExitCode: 0})
	var got []string
	f.r.Started = func(env Environment, commit string) {
		if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
			t.Errorf("Started after the engine was changed: %q", m)
		}
		got = append(got, env.Name+"@"+commit)
	}
	if _, err := f.r.Apply(context.Background(), prodEnv); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "prod@"+fake.CommitA {
		t.Fatalf("Started calls: %q", got)
	}

	o := fake.Converged(fake.Project())
	f2 := newRunnerFixture(t, &o, false)
	f2.r.Started = func(env Environment, commit string) { t.Errorf("Started on a converged host: %s", commit) }
	if _, err := f2.r.Apply(context.Background(), prodEnv); err != nil {
		t.Fatal(err)
	}
}
