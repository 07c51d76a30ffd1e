package reconcile

import (
	"reflect"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestSwarmStatusOf(t *testing.T) {
	nodes := func(leader string, down ...string) []compose.ObservedNode {
		var out []compose.ObservedNode
		for _, h := range []string{"lss-1", "lss-2", "lss-3"} {
			n := compose.ObservedNode{ID: "id-" + h, Hostname: h, Role: "manager", State: "ready", Reachability: "reachable", Leader: h == leader}
			for _, d := range down {
				if d == h {
					n.State, n.Reachability = "down", "unreachable"
				}
			}
			out = append(out, n)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		o       *compose.ObservedStack
		want    *SwarmStatus
		summary string
	}{
		{"a host's project", nil, nil, ""},
		{"the leader, all well",
			&compose.ObservedStack{Local: compose.SwarmInfo{NodeID: "id-lss-1", Leader: true}, Nodes: nodes("lss-1")},
			&SwarmStatus{Node: "lss-1", Role: SwarmLeader, Leader: "lss-1", Nodes: 3},
			"on lss-1, leader (applies), 3 nodes"},
		{"a follower, a node down",
			&compose.ObservedStack{Local: compose.SwarmInfo{NodeID: "id-lss-2"}, Nodes: nodes("lss-1", "lss-3")},
			&SwarmStatus{Node: "lss-2", Role: SwarmFollower, Leader: "lss-1", Nodes: 3,
				Lost: []SwarmNode{{Hostname: "lss-3", State: "down", Reachability: "unreachable"}}},
			"on lss-2, follower of lss-1, 3 nodes; node lss-3 down (manager unreachable)"},
		{"mid-election, the leader lost",
			&compose.ObservedStack{Local: compose.SwarmInfo{NodeID: "id-lss-2"}, Nodes: nodes("", "lss-1")},
			&SwarmStatus{Node: "lss-2", Role: SwarmFollower, Nodes: 3,
				Lost: []SwarmNode{{Hostname: "lss-1", State: "down", Reachability: "unreachable"}}},
			"on lss-2, follower (no leader known: the swarm may be electing one), 3 nodes; node lss-1 down (manager unreachable)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SwarmStatusOf(tc.o)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("SwarmStatusOf = %+v, want %+v", got, tc.want)
			}
			if got != nil && got.Summary() != tc.summary {
				t.Errorf("Summary = %q, want %q", got.Summary(), tc.summary)
			}
		})
	}
}

func TestSwarmNodeString(t *testing.T) {
	for n, want := range map[SwarmNode]string{
		{Hostname: "w1", State: "down"}:                               "node w1 down",
		{Hostname: "m2", State: "down", Reachability: "unreachable"}:  "node m2 down (manager unreachable)",
		{Hostname: "m2", State: "ready", Reachability: "unreachable"}: "node m2: manager unreachable",
		{Hostname: "w2", State: "disconnected"}:                       "node w2 disconnected",
	} {
		if got := n.String(); got != want {
			t.Errorf("%+v: %q, want %q", n, got, want)
		}
	}
}
