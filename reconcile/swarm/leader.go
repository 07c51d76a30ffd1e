package swarm

import (
	"context"
	"fmt"

	"github.com/lockstep-gitops/lockstep/compose"
)

// CanApply reports whether the agent on this node may apply: only the
// swarm's Raft leader does, so that two managers never apply the same
// pass. The others observe and report; reason says why not, for status.
// An error is an engine that cannot say (not a "no").
func CanApply(ctx context.Context, eng Engine) (bool, string, error) {
	info, err := eng.Info(ctx)
	if err != nil {
		return false, "", fmt.Errorf("read this node's place in the swarm: %w", err)
	}
	return canApply(info)
}

func canApply(info Info) (bool, string, error) {
	switch {
	case info.State != "active":
		state := info.State
		if state == "" {
			state = "inactive"
		}
		return false, fmt.Sprintf("this node is not an active member of a swarm (state %s)", state), nil
	case !info.Manager:
		return false, "this node is a worker: only the swarm's leader applies (run the agent on the managers)", nil
	case !info.Leader:
		return false, fmt.Sprintf("this node (%s) is a manager but not the leader: the agent on the leader applies", info.NodeID), nil
	}
	return true, "", nil
}

// NotLeaderReason is the reason CanApply gives on a manager that is not
// the leader, naming the leader from the swarm's nodes when one is known
// ("this node is a manager but not the leader (leader: node m2)").
func NotLeaderReason(nodes []compose.ObservedNode) string {
	for _, n := range nodes {
		if n.Leader {
			return fmt.Sprintf("this node is a manager but not the leader (leader: node %s)", n.Hostname)
		}
	}
	return "this node is a manager but not the leader (no leader known: the swarm may be electing one)"
}
