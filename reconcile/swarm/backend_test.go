package swarm

import (
	"context"
	"errors"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// pass runs what a pass does with a Backend: observe, plan, apply, gate
// (and prune).
func pass(t *testing.T, b *Backend, st *compose.Stack, gate reconcile.GateOptions) (*reconcile.Plan, error) {
	t.Helper()
	ctx := context.Background()
	o, err := b.Observe(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	plan := b.Plan(st, o, nil, gate.Bake)
	res, err := b.Apply(ctx, st, o, plan)
	if err != nil {
		return plan, err
	}
	return plan, b.Verify(ctx, st, res.Done, gate)
}

func TestBackendReleaseThenRollback(t *testing.T) {
	f, clock := newSwarm()
	b := &Backend{Engine: f}
	gate := reconcile.GateOptions{Clock: clock}
	good := v1().stack()
	if _, err := pass(t, b, good, gate); err != nil {
		t.Fatal(err)
	}
	// A release whose web never becomes healthy, and a new worker config.
	r := v1()
	r.commit, r.webImage, r.workerConf = fake.CommitB, reg+"/web:v2", "level=debug\n"
	bad := r.stack()
	f.onPoll = func(s *compose.ObservedService, n int) {
		if s.Name == "lst_web" && normalRef(imageOf(s.Spec)) == normalRef(reg+"/web:v2") {
			setTasks(s, func(t *compose.ObservedTask) { t.State = "starting" })
		}
	}
	plan, err := pass(t, b, bad, gate)
	var ge *reconcile.GateError
	if !errors.As(err, &ge) || ge.Service != "web" {
		t.Fatalf("release: %v, want web's gate failure", err)
	}
	if len(plan.Gate) != 2 {
		t.Errorf("plan.Gate = %q", plan.Gate)
	}
	// The pass re-applies the last healthy release: web and worker go
	// back, db is not touched, the bad release's config is pruned.
	f.resetCalls()
	if _, err := pass(t, b, good, gate); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	equalLines(t, "rollback calls", f.changes(), []string{"update-service lst_web", "update-service lst_worker", "remove-config " + bad.Configs[0].Name})
	if o := observe(t, f, good); !BuildPlan(good, o).Empty() || !Healthy(good, o) {
		t.Errorf("after the rollback: plan %v, healthy %t", actionLines(BuildPlan(good, o).Actions), Healthy(good, o))
	}
}

func TestBackendAppliesOnlyOnTheLeader(t *testing.T) {
	f, _ := newSwarm()
	f.info.Leader = false
	b := &Backend{Engine: f}
	st := v1().stack()
	o, err := b.Observe(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Apply(context.Background(), st, o, b.Plan(st, o, nil, 0))
	var nl *NotLeaderError
	if !errors.As(err, &nl) || len(res.Done) != 0 || len(f.calls) != 0 {
		t.Errorf("Apply on a follower: %v, done %v, calls %v", err, res.Done, f.calls)
	}

	// Nor does it prune: a plan of prunes only is refused too, and a
	// gate that passes on a follower removes nothing.
	f.info.Leader = true
	deploy(t, f, st)
	r := v1()
	r.workerConf = "level=debug\n"
	next := r.stack()
	deploy(t, f, next)
	f.info.Leader = false
	o = observe(t, f, next)
	plan := b.Plan(next, o, nil, 0)
	if Changes(plan) || plan.Empty() {
		t.Fatalf("plan %v: want prunes only", actionLines(plan.Actions))
	}
	f.resetCalls()
	if _, err := b.Apply(context.Background(), next, o, plan); !errors.As(err, &nl) {
		t.Errorf("Apply of prunes on a follower: %v", err)
	}
	if err := b.Verify(context.Background(), next, nil, reconcile.GateOptions{}); err != nil || len(f.calls) != 0 {
		t.Errorf("Verify on a follower: %v, calls %v", err, f.calls)
	}
}
