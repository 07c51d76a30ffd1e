package swarm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// project is st as the loader returns a project loaded as a stack.
func project(st *compose.Stack, commit string) *compose.Project {
	return &compose.Project{Name: st.Namespace, Environment: "production", Commit: commit, Stack: st}
}

// pass runs what a pass does with a Backend: observe, plan, apply, gate
// (and prune).
func pass(t *testing.T, b *Backend, p *compose.Project, gate reconcile.GateOptions) (*reconcile.Plan, error) {
	t.Helper()
	ctx := context.Background()
	o, err := b.Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := b.Plan(p, o, nil, gate)
	if err != nil {
		return plan, err
	}
	res, err := b.Apply(ctx, p, o, plan, gate)
	if err != nil {
		return plan, err
	}
	return plan, b.Verify(ctx, p, res.Done, gate)
}

func TestBackendReleaseThenRollback(t *testing.T) {
	f, clock := newSwarm()
	b := &Backend{Engine: f}
	gate := reconcile.GateOptions{Clock: clock}
	good := project(v1().stack(), fake.CommitA)
	if _, err := pass(t, b, good, gate); err != nil {
		t.Fatal(err)
	}
	// A release whose web never becomes healthy, and a new worker config.
	r := v1()
	r.commit, r.webImage, r.workerConf = fake.CommitB, reg+"/web:v2", "level=debug\n"
	bad := project(r.stack(), fake.CommitB)
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
	if plan.Commit != fake.CommitB || plan.Environment != "production" || len(plan.Gate) != 2 {
		t.Errorf("plan: commit %s, environment %s, gate %q", plan.Commit, plan.Environment, plan.Gate)
	}
	// The pass re-applies the last healthy release: web and worker go
	// back, db is not touched, the bad release's config is pruned.
	f.resetCalls()
	if _, err := pass(t, b, good, gate); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	equalLines(t, "rollback calls", f.changes(), []string{"update-service lst_web", "update-service lst_worker", "remove-config " + bad.Stack.Configs[0].Name})
	o, err := b.Observe(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := b.Plan(good, o, nil, gate); !p.Empty() || !b.Healthy(good, o) {
		t.Errorf("after the rollback: plan %v, healthy %t", actionLines(p.Actions), b.Healthy(good, o))
	}
}

// TestBackendObserveSaysWhichNodeAndWhoLeads: Observe reads the local
// node's place beside the node list (for the status), and a follower's
// reason names the leader the list shows.
func TestBackendObserveSaysWhichNodeAndWhoLeads(t *testing.T) {
	f, _ := newSwarm()
	f.info.NodeID, f.info.Leader = "n2", false
	f.nodes[0].Reachability, f.nodes[1].Role, f.nodes[1].Reachability = "reachable", "manager", "reachable"
	b := &Backend{Engine: f}
	o, err := b.Observe(context.Background(), project(v1().stack(), fake.CommitA))
	if err != nil {
		t.Fatal(err)
	}
	if o.Stack.Local.NodeID != "n2" {
		t.Fatalf("observed local node %+v", o.Stack.Local)
	}
	if st := reconcile.SwarmStatusOf(o.Stack); st.Node != "w1" || st.Role != reconcile.SwarmFollower || st.Leader != "m1" {
		t.Fatalf("swarm status %+v", st)
	}
	ok, reason, err := b.Applies(context.Background(), o)
	if ok || err != nil || reason != "this node is a manager but not the leader (leader: node m1)" {
		t.Errorf("Applies = %t, %q, %v", ok, reason, err)
	}
}

func TestBackendAppliesOnlyOnTheLeader(t *testing.T) {
	f, _ := newSwarm()
	f.info.Leader = false
	b := &Backend{Engine: f}
	p := project(v1().stack(), fake.CommitA)
	if ok, reason, err := b.Applies(context.Background(), compose.Observed{}); ok || err != nil || !strings.Contains(reason, "not the leader") {
		t.Errorf("Applies = %t, %q, %v", ok, reason, err)
	}
	o, err := b.Observe(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := b.Plan(p, o, nil, reconcile.GateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Apply(context.Background(), p, o, plan, reconcile.GateOptions{})
	var nl *NotLeaderError
	if !errors.As(err, &nl) || len(res.Done) != 0 || len(f.calls) != 0 {
		t.Errorf("Apply on a follower: %v, done %v, calls %v", err, res.Done, f.calls)
	}

	// Nor does it prune: a plan of prunes only is refused too, and a
	// gate that passes on a follower removes nothing.
	f.info.Leader = true
	deploy(t, f, p.Stack)
	r := v1()
	r.workerConf = "level=debug\n"
	next := project(r.stack(), fake.CommitB)
	deploy(t, f, next.Stack)
	f.info.Leader = false
	if o, err = b.Observe(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if plan, err = b.Plan(next, o, nil, reconcile.GateOptions{}); err != nil || Changes(plan) || plan.Empty() {
		t.Fatalf("plan %v, %v: want prunes only", actionLines(plan.Actions), err)
	}
	f.resetCalls()
	if _, err := b.Apply(context.Background(), next, o, plan, reconcile.GateOptions{}); !errors.As(err, &nl) {
		t.Errorf("Apply of prunes on a follower: %v", err)
	}
	if err := b.Verify(context.Background(), next, nil, reconcile.GateOptions{}); err != nil || len(f.calls) != 0 {
		t.Errorf("Verify on a follower: %v, calls %v", err, f.calls)
	}
}

func TestBackendRefusesBeforeTouching(t *testing.T) {
	f, _ := newSwarm()
	b := &Backend{Engine: f}
	r := v1()
	r.extra = func(st *compose.Stack) {
		st.Networks = append(st.Networks, compose.StackNetwork{Key: "edge", Name: "traefik_public", External: true})
	}
	p := project(r.stack(), fake.CommitA)
	o, err := b.Observe(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var pe *reconcile.PreconditionError
	if _, err := b.Plan(p, o, nil, reconcile.GateOptions{}); !errors.As(err, &pe) || !pe.Permanent() {
		t.Errorf("Plan = %v, want the permanent PreconditionError", err)
	}
	if _, err := b.Observe(context.Background(), &compose.Project{Name: "x"}); err == nil {
		t.Error("Observe of a project without a stack: no error")
	}
	if len(f.changes()) != 0 {
		t.Errorf("changes: %v", f.changes())
	}
}

// TestNodeLossIsNoDrift: a node goes down, its tasks are shut down and the
// swarm has not started them elsewhere yet (fewer running than desired):
// the plan is empty, the swarm reschedules, lockstep changes nothing.
func TestNodeLossIsNoDrift(t *testing.T) {
	f, clock := newSwarm()
	b := &Backend{Engine: f}
	p := project(v1().stack(), fake.CommitA)
	if _, err := pass(t, b, p, reconcile.GateOptions{Clock: clock}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.nodes[2].State = "down"
	lost := 0
	for _, s := range f.services {
		for i := range s.Tasks {
			if s.Tasks[i].NodeID == f.nodes[2].ID {
				s.Tasks[i].State, s.Tasks[i].DesiredState = "orphaned", "shutdown"
				lost++
			}
		}
	}
	f.mu.Unlock()
	if lost == 0 {
		t.Fatal("no task ran on the node stopped")
	}
	o, err := b.Observe(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := b.Plan(p, o, nil, reconcile.GateOptions{})
	if err != nil || !plan.Empty() {
		t.Fatalf("plan with a node down: %+v, %v", plan, err)
	}
	if st := reconcile.SwarmStatusOf(o.Stack); len(st.Lost) != 1 || st.Lost[0].Hostname != "w2" {
		t.Fatalf("status with a node down: %+v", st)
	}
}
