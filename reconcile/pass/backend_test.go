package pass

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// stackBackend is a backend that plans itself and is watched by several
// agents (as the swarm backend is), recording what it was asked.
type stackBackend struct {
	applies bool
	why     string
	plan    *reconcile.Plan
	planErr error
	planned int
	applied int
	stack   *compose.ObservedStack // what Observe returns
}

func (b *stackBackend) Observe(context.Context, *compose.Project) (compose.Observed, error) {
	return compose.Observed{Project: "prod", Stack: b.stack}, nil
}

func (b *stackBackend) Plan(desired *compose.Project, observed compose.Observed, last *reconcile.Deployed, gate reconcile.GateOptions) (*reconcile.Plan, error) {
	b.planned++
	return b.plan, b.planErr
}

func (b *stackBackend) Applies(context.Context, compose.Observed) (bool, string, error) {
	return b.applies, b.why, nil
}

func (b *stackBackend) Apply(ctx context.Context, desired *compose.Project, observed compose.Observed, plan *reconcile.Plan, gate reconcile.GateOptions) (*reconcile.ApplyResult, error) {
	b.applied++
	return &reconcile.ApplyResult{Done: plan.Actions, Updated: 1}, nil
}

func (b *stackBackend) Verify(context.Context, *compose.Project, []reconcile.Action, reconcile.GateOptions) error {
	return nil
}

func (b *stackBackend) Healthy(*compose.Project, compose.Observed) bool { return true }

func (b *stackBackend) Environments(context.Context) (map[string]string, error) { return nil, nil }

var swarmEnv = Environment{Name: "prod", Project: "prod", PinFile: "environments/prod.toml", Backend: BackendSwarm}

func newStackFixture(t *testing.T) (*runnerFixture, *stackBackend) {
	f := newRunnerFixture(t, nil, false)
	b := &stackBackend{applies: true, plan: &reconcile.Plan{Environment: "prod", Project: "prod",
		Actions: []reconcile.Action{{Kind: reconcile.ActCreate, Service: "web", Reasons: []string{"new service"}}}}}
	f.r.Swarm = b
	return f, b
}

// TestSwarmEnvironmentUsesTheSwarmBackend: the backend that plans itself
// is asked for the plan, and only the swarm environment goes there.
func TestSwarmEnvironmentUsesTheSwarmBackend(t *testing.T) {
	f, b := newStackFixture(t)
	res, err := f.r.Apply(context.Background(), swarmEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b.planned != 1 || b.applied != 1 || res.Plan != b.plan || res.Held != nil || !res.Healthy {
		t.Fatalf("planned %d applied %d held %+v healthy %v", b.planned, b.applied, res.Held, res.Healthy)
	}
	if len(f.eng.Calls()) != 0 {
		t.Fatalf("the host engine was asked: %v", f.eng.Calls())
	}
	if recs, _ := f.st.History("prod", 1); len(recs) != 1 || recs[0].Updated != 1 {
		t.Fatalf("history does not count the updated services: %+v", recs)
	}
	if _, err := f.r.Plan(context.Background(), prodEnv); err != nil || b.planned != 1 {
		t.Fatalf("a compose environment went to the swarm backend (planned %d): %v", b.planned, err)
	}
}

// TestSwarmFollowerPlansAndAppliesNothing: on a manager that is not the
// leader the pass plans, is held as a follower with the backend's reason,
// sends no event, and touches nothing.
func TestSwarmFollowerPlansAndAppliesNothing(t *testing.T) {
	f, b := newStackFixture(t)
	b.applies, b.why = false, "this node is a manager, not the swarm leader (leader: node-2)"
	res, err := f.r.Apply(context.Background(), swarmEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b.applied != 0 || res.Held == nil || res.Held.Kind != reconcile.HoldFollower || res.Held.Reason != b.why || res.Held.Commit != res.Commit {
		t.Fatalf("applied %d held %+v", b.applied, res.Held)
	}
	if len(res.Events) != 0 {
		t.Fatalf("a follower sent events: %+v", res.Events)
	}
	recs, _ := f.st.History("prod", 1)
	if len(recs) != 1 || recs[0].Result != reconcile.ResultPaused || recs[0].Held == nil {
		t.Fatalf("history: %+v", recs)
	}
	// With nothing to do, a follower is not held: there is nothing pending.
	b.plan = &reconcile.Plan{Environment: "prod", Project: "prod"}
	if res, err = f.r.Apply(context.Background(), swarmEnv); err != nil || res.Held != nil {
		t.Fatalf("empty plan on a follower: held %+v, %v", res.Held, err)
	}
}

// TestSwarmStatusIsRecorded: the swarm as observed (this node, leader or
// not, the nodes lost) is in the pass's result and its record, for the
// status; a host's pass has none.
func TestSwarmStatusIsRecorded(t *testing.T) {
	f, b := newStackFixture(t)
	b.applies = false
	b.stack = &compose.ObservedStack{Namespace: "prod", Local: compose.SwarmInfo{NodeID: "n2", Manager: true}, Nodes: []compose.ObservedNode{
		{ID: "n1", Hostname: "m1", Role: "manager", State: "ready", Reachability: "reachable", Leader: true},
		{ID: "n2", Hostname: "m2", Role: "manager", State: "ready", Reachability: "reachable"},
		{ID: "n3", Hostname: "m3", Role: "manager", State: "down", Reachability: "unreachable"},
	}}
	res, err := f.r.Apply(context.Background(), swarmEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &reconcile.SwarmStatus{Node: "m2", Role: reconcile.SwarmFollower, Leader: "m1", Nodes: 3,
		Lost: []reconcile.SwarmNode{{Hostname: "m3", State: "down", Reachability: "unreachable"}}}
	if !reflect.DeepEqual(res.Swarm, want) {
		t.Fatalf("result's swarm %+v, want %+v", res.Swarm, want)
	}
	recs, _ := f.st.History("prod", 1)
	if len(recs) != 1 || !reflect.DeepEqual(recs[0].Swarm, want) {
		t.Fatalf("recorded swarm: %+v", recs)
	}
}

// TestSwarmPlanErrorTouchesNothing: a release the backend refuses to plan
// (an external network that does not exist) fails the pass before apply.
func TestSwarmPlanErrorTouchesNothing(t *testing.T) {
	f, b := newStackFixture(t)
	b.planErr = errors.New(`network "edge" is external and does not exist on the swarm`)
	_, err := f.r.Apply(context.Background(), swarmEnv)
	if err == nil || !strings.Contains(err.Error(), `network "edge" is external`) || b.applied != 0 {
		t.Fatalf("applied %d, err %v", b.applied, err)
	}
}

// TestSwarmEnvironmentWithoutASwarmBackend fails clearly.
func TestSwarmEnvironmentWithoutASwarmBackend(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	_, err := f.r.Apply(context.Background(), swarmEnv)
	if err == nil || !strings.Contains(err.Error(), `backend = "swarm"`) || len(f.eng.Calls()) != 0 {
		t.Fatalf("%v (engine calls %v)", err, f.eng.Calls())
	}
}
