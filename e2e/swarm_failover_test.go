package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// swarmAgent is the agent of one manager of the swarm: a `lockstep agent`
// process with its own config, state dir and API socket, whose engine is
// that node's. The agents of a test share its git server, registry and
// stack.
type swarmAgent struct {
	*fixture
	node int
	proc *agentProc
}

// startAgentOn starts the agent of node i.
func (f *swarmFixture) startAgentOn(i int) *swarmAgent {
	f.t.Helper()
	c := *f.fixture
	c.stateDir, c.home = f.t.TempDir(), f.t.TempDir()
	etc := f.t.TempDir()
	c.config, c.socket = filepath.Join(etc, "lockstep.toml"), filepath.Join(etc, "lockstep.sock")
	c.agentExtra = fmt.Sprintf("\n[engine]\nhost = %q\n", f.sw.Hosts[i])
	c.writeConfig("backend = \"swarm\"\n")
	a := &swarmAgent{fixture: &c, node: i}
	a.proc = c.startAgent()
	return a
}

// swarm is the swarm as the agent's last pass saw it (nil when that pass
// did not reach the engine, or no pass ran yet). An agent that does not
// answer (it is starting) is nil too.
func (a *swarmAgent) swarm() *reconcile.SwarmStatus {
	r := a.lockstep("status", "--json")
	var out struct {
		Environments []reconcile.EnvStatus `json:"environments"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Environments) != 1 {
		return nil
	}
	return out.Environments[0].Swarm
}

// allHistory is every pass the agent recorded (history's default limit
// would cut the drift passes of a long test).
func (a *swarmAgent) allHistory() []reconcile.PassRecord {
	a.t.Helper()
	r := a.lockstep("history", "e2e", "--json", "--limit", "1000")
	if r.code != 0 {
		a.t.Fatalf("history: %s", r)
	}
	var out []reconcile.PassRecord
	must(a.t, json.Unmarshal([]byte(r.stdout), &out))
	return out
}

// applied are the commits the agent's passes applied (or rolled back to).
func (a *swarmAgent) applied() []string {
	var out []string
	for _, rec := range a.allHistory() {
		switch rec.Result {
		case reconcile.ResultApplied:
			out = append(out, rec.Commit)
		case reconcile.ResultRolledBack:
			out = append(out, rec.Commit, rec.RolledBackTo)
		}
	}
	return out
}

// lost reports whether st lists the node with that hostname as lost.
func lost(st *reconcile.SwarmStatus, hostname string) bool {
	return st != nil && slices.ContainsFunc(st.Lost, func(n reconcile.SwarmNode) bool { return n.Hostname == hostname })
}

// hostnames are the swarm's nodes' hostnames, by index (node i's engine is
// Hosts[i]), read from each node's own engine.
func (f *swarmFixture) hostnames() []string {
	f.t.Helper()
	out := make([]string, len(f.sw.Hosts))
	for i := range f.sw.Hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := f.sw.Client(f.t, i).Info(ctx, client.InfoOptions{})
		cancel()
		must(f.t, err)
		out[i] = info.Info.Name
	}
	return out
}

// TestSwarmNodeLoss (issue 12, scenario 5): with the agent on the leader and
// a stack of a three-replica web service, the engine of another node stops;
// the swarm moves its tasks to the other two; the agent's status names the
// node down; a plan and the agent's drift pass change nothing, the stack is
// healthy; the node comes back and the status no longer names it.
func TestSwarmNodeLoss(t *testing.T) {
	f := newSwarmFixture(t)
	names := f.hostnames()
	leader := f.sw.Leader(t)
	victim := 1 // neither the leader nor node 0 (the fixture's client)
	if leader == 1 {
		victim = 2
	}
	a := f.startAgentOn(leader)
	commit := a.release("stack 1", map[string]string{
		"compose.yaml": swarmStackYAML(f.images["web:a"], f.images["worker:a"], ""), "worker/config.txt": "one\n"})
	a.converged(commit, 5*time.Minute)
	web := f.project + "_web"
	victimID := f.sw.NodeID(t, victim)
	if on := swarmWaitTasks(t, f.cli, web, 3); on[victimID] == 0 {
		t.Fatalf("no web task on node %s before it stops: %v", names[victim], on)
	}
	if st := a.swarm(); st == nil || st.Role != reconcile.SwarmLeader || st.Node != names[leader] || len(st.Lost) != 0 {
		t.Fatalf("status before the node loss: %+v", st)
	}
	webVersion := f.services()["web"].Version.Index

	// StopNode first waits for the other tests on the swarm to end: the
	// figures count from when the swarm saw the node down.
	stop := time.Now()
	f.sw.StopNode(t, victim)
	down := time.Now()
	t.Logf("node %s seen down by the swarm %s after StopNode was called (waiting for other tests included)", names[victim], down.Sub(stop).Round(100*time.Millisecond))
	on := swarmWaitTasks(t, f.cli, web, 3)
	if on[victimID] != 0 {
		t.Fatalf("web tasks still on the stopped node: %v", on)
	}
	t.Logf("web's three tasks run on the other nodes %s after the node was seen down: %v", time.Since(down).Round(100*time.Millisecond), on)
	eventually(t, 2*time.Minute, "the status to report "+names[victim]+" down", func() bool { return lost(a.swarm(), names[victim]) })
	seen := time.Now()
	t.Logf("status reports the node loss %s after the node was seen down: %s", seen.Sub(down).Round(100*time.Millisecond), a.status().Swarm.Summary())
	if r := a.lockstep("status"); !strings.Contains(r.stdout, "node "+names[victim]+" down") {
		t.Fatalf("status text does not name the node down:\n%s", r.stdout)
	}

	if p := a.plan(); len(p.Actions) != 0 {
		t.Fatalf("plan with a node down: %+v", p.Actions)
	}
	// The agent's drift pass (every 10 s) that saw the node down: nothing
	// to do, the stack healthy.
	eventually(t, time.Minute, "a drift pass that saw the node down", func() bool {
		recs := a.allHistory()
		last := recs[len(recs)-1]
		return last.Trigger == reconcile.TriggerDrift && last.Start.After(seen) && lost(last.Swarm, names[victim])
	})
	recs := a.allHistory()
	if last := recs[len(recs)-1]; last.Result != reconcile.ResultNoop {
		t.Fatalf("drift pass with a node down: %+v", last)
	}
	if got := a.applied(); !slices.Equal(got, []string{commit}) {
		t.Fatalf("applied %v, want only the first release", got)
	}
	if v := f.services()["web"].Version.Index; v != webVersion {
		t.Fatalf("web was updated while the node was down (version %d -> %d)", webVersion, v)
	}
	swarmWaitTasks(t, f.cli, f.project+"_worker", 1)

	start := time.Now()
	f.sw.StartNode(t, victim)
	eventually(t, 2*time.Minute, "the status to no longer report "+names[victim], func() bool {
		st := a.swarm()
		return st != nil && !lost(st, names[victim])
	})
	t.Logf("status clear %s after the node was started: %s", time.Since(start).Round(100*time.Millisecond), a.status().Swarm.Summary())
}

// TestSwarmLeaderFailover (issue 12, scenario 6): an agent on each of the
// three managers; only the leader's applies the first release, the others
// report follower (of the leader, by name). The leader's engine stops, the
// swarm elects another; the agent on the new leader applies the next
// release. The old leader's agent, its engine back, follows. No commit is
// applied by two agents.
func TestSwarmLeaderFailover(t *testing.T) {
	f := newSwarmFixture(t)
	names := f.hostnames()
	leader := f.sw.Leader(t)
	agents := make([]*swarmAgent, len(f.sw.Hosts))
	for i := range agents {
		agents[i] = f.startAgentOn(i)
	}
	files := func(web string) map[string]string {
		return map[string]string{"compose.yaml": swarmStackYAML(f.images[web], f.images["worker:a"], ""), "worker/config.txt": "one\n"}
	}
	push := time.Now()
	c1 := f.release("stack 1", files("web:a"))
	agents[leader].converged(c1, 5*time.Minute)
	t.Logf("first release applied by the agent on %s %s after the push", names[leader], time.Since(push).Round(100*time.Millisecond))
	for i, a := range agents {
		a.converged(c1, 2*time.Minute) // a follower records what runs once its plan is empty
		st := a.swarm()
		wantRole := reconcile.SwarmFollower
		if i == leader {
			wantRole = reconcile.SwarmLeader
		}
		if st == nil || st.Node != names[i] || st.Role != wantRole || st.Leader != names[leader] {
			t.Fatalf("agent on %s: swarm status %+v, want %s with leader %s", names[i], st, wantRole, names[leader])
		}
	}
	f.checkFollowerHolds(agents, leader, names[leader])

	// StopNode waits for the other tests on the swarm to end, stops the
	// engine, and waits for the new leader to list the old one down.
	stop := time.Now()
	f.sw.StopNode(t, leader)
	down := time.Now()
	t.Logf("node %s seen down by the swarm %s after StopNode was called (waiting for other tests included)", names[leader], down.Sub(stop).Round(100*time.Millisecond))
	next := f.sw.Leader(t)
	eventually(t, time.Minute, "the new leader's agent to see itself leader", func() bool {
		st := agents[next].swarm()
		return st != nil && st.Role == reconcile.SwarmLeader
	})
	t.Logf("new leader %s; its agent's status says leader %s after the old one was seen down", names[next], time.Since(down).Round(100*time.Millisecond))

	push = time.Now()
	c2 := f.release("web b", files("web:b"))
	agents[next].converged(c2, 5*time.Minute)
	t.Logf("second release applied by the agent on the new leader %s %s after the push", names[next], time.Since(push).Round(100*time.Millisecond))
	for i, a := range agents {
		if i != leader {
			a.converged(c2, 2*time.Minute)
		}
	}

	// The old leader's engine comes back: its agent, asked for a pass at
	// once rather than at the end of its engine-error backoff, follows.
	back := time.Now()
	f.sw.StartNode(t, leader)
	old := agents[leader]
	eventually(t, 2*time.Minute, "the old leader's agent to follow "+names[next], func() bool {
		if r := old.lockstep("sync", "e2e"); r.code != 0 {
			return false
		}
		st := old.status()
		return st.Running == c2 && st.LastPass != nil && st.LastPass.Result == reconcile.ResultNoop &&
			st.Swarm != nil && st.Swarm.Role == reconcile.SwarmFollower && st.Swarm.Leader == names[next]
	})
	t.Logf("old leader %s back and following %s %s after its start", names[leader], names[next], time.Since(back).Round(100*time.Millisecond))
	f.checkAppliedOnce(agents, map[string]int{c1: leader, c2: next}, names)
}

// checkFollowerHolds: a follower that planned the release while the leader
// applied it was held, with a reason naming the leader.
func (f *swarmFixture) checkFollowerHolds(agents []*swarmAgent, leader int, leaderName string) {
	f.t.Helper()
	for i, a := range agents {
		if i == leader {
			continue
		}
		for _, rec := range a.allHistory() {
			if rec.Held == nil {
				continue
			}
			if rec.Held.Kind != reconcile.HoldFollower || !strings.Contains(rec.Held.Reason, "leader: node "+leaderName) {
				f.t.Fatalf("agent %d held: %+v", i, rec.Held)
			}
			f.t.Logf("agent on node %d held the release: %s", i, rec.Held.Reason)
		}
	}
}

// checkAppliedOnce: each commit was applied by exactly one agent, the one
// of the leader of the time (by, by commit), and by no other.
func (f *swarmFixture) checkAppliedOnce(agents []*swarmAgent, by map[string]int, names []string) {
	f.t.Helper()
	appliers := map[string][]int{}
	for i, a := range agents {
		for _, c := range a.applied() {
			appliers[c] = append(appliers[c], i)
		}
	}
	for c, i := range by {
		if !slices.Equal(appliers[c], []int{i}) {
			f.t.Errorf("commit %s applied by agents %v, want only the one on %s (%d)", c[:12], appliers[c], names[i], i)
		}
	}
	if len(appliers) != len(by) {
		f.t.Errorf("applied: %v, want only %v", appliers, by)
	}
}
