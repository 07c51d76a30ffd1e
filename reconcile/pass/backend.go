package pass

import (
	"context"
	"errors"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// errNoSwarm is the pass of a swarm environment on a pipeline built
// without a swarm backend.
var errNoSwarm = errors.New(`backend = "swarm", but this pipeline has no swarm backend`)

// noSwarm is the backend of a swarm environment when the pipeline has no
// Swarm: every call fails, so nothing is touched.
type noSwarm struct{}

func (noSwarm) Observe(context.Context, *compose.Project) (compose.Observed, error) {
	return compose.Observed{}, errNoSwarm
}

func (noSwarm) Apply(context.Context, *compose.Project, compose.Observed, *reconcile.Plan, reconcile.GateOptions) (*reconcile.ApplyResult, error) {
	return nil, errNoSwarm
}

func (noSwarm) Verify(context.Context, *compose.Project, []reconcile.Action, reconcile.GateOptions) error {
	return errNoSwarm
}

func (noSwarm) Healthy(*compose.Project, compose.Observed) bool { return false }

func (noSwarm) Environments(context.Context) (map[string]string, error) { return nil, nil }
