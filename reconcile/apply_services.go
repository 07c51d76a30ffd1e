package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockstep-gitops/lockstep/compose"
)

func (a *applier) serviceAction(ctx context.Context, act Action) error {
	svc := a.desired.Service(act.Service)
	if svc == nil {
		return fmt.Errorf("the compose files declare no service %s (plan and project do not match: re-plan)", act.Service)
	}
	if !a.waited[svc.Name] {
		if err := a.waitDependencies(ctx, svc); err != nil {
			return err
		}
		a.waited[svc.Name] = true
	}
	switch act.Kind {
	case ActCreate:
		id, err := a.create(ctx, svc, act.Number, act.Container, "")
		if err != nil {
			return err
		}
		a.current[svc.Name] = append(a.current[svc.Name], liveContainer{id: id, name: act.Container, number: act.Number})
		return a.start(ctx, id)
	case ActStart:
		return a.start(ctx, act.ContainerID)
	case ActRestart:
		if err := a.stop(ctx, act.ContainerID, stopTimeout(svc)); err != nil {
			return err
		}
		return a.start(ctx, act.ContainerID)
	case ActRecreate:
		if act.Order == compose.StartFirst {
			return a.recreateStartFirst(ctx, svc, act)
		}
		return a.recreateStopFirst(ctx, svc, act)
	}
	return nil
}

// temporaryName is what the new container of a recreate is called until the
// old one is gone, the way compose names it: "<old id 12>_<name>".
func temporaryName(oldID, name string) string {
	if len(oldID) > 12 {
		oldID = oldID[:12]
	}
	return oldID + "_" + name
}

// recreateStopFirst replaces a container the way compose does: create the
// new one aside (so a bad config fails before anything stops), stop and
// remove the old one, give the new one its name and start it.
func (a *applier) recreateStopFirst(ctx context.Context, svc *compose.Service, act Action) error {
	newID, err := a.create(ctx, svc, act.Number, temporaryName(act.ContainerID, act.Container), act.ContainerID)
	if err != nil {
		return err
	}
	if err := a.stop(ctx, act.ContainerID, stopTimeout(svc)); err != nil {
		// The old container still runs: drop the unused new one so the next
		// pass finds the replica as it was.
		return a.discard(ctx, newID, err)
	}
	if err := a.removeContainer(ctx, act.ContainerID); err != nil {
		return err
	}
	a.forget(svc.Name, act.ContainerID)
	a.current[svc.Name] = append(a.current[svc.Name], liveContainer{id: newID, name: act.Container, number: act.Number})
	if err := a.rename(ctx, newID, act.Container); err != nil {
		return err
	}
	return a.start(ctx, newID)
}

// recreateStartFirst starts the new container beside the old one and only
// stops the old one once the new one is healthy (or running, without a
// healthcheck). If the new one does not get there, it is removed and the old
// one keeps serving.
func (a *applier) recreateStartFirst(ctx context.Context, svc *compose.Service, act Action) error {
	tmp := temporaryName(act.ContainerID, act.Container)
	newID, err := a.create(ctx, svc, act.Number, tmp, act.ContainerID)
	if err != nil {
		return err
	}
	if err := a.start(ctx, newID); err != nil {
		return a.discard(ctx, newID, err)
	}
	want := conditionRunning
	if svc.Healthcheck {
		want = compose.ConditionHealthy
	}
	a.opts.Log.Info().Str("service", svc.Name).Str("container", tmp).Str("condition", want).Msg("waiting for the new container before stopping the old one")
	if _, err := a.waitFor(ctx, newID, want, svc.Healthcheck); err != nil {
		return a.discard(ctx, newID, fmt.Errorf("new container %s: %w; the old container keeps running", tmp, err))
	}
	if err := a.stop(ctx, act.ContainerID, stopTimeout(svc)); err != nil {
		return err
	}
	if err := a.removeContainer(ctx, act.ContainerID); err != nil {
		return err
	}
	a.forget(svc.Name, act.ContainerID)
	a.current[svc.Name] = append(a.current[svc.Name], liveContainer{id: newID, name: act.Container, number: act.Number})
	return a.rename(ctx, newID, act.Container)
}

// discard stops and removes a new container that will not replace the old
// one, even when ctx is already cancelled, and returns cause with whatever
// went wrong doing so.
func (a *applier) discard(ctx context.Context, id string, cause error) error {
	ctx = context.WithoutCancel(ctx)
	if err := a.stop(ctx, id, nil); err != nil {
		return errors.Join(cause, fmt.Errorf("clean up new container: %w", err))
	}
	if err := a.removeContainer(ctx, id); err != nil {
		return errors.Join(cause, fmt.Errorf("clean up new container: %w", err))
	}
	return cause
}
