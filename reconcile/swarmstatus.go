package reconcile

import (
	"fmt"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
)

// SwarmStatus is a swarm environment's swarm as a pass saw it: the node the
// agent runs on, whether it applies there, and the nodes the swarm lost,
// so that an operator reading the status sees a node go down.
type SwarmStatus struct {
	Node string `json:"node"` // hostname of the node whose engine the agent asks
	// Role says whether the agent on Node applies (SwarmLeader) or
	// observes and reports (SwarmFollower).
	Role SwarmRole `json:"role"`
	// Leader is the leader's hostname, "" while the swarm elects one.
	Leader string `json:"leader,omitempty"`
	Nodes  int    `json:"nodes"` // how many nodes the swarm has
	// Lost are the nodes that are not ready (down, disconnected, unknown),
	// or managers that are not reachable, by hostname.
	Lost []SwarmNode `json:"lost,omitempty"`
}

// SwarmRole is what the agent does on a swarm.
type SwarmRole string

// Swarm roles.
const (
	SwarmLeader   SwarmRole = "leader"   // on the Raft leader: applies
	SwarmFollower SwarmRole = "follower" // any other node: plans and reports (HoldFollower)
)

// SwarmNode is a node of the swarm that is lost, as the swarm lists it.
type SwarmNode struct {
	Hostname     string `json:"hostname"`
	State        string `json:"state"`                  // ready, down, disconnected, unknown
	Reachability string `json:"reachability,omitempty"` // a manager's: reachable, unreachable, unknown
}

// String is the node's loss for people: "node lss-2 down", "node lss-2
// down (manager unreachable)", "node lss-2: manager unreachable".
func (n SwarmNode) String() string {
	unreachable := n.Reachability != "" && n.Reachability != "reachable"
	switch {
	case n.State == "ready":
		return fmt.Sprintf("node %s: manager %s", n.Hostname, n.Reachability)
	case unreachable:
		return fmt.Sprintf("node %s %s (manager %s)", n.Hostname, n.State, n.Reachability)
	}
	return fmt.Sprintf("node %s %s", n.Hostname, n.State)
}

// SwarmStatusOf is what o says of the swarm; nil for no stack (a host's
// project). The role is the local node's as the engine reported it
// (compose.ObservedStack.Local), the leader and the lost nodes are read
// from the node list.
func SwarmStatusOf(o *compose.ObservedStack) *SwarmStatus {
	if o == nil {
		return nil
	}
	st := &SwarmStatus{Node: o.Local.NodeID, Role: SwarmFollower, Nodes: len(o.Nodes)}
	if o.Local.Leader {
		st.Role = SwarmLeader
	}
	for _, n := range o.Nodes {
		if n.ID == o.Local.NodeID && n.Hostname != "" {
			st.Node = n.Hostname
		}
		if n.Leader {
			st.Leader = n.Hostname
		}
		lost := n.State != "ready" || (n.Role == "manager" && n.Reachability != "" && n.Reachability != "reachable")
		if lost {
			st.Lost = append(st.Lost, SwarmNode{Hostname: n.Hostname, State: n.State, Reachability: n.Reachability})
		}
	}
	return st
}

// Summary is the status in one line: "on lss-1, leader (applies), 3
// nodes", "on lss-2, follower of lss-1, 3 nodes; node lss-3 down (manager
// unreachable)".
func (s *SwarmStatus) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "on %s, ", s.Node)
	switch {
	case s.Role == SwarmLeader:
		b.WriteString("leader (applies)")
	case s.Leader != "":
		fmt.Fprintf(&b, "follower of %s", s.Leader)
	default:
		b.WriteString("follower (no leader known: the swarm may be electing one)")
	}
	fmt.Fprintf(&b, ", %d nodes", s.Nodes)
	for i, n := range s.Lost {
		sep := ", "
		if i == 0 {
			sep = "; "
		}
		b.WriteString(sep + n.String())
	}
	return b.String()
}
