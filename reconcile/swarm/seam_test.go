package swarm_test

import (
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/swarm"
)

// The pass drives a swarm through the same seam as a host, and asks it
// who plans and who applies.
var (
	_ pass.Backend = (*swarm.Backend)(nil)
	_ pass.Planner = (*swarm.Backend)(nil)
	_ pass.Leader  = (*swarm.Backend)(nil)
)
