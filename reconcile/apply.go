package reconcile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
)

// ApplyOptions tune Apply. The zero value is usable: every duration has a
// default.
type ApplyOptions struct {
	Log zerolog.Logger
	// DependencyTimeout bounds waiting for a depends_on condition, and for
	// the new container of a start-first recreate to become ready (default 2m).
	DependencyTimeout time.Duration
	// PollInterval between condition checks (default 100ms); tests shorten it.
	PollInterval time.Duration
	// CallTimeout bounds each engine call other than a pull (default 2m).
	// A stop gets the container's stop timeout on top.
	CallTimeout time.Duration
	// PullTimeout bounds one image pull (default 15m).
	PullTimeout time.Duration
}

func (o ApplyOptions) withDefaults() ApplyOptions {
	if o.DependencyTimeout <= 0 {
		o.DependencyTimeout = 2 * time.Minute
	}
	if o.PollInterval <= 0 {
		// A dependent waits for one container at a time, on the critical
		// path of a deploy: at 500ms a healthcheck that passed waited
		// 250ms on average per level of depends_on before the next
		// service was created. One inspect per 100ms costs the engine
		// nothing.
		o.PollInterval = 100 * time.Millisecond
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Minute
	}
	if o.PullTimeout <= 0 {
		o.PullTimeout = 15 * time.Minute
	}
	return o
}

// PreconditionError is returned by Apply, before any engine call, when the
// host lacks something the revision needs and lockstep must not create: an
// external network or volume, or an image with pull_policy: never. A person
// has to act; retrying the same revision cannot succeed.
type PreconditionError struct {
	Problems []string
}

func (e *PreconditionError) Error() string {
	return "cannot apply: " + strings.Join(e.Problems, "; ")
}

// Permanent is true: the host lacks something lockstep must not create, so
// retrying the same revision fails the same way until a person acts.
func (e *PreconditionError) Permanent() bool { return true }

// PortInUseError is returned by Apply, before any engine call, when a
// container the plan starts would publish a host port that something else
// holds (see portProblems). It is not permanent: the port may be freed
// without the revision changing, and a retry touches nothing until it is.
type PortInUseError struct {
	Problems []string
}

func (e *PortInUseError) Error() string {
	return "cannot apply: " + strings.Join(e.Problems, "; ")
}

// DependencyError says a depends_on condition failed or timed out: the
// dependency exited with the wrong code, became unhealthy, has no
// healthcheck, or did not get there in time.
type DependencyError struct {
	Service    string // the dependent service
	Dependency string // the service depended on
	Container  string // the dependency's container, when there is one
	Condition  string // compose.ConditionStarted, ConditionHealthy or ConditionCompleted
	Err        error  // what went wrong; wraps ctx.Err() when the wait was cancelled
}

func (e *DependencyError) Error() string {
	c := ""
	if e.Container != "" {
		c = " (" + e.Container + ")"
	}
	return fmt.Sprintf("service %s: dependency %s%s, condition %s: %v", e.Service, e.Dependency, c, e.Condition, e.Err)
}

func (e *DependencyError) Unwrap() error { return e.Err }

