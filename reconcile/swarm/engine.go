package swarm

import (
	"context"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Engine is the swarm as lockstep changes it: one manager's Engine API.
type Engine interface {
	// Info is the local node's place in the swarm.
	Info(ctx context.Context) (Info, error)
	// ObserveStack reads every object with the stack's namespace label, the
	// external networks/configs/secrets desired names (looked up by name),
	// each service's tasks, and the swarm's nodes.
	ObserveStack(ctx context.Context, desired *compose.Stack) (compose.ObservedStack, error)
	// ResolveImage returns ref pinned to its registry digest
	// ("repo:tag@sha256:..."), as docker stack deploy does (distribution
	// inspect on the manager, with the engine's registry credentials).
	ResolveImage(ctx context.Context, ref string) (string, error)
	CreateNetwork(ctx context.Context, n compose.StackNetwork) (id string, err error)
	RemoveNetwork(ctx context.Context, id string) error
	CreateConfig(ctx context.Context, o compose.StackObject) (id string, err error)
	RemoveConfig(ctx context.Context, id string) error
	CreateSecret(ctx context.Context, o compose.StackObject) (id string, err error)
	RemoveSecret(ctx context.Context, id string) error
	CreateService(ctx context.Context, spec swarmapi.ServiceSpec) (id string, err error)
	// UpdateService sends spec at version (the swarm refuses a stale one).
	UpdateService(ctx context.Context, id string, version uint64, spec swarmapi.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
	// Service re-reads one service with its tasks (the gate polls it).
	Service(ctx context.Context, id string) (compose.ObservedService, error)
}

// Info is the local node's place in the swarm.
type Info = compose.SwarmInfo
