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

// asideName is what the old container of a recreate is called while its
// replacement takes over its name: "<old id 12>_previous_<name>". It is
// kept, stopped, until the new one has started, so it can be put back.
func asideName(oldID, name string) string {
	if len(oldID) > 12 {
		oldID = oldID[:12]
	}
	return oldID + "_previous_" + name
}

// previous is the old container of a recreate while its replacement takes
// over: how far it was moved decides what putting it back takes.
type previous struct {
	id, name string // name: the replica's name, which it gets back
	stopped  bool
	aside    bool // renamed to asideName
}

// recreateStopFirst replaces a container so that a failure costs nothing:
// the new one is created aside (a bad config fails before anything stops),
// the old one is stopped and renamed aside, the new one takes the name and
// starts, and only then is the old one removed. If the new one cannot take
// over, the old one is put back under its name and started again.
func (a *applier) recreateStopFirst(ctx context.Context, svc *compose.Service, act Action) error {
	newID, err := a.create(ctx, svc, act.Number, temporaryName(act.ContainerID, act.Container), act.ContainerID)
	if err != nil {
		return err
	}
	old := &previous{id: act.ContainerID, name: act.Container}
	if err := a.stop(ctx, old.id, stopTimeout(svc)); err != nil {
		// The old container still runs: drop the unused new one so the next
		// pass finds the replica as it was.
		return a.discard(ctx, newID, err)
	}
	old.stopped = true
	if err := a.handOver(ctx, old, newID); err != nil {
		return a.putBack(ctx, svc, old, newID, "could not hand the name over", err)
	}
	if err := a.start(ctx, newID); err != nil {
		return a.putBack(ctx, svc, old, newID, "new container could not start", err)
	}
	a.replaced(ctx, svc, act, old, newID)
	return nil
}

// handOver renames old aside and gives its name to the new container.
// old.aside says how far it got.
func (a *applier) handOver(ctx context.Context, old *previous, newID string) error {
	if err := a.rename(ctx, old.id, asideName(old.id, old.name)); err != nil {
		return err
	}
	old.aside = true
	return a.rename(ctx, newID, old.name)
}

// replaced ends a recreate whose new container took over: the old one is
// removed. A failed removal leaves a stopped container under its aside
// name, which the next plan removes as a duplicate; the replica itself is
// replaced, so it is a warning, not a failure.
func (a *applier) replaced(ctx context.Context, svc *compose.Service, act Action, old *previous, newID string) {
	a.forget(svc.Name, old.id)
	a.current[svc.Name] = append(a.current[svc.Name], liveContainer{id: newID, name: act.Container, number: act.Number})
	if err := a.removeContainer(context.WithoutCancel(ctx), old.id); err != nil {
		a.opts.Log.Warn().Err(err).Str("service", svc.Name).Str("container", asideName(old.id, old.name)).
			Msg("the new container runs, but the previous one could not be removed: it is left stopped and the next pass removes it")
	}
}