// Apply carries out plan for desired. observed is the snapshot the plan was
// built from: apply needs the IDs of unchanged containers to wait on their
// conditions.
//
// It checks the preconditions first (external resources, images, host
// ports held by something else) and pulls every image before it changes
// anything else, so a missing external network, a taken port or a failed
// pull leaves every container as it was. It stops at the first error and returns
// it with what was done so far; the next pass re-plans from the world. An
// empty plan makes no engine call at all.
func Apply(ctx context.Context, eng Engine, desired *compose.Project, observed compose.Observed, plan *Plan, opts ApplyOptions) (*ApplyResult, error) {
	res := &ApplyResult{Done: []Action{}}
	if plan == nil || plan.Empty() {
		return res, nil
	}
	if problems := preconditionProblems(desired, observed); len(problems) > 0 {
		return res, &PreconditionError{Problems: problems}
	}
	if problems := portProblems(desired, observed, plan.Actions); len(problems) > 0 {
		return res, &PortInUseError{Problems: problems}
	}
	a := &applier{
		eng:     eng,
		desired: desired,
		opts:    opts.withDefaults(),
		res:     res,
		current: map[string][]liveContainer{},
		waited:  map[string]bool{},
	}
	for _, c := range observed.Containers {
		a.current[c.Service] = append(a.current[c.Service], liveContainer{id: c.ID, name: c.Name, number: c.Number})
	}

	// Pulls first whatever order the plan came in (it may have been read
	// back from JSON): a failed pull must find nothing else touched.
	for _, act := range plan.Actions {
		if act.Kind == ActPull {
			if err := a.do(ctx, act); err != nil {
				return res, err
			}
		}
	}
	for _, act := range plan.Actions {
		if act.Kind != ActPull {
			if err := a.do(ctx, act); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// liveContainer is a container of the project as apply currently knows it:
// observed, minus what it removed, plus what it created.
type liveContainer struct {
	id, name string
	number   int
}

type applier struct {
	eng     Engine
	desired *compose.Project
	opts    ApplyOptions
	res     *ApplyResult
	current map[string][]liveContainer // by service
	waited  map[string]bool            // services whose dependencies were waited on
}

func (a *applier) do(ctx context.Context, act Action) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", describe(act), err)
	}
	ev := a.opts.Log.Info().Str("action", string(act.Kind)).Strs("reasons", act.Reasons)
	if act.Service != "" {
		ev = ev.Str("service", act.Service)
	}
	if act.Container != "" {
		ev = ev.Str("container", act.Container)
	}
	if act.Image != "" {
		ev = ev.Str("image", act.Image)
	}
	if act.Network != "" {
		ev = ev.Str("network", act.Network)
	}
	if act.Volume != "" {
		ev = ev.Str("volume", act.Volume)
	}
	if act.Order != "" {
		ev = ev.Str("order", act.Order)
	}
	if act.Drift {
		ev = ev.Bool("drift", true)
	}
	if act.Adopt {
		ev = ev.Bool("adopt", true)
	}
	ev.Msg("apply")

	var err error
	switch act.Kind {
	case ActPull:
		err = a.pull(ctx, act)
	case ActCreateNetwork:
		err = a.createNetwork(ctx, act)
	case ActCreateVolume:
		err = a.createVolume(ctx, act)
	case ActRemove:
		err = a.remove(ctx, act)
	case ActRemoveNetwork:
		err = a.removeNetwork(ctx, act)
	case ActRemoveVolume:
		err = a.removeVolume(ctx, act)
	case ActCreate, ActRecreate, ActStart, ActRestart:
		err = a.serviceAction(ctx, act)
	case ActReconnect:
		err = a.reconnect(ctx, act)
	case ActAdopt:
		// Nothing to change on the engine: the pass records the adoption.
	default:
		err = fmt.Errorf("unknown action kind %q (plan from a newer lockstep?)", act.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", describe(act), err)
	}
	a.res.Done = append(a.res.Done, act)
	switch act.Kind {
	case ActPull:
		a.res.Pulled++
	case ActCreate:
		a.res.Created++
	case ActRecreate:
		a.res.Recreated++
	case ActStart:
		a.res.Started++
	case ActRestart:
		a.res.Restarted++
	case ActRemove:
		a.res.Removed++
	case ActReconnect:
		a.res.Reconnected++
	case ActAdopt:
		a.res.Adopted++
	}
	return nil
}

// describe names an action in an error message.
func describe(act Action) string {
	switch act.Kind {
	case ActPull:
		return "pull " + act.Image
	case ActCreateNetwork:
		return "create network " + act.Network
	case ActCreateVolume:
		return "create volume " + act.Volume
	case ActRemoveNetwork:
		return "remove network " + act.Network
	case ActRemoveVolume:
		return "remove volume " + act.Volume
	case ActAdopt:
		if act.Container == "" {
			return "adopt " + act.Network + act.Volume
		}
	case ActRemove:
		if act.Service != "" {
			return fmt.Sprintf("remove %s (service %s)", act.Container, act.Service)
		}
		return "remove " + act.Container
	}
	return fmt.Sprintf("%s %s (%s)", act.Kind, act.Service, act.Container)
}

func (a *applier) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.opts.CallTimeout)
}

