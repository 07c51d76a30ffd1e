// Package engine owns every call lockstep makes to the Docker Engine API:
// reading a project's containers, networks, volumes and images back by
// their compose labels, pulling images with the Docker config's
// credentials, and creating, starting, stopping, renaming and removing
// what apply decides; and, for a project deployed as a swarm stack, the
// calls to a swarm manager (Swarm): the stack's services, tasks, networks,
// configs and secrets read by its namespace label, the nodes, image
// digests, and the objects created and removed as the plan says. To say
// what holds the host ports a project publishes, Observe also tries to
// bind, for an instant, those no container publishes, when the engine is
// local.
//
// It knows nothing of git, releases or plans, and decides nothing: it does
// exactly the one call it is asked for, never retries on its own, and
// Engine removes a network or a named volume only when a teardown asks
// (RemoveNetwork, RemoveVolume), never an anonymous volume. OnDemand
// connects at the first call that needs the engine, and again at the next
// call after a failed connect. A call logs through the logger its context
// carries (a pass's), when there is one, else through the Engine's (or
// Swarm's) own.
package engine

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

var _ reconcile.Engine = (*Engine)(nil)

// Engine is reconcile.Engine on a real Docker engine.
type Engine struct {
	cli      *client.Client
	log      zerolog.Logger
	keychain authn.Keychain // where Pull finds registry credentials
	// probe tries host ports Observe finds no container publishing; nil
	// for a remote engine, whose ports are not this host's.
	probe portProbe
	// facts remembers what Observe learnt by inspecting running containers.
	facts *factCache
}

// RememberFactsIn keeps what Observe learns by inspecting running
// containers in dir (one file per project) as well as in memory, so that
// the next process observing the project (the next `lockstep apply`) need
// not inspect them again. Call it before the first Observe.
func (e *Engine) RememberFactsIn(dir string) { e.facts.dir = dir }

// New returns an Engine on cli. Registry credentials come from the Docker
// config keychain (~/.docker/config.json, DOCKER_CONFIG, credential
// helpers), read at each pull so a `docker login` needs no restart.
func New(cli *client.Client, log zerolog.Logger) *Engine {
	e := &Engine{cli: cli, log: log, keychain: authn.DefaultKeychain, facts: newFactCache()}
	if cli != nil {
		e.probe = localProbe(cli.DaemonHost())
	}
	return e
}

// Connect returns a client for the engine at host ("" means DOCKER_HOST,
// or the default socket), with the API version negotiated down to what the
// daemon speaks. It pings the daemon, so an unreachable engine is reported
// here, once, in words an operator can act on.
func Connect(ctx context.Context, host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker engine address %s: %w", redactHost(host), err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("cannot reach the Docker engine at %s: is dockerd running and can this user open the socket? (%w)", redactHost(cli.DaemonHost()), err)
	}
	return cli, nil
}

// redactHost is host for a message, credentials removed.
func redactHost(host string) string {
	if host == "" {
		return "the default address"
	}
	return gitsource.RedactURL(host)
}

// call logs, at debug level, each mutating call as it begins: what an
// operator reads when an apply stops half-way ("the last call was stop
// 1a2b3c"), and the marks the crash-safety test kills the agent at.
func (e *Engine) call(ctx context.Context, op, target string) {
	e.logger(ctx).Debug().Str("engine_call", op).Str("target", shortID(target)).Msg("engine")
}

// logger is what a call logs through: the logger ctx carries when the
// caller attached one (a pass's, so each line names its environment,
// commit and pass id), else the Engine's own.
func (e *Engine) logger(ctx context.Context) *zerolog.Logger {
	if l, ok := attachedLogger(ctx); ok {
		return l
	}
	return &e.log
}

// attachedLogger returns the logger attached to ctx by Logger.WithContext.
// zerolog.Ctx alone cannot tell: without one it returns
// zerolog.DefaultContextLogger or a disabled logger, the very pointer it
// returns for an empty context, while WithContext attaches a copy of its
// own, never that pointer.
func attachedLogger(ctx context.Context) (*zerolog.Logger, bool) {
	l := zerolog.Ctx(ctx)
	return l, l != zerolog.Ctx(context.Background())
}

// StartContainer starts a created or stopped container.
func (e *Engine) StartContainer(ctx context.Context, id string) error {
	e.call(ctx, "start", id)
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", shortID(id), err)
	}
	return nil
}

// StopContainer stops id; timeout is rounded up to whole seconds, the
// engine's unit, so a grace period is never shortened.
func (e *Engine) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	e.call(ctx, "stop", id)
	opts := client.ContainerStopOptions{}
	if timeout != nil {
		secs := int(math.Ceil(max(*timeout, 0).Seconds()))
		opts.Timeout = &secs
	}
	if _, err := e.cli.ContainerStop(ctx, id, opts); err != nil {
		return fmt.Errorf("stop container %s: %w", shortID(id), err)
	}
	return nil
}

// RemoveContainer removes a stopped container and none of its volumes: an
// anonymous volume may be about to be inherited, or hold data nobody has
// backed up. A missing container is an error callers can detect with
// cerrdefs.IsNotFound.
func (e *Engine) RemoveContainer(ctx context.Context, id string) error {
	e.call(ctx, "remove", id)
	_, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{RemoveVolumes: false, Force: false})
	if err != nil {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

// RenameContainer renames id to name.
func (e *Engine) RenameContainer(ctx context.Context, id, name string) error {
	e.call(ctx, "rename", id)
	if _, err := e.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", shortID(id), name, err)
	}
	return nil
}

// InspectContainer returns the current state of one container.
func (e *Engine) InspectContainer(ctx context.Context, id string) (compose.Container, error) {
	res, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return compose.Container{}, fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	return fromInspect(res.Container), nil
}

// shortID keeps errors readable; names pass through unchanged.
func shortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
