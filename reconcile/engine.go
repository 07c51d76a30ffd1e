package reconcile

import (
	"context"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Engine is what apply needs from the Docker engine. It is declared here,
// by its consumer; compose/engine implements it against the real engine and
// tests implement it with a recording fake.
//
// Every method takes a context that carries the deadline of the step; no
// method retries on its own.
type Engine interface {
	// Observe reads back what the engine has for the desired project p: the
	// containers, networks and volumes carrying its project label, the
	// networks and volumes p names (external or not) even without the label,
	// which of the images p uses are present locally, and what holds the
	// fixed host ports p publishes (a running container, or a process on
	// the host when the engine is local).
	Observe(ctx context.Context, p *compose.Project) (compose.Observed, error)

	// Pull pulls ref from its registry, with credentials from the Docker
	// config keychain. It returns the local image ID afterwards.
	Pull(ctx context.Context, ref string) (string, error)

	CreateNetwork(ctx context.Context, n compose.Network) error
	CreateVolume(ctx context.Context, v compose.Volume) error

	// CreateContainer creates (does not start) replica number of svc under
	// name. When inheritFrom is a container ID, the anonymous volumes that
	// container has at the mount points svc still declares as anonymous are
	// reused, as compose does on recreate. It returns the new container's ID.
	CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error)
	StartContainer(ctx context.Context, id string) error
	// StopContainer stops id, giving it timeout to exit after its stop signal
	// before it is killed; nil means the container's own stop timeout.
	StopContainer(ctx context.Context, id string, timeout *time.Duration) error
	// RemoveContainer removes a stopped container. It never removes volumes,
	// named or anonymous.
	RemoveContainer(ctx context.Context, id string) error
	RenameContainer(ctx context.Context, id, name string) error

	// RemoveNetwork and RemoveVolume remove a project's network or named
	// volume by name. Only a teardown (reconcile.TeardownPlan) asks for
	// them: a normal pass never removes either.
	RemoveNetwork(ctx context.Context, name string) error
	RemoveVolume(ctx context.Context, name string) error
	// Environments lists the lockstep environments that have containers
	// on the engine (label lockstep.environment), each with its compose
	// project: what finds a review environment the state dir no longer
	// knows.
	Environments(ctx context.Context) (map[string]string, error)

	// ConnectNetwork attaches container id to network with the endpoint
	// settings svc declares for that network (aliases, static addresses,
	// driver options), the ones a create would give it. A running
	// container stays running.
	ConnectNetwork(ctx context.Context, svc *compose.Service, id, network string) error
	// DisconnectNetwork detaches container id from network, also when the
	// endpoint is stale (the network was removed since).
	DisconnectNetwork(ctx context.Context, id, network string) error

	// InspectContainer returns the current state of one container, to wait
	// for depends_on conditions (running, healthy, exited with code 0).
	InspectContainer(ctx context.Context, id string) (compose.Container, error)

	// Logs returns the last tail lines a container wrote (stdout and
	// stderr, interleaved as the engine stored them), without the
	// trailing newline: what the health gate shows of a failing container.
	// id may be a container ID or name.
	Logs(ctx context.Context, id string, tail int) ([]string, error)
}