func (a *applier) pull(ctx context.Context, act Action) error {
	cctx, cancel := context.WithTimeout(ctx, a.opts.PullTimeout)
	defer cancel()
	id, err := a.eng.Pull(cctx, act.Image)
	if err != nil {
		return err
	}
	a.opts.Log.Info().Str("image", act.Image).Str("image_id", shortID(id)).Msg("pulled")
	return nil
}

func (a *applier) createNetwork(ctx context.Context, act Action) error {
	for _, n := range a.desired.Networks {
		if n.Name == act.Network {
			cctx, cancel := a.call(ctx)
			defer cancel()
			return a.eng.CreateNetwork(cctx, n)
		}
	}
	return fmt.Errorf("the compose files declare no network named %s (plan and project do not match: re-plan)", act.Network)
}

func (a *applier) createVolume(ctx context.Context, act Action) error {
	for _, v := range a.desired.Volumes {
		if v.Name == act.Volume {
			cctx, cancel := a.call(ctx)
			defer cancel()
			return a.eng.CreateVolume(cctx, v)
		}
	}
	return fmt.Errorf("the compose files declare no volume named %s (plan and project do not match: re-plan)", act.Volume)
}

// stopTimeout is the service's stop_grace_period, or nil (the container's
// own) for a container whose service is gone.
func stopTimeout(svc *compose.Service) *time.Duration {
	if svc == nil || svc.Config == nil || svc.Config.StopTimeout == nil {
		return nil
	}
	d := time.Duration(*svc.Config.StopTimeout) * time.Second
	return &d
}

func (a *applier) stop(ctx context.Context, id string, timeout *time.Duration) error {
	limit := a.opts.CallTimeout
	if timeout != nil {
		limit += *timeout
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := a.eng.StopContainer(cctx, id, timeout); err != nil {
		return fmt.Errorf("stop container %s: %w", shortID(id), err)
	}
	return nil
}

func (a *applier) removeContainer(ctx context.Context, id string) error {
	cctx, cancel := a.call(ctx)
	defer cancel()
	if err := a.eng.RemoveContainer(cctx, id); err != nil {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

func (a *applier) start(ctx context.Context, id string) error {
	cctx, cancel := a.call(ctx)
	defer cancel()
	if err := a.eng.StartContainer(cctx, id); err != nil {
		return fmt.Errorf("start container %s: %w", shortID(id), err)
	}
	return nil
}

func (a *applier) rename(ctx context.Context, id, name string) error {
	cctx, cancel := a.call(ctx)
	defer cancel()
	if err := a.eng.RenameContainer(cctx, id, name); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", shortID(id), name, err)
	}
	return nil
}

func (a *applier) create(ctx context.Context, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	cctx, cancel := a.call(ctx)
	defer cancel()
	id, err := a.eng.CreateContainer(cctx, a.desired, svc, number, name, inheritFrom)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	return id, nil
}

func (a *applier) remove(ctx context.Context, act Action) error {
	if err := a.stop(ctx, act.ContainerID, stopTimeout(a.desired.Service(act.Service))); err != nil {
		return err
	}
	if err := a.removeContainer(ctx, act.ContainerID); err != nil {
		return err
	}
	a.forget(act.Service, act.ContainerID)
	return nil
}

func (a *applier) forget(service, id string) {
	cs := a.current[service]
	for i, c := range cs {
		if c.id == id {
			a.current[service] = append(cs[:i:i], cs[i+1:]...)
			return
		}
	}
}
