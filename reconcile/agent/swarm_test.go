package agent

import (
	"testing"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// TestStatusSaysTheSwarmOfTheLastPass: the status's swarm is the last
// pass's, from the loop (recordPass) or the history (foldHistory); a pass
// that did not reach the engine says nothing of it rather than something
// stale.
func TestStatusSaysTheSwarmOfTheLastPass(t *testing.T) {
	down := &reconcile.SwarmStatus{Node: "m2", Role: reconcile.SwarmFollower, Leader: "m1", Nodes: 3,
		Lost: []reconcile.SwarmNode{{Hostname: "m3", State: "down", Reachability: "unreachable"}}}
	ok := reconcile.PassRecord{ID: "p1", Result: reconcile.ResultNoop, Swarm: down}
	failed := reconcile.PassRecord{ID: "p2", Result: reconcile.ResultFailed, Class: reconcile.ClassEngine, Error: "observe: engine unreachable"}

	var st reconcile.EnvStatus
	foldHistory(&st, []reconcile.PassRecord{ok})
	if st.Swarm != down {
		t.Fatalf("from the history: %+v", st.Swarm)
	}
	foldHistory(&st, []reconcile.PassRecord{ok, failed})
	if st.Swarm != nil {
		t.Fatalf("after a failed pass, from the history: %+v", st.Swarm)
	}

	a := &Agent{}
	l := &envLoop{status: reconcile.EnvStatus{Passes: map[reconcile.Result]int{}}}
	a.recordPass(l, ok, 0, nil)
	if l.status.Swarm != down {
		t.Fatalf("from the loop: %+v", l.status.Swarm)
	}
	a.recordPass(l, failed, 0, nil)
	if l.status.Swarm != nil {
		t.Fatalf("after a failed pass, from the loop: %+v", l.status.Swarm)
	}
}