// recreateStartFirst starts the new container beside the old one and only
// stops the old one once the new one is healthy (or running, without a
// healthcheck). If the new one does not get there, it is removed and the old
// one keeps serving; if the hand-over fails after the old one stopped, the
// old one is put back.
func (a *applier) recreateStartFirst(ctx context.Context, svc *compose.Service, act Action) error {
	tmp := temporaryName(act.ContainerID, act.Container)
	newID, err := a.create(ctx, svc, act.Number, tmp, act.ContainerID)
	if err != nil {
		return err
	}
	if err := a.start(ctx, newID); err != nil {
		return a.discard(ctx, newID, fmt.Errorf("new container could not start: %w; the old container keeps running", err))
	}
	want := conditionRunning
	if svc.Healthcheck {
		want = compose.ConditionHealthy
	}
	a.opts.Log.Info().Str("service", svc.Name).Str("container", tmp).Str("condition", want).Msg("waiting for the new container before stopping the old one")
	if _, err := a.waitFor(ctx, newID, want, svc.Healthcheck); err != nil {
		return a.discard(ctx, newID, fmt.Errorf("new container %s: %w; the old container keeps running", tmp, err))
	}
	old := &previous{id: act.ContainerID, name: act.Container}
	if err := a.stop(ctx, old.id, stopTimeout(svc)); err != nil {
		return a.discard(ctx, newID, fmt.Errorf("%w; the old container keeps running", err))
	}
	old.stopped = true
	if err := a.handOver(ctx, old, newID); err != nil {
		return a.putBack(ctx, svc, old, newID, "could not hand the name over", err)
	}
	a.replaced(ctx, svc, act, old, newID)
	return nil
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

// putBack undoes a recreate whose new container could not take over, even
// when ctx is already cancelled: the new container is removed, the old one
// gets its name back and is started again. It returns a *RecreateError that says what happened and
// what, if anything, could not be restored.
func (a *applier) putBack(ctx context.Context, svc *compose.Service, old *previous, newID, what string, cause error) error {
	ctx = context.WithoutCancel(ctx)
	re := &RecreateError{Service: svc.Name, Container: old.name, What: what, Err: cause}
	var problems []error
	if err := a.stop(ctx, newID, nil); err != nil {
		problems = append(problems, fmt.Errorf("remove the new container: %w", err))
	} else if err := a.removeContainer(ctx, newID); err != nil {
		problems = append(problems, fmt.Errorf("remove the new container: %w", err))
	}
	// Tried even when the new container could not be removed: it may not
	// have taken the name yet, and if it did, the engine says so.
	if old.aside {
		if err := a.rename(ctx, old.id, old.name); err != nil {
			problems = append(problems, fmt.Errorf("give the previous container its name back: %w", err))
		} else {
			old.aside = false
		}
	}
	if old.stopped {
		// Started even when it could not get its name back: under its aside
		// name it still serves on its ports and networks.
		if err := a.start(ctx, old.id); err != nil {
			problems = append(problems, fmt.Errorf("start the previous container: %w", err))
		} else {
			old.stopped = false
		}
	}
	re.Restored = !old.aside && !old.stopped
	re.RestoreErr = errors.Join(problems...)
	re.Now = old.describe()
	if re.Restored {
		a.res.Restored = append(a.res.Restored, old.name)
	}
	a.opts.Log.Warn().Err(cause).Str("service", svc.Name).Str("container", old.name).Bool("restored", re.Restored).
		AnErr("restore_error", re.RestoreErr).Msg("the new container could not take over: the previous one was put back")
	return re
}

// describe says where the old container stands, for a message.
func (p *previous) describe() string {
	state, name := "running", p.name
	if p.stopped {
		state = "stopped"
	}
	if p.aside {
		name = asideName(p.id, p.name)
	}
	return fmt.Sprintf("%s %s, named %s", shortID(p.id), state, name)
}

// RecreateError says that the new container of a recreate could not take
// over from the old one, why, and what became of the old one: put back
// under its name and running again (Restored), or, when even that failed,
// where it stands and what could not be done.
type RecreateError struct {
	Service    string
	Container  string // the replica's name
	What       string // "new container could not start", ...
	Err        error  // the engine's reason
	Restored   bool   // the previous container runs again under its name
	RestoreErr error  // what could not be restored or cleaned up (nil if nothing)
	Now        string // where the previous container stands ("3f2a… running, named prod-web-1")
}

func (e *RecreateError) Error() string {
	msg := e.What + ": " + e.Err.Error()
	switch {
	case e.Restored && e.RestoreErr == nil:
		return msg + "; the previous container is running again"
	case e.Restored:
		return fmt.Sprintf("%s; the previous container is running again, but: %v", msg, e.RestoreErr)
	}
	return fmt.Sprintf("%s; the previous container could NOT be restored (it is %s): %v", msg, e.Now, e.RestoreErr)
}

func (e *RecreateError) Unwrap() error { return e.Err }

// Permanent is true once the previous container runs again: the engine
// refused to start this configuration, and trying it again at every retry
// would stop the service for a moment each time. The agent waits for the
// branch to move (or `lockstep sync`) instead. A recreate that could not
// be undone is not permanent: the next pass must try to repair it.
func (e *RecreateError) Permanent() bool { return e.Restored }
