package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// waitDependencies blocks until every depends_on condition of svc holds on
// the dependency's current containers. A dependency declared
// required: false that is missing or fails only logs a warning.
func (a *applier) waitDependencies(ctx context.Context, svc *compose.Service) error {
	for _, d := range svc.DependsOn {
		err := a.waitDependency(ctx, svc, d)
		if err == nil {
			continue
		}
		if ctx.Err() != nil || d.Required {
			return err
		}
		a.opts.Log.Warn().Str("service", svc.Name).Str("dependency", d.Service).Err(err).Msg("optional dependency (required: false) not satisfied; going on")
	}
	return nil
}

func (a *applier) waitDependency(ctx context.Context, svc *compose.Service, d compose.Dependency) error {
	depErr := func(container string, err error) error {
		return &DependencyError{Service: svc.Name, Dependency: d.Service, Container: container, Condition: d.Condition, Err: err}
	}
	dep := a.desired.Service(d.Service)
	if dep == nil {
		return depErr("", errors.New("no such service in the compose files"))
	}
	if dep.Replicas <= 0 {
		a.opts.Log.Warn().Str("service", svc.Name).Str("dependency", d.Service).Msg("dependency has 0 replicas; not waiting for it")
		return nil
	}
	if d.Condition == compose.ConditionHealthy && !dep.Healthcheck {
		return depErr("", fmt.Errorf("service %s defines no healthcheck: add one or use condition service_started", d.Service))
	}
	live := a.current[d.Service]
	if !hasReplica(live, dep.Replicas) {
		return depErr("", errors.New("it has no container"))
	}
	for _, c := range live {
		if c.number > dep.Replicas {
			continue // removed by this plan's scale-down; not what the dependent will talk to
		}
		a.opts.Log.Info().Str("service", svc.Name).Str("dependency", d.Service).Str("container", c.name).Str("condition", d.Condition).Msg("waiting for dependency")
		if _, err := a.waitFor(ctx, c.id, d.Condition, dep.Healthcheck); err != nil {
			return depErr(c.name, err)
		}
	}
	return nil
}

// conditionFailedError is a condition that cannot hold any more: the
// container exited with the wrong code, turned unhealthy, died. The
// release's own service failed, which the Runner treats as a failed health
// gate (rollback), not as an engine error to retry.
type conditionFailedError struct{ msg string }

func (e *conditionFailedError) Error() string { return e.msg }

func failedf(format string, args ...any) error {
	return &conditionFailedError{msg: fmt.Sprintf(format, args...)}
}

// conditionTimeoutError is a condition that did not hold in time.
type conditionTimeoutError struct{ msg string }

func (e *conditionTimeoutError) Error() string { return e.msg }

// errNotYet means a condition does not hold yet; polling goes on.
var errNotYet = errors.New("not yet")

// conditionRunning is what the new container of a start-first recreate of a
// service without healthcheck must reach before the old one stops. Unlike
// service_started, having exited does not count: it would mean swapping a
// serving container for a crashed one.
const conditionRunning = "running"

// check says whether condition holds for c: nil when it does, errNotYet
// when it may still come, another error when it cannot any more.
func check(condition string, healthcheck bool, c compose.Container) error {
	switch c.State {
	case "dead", "removing":
		return failedf("container is %s", c.State)
	}
	switch condition {
	case compose.ConditionHealthy:
		switch {
		case c.Health == "healthy":
			return nil
		case c.Health == "unhealthy":
			return failedf("container is unhealthy: see docker inspect --format '{{json .State.Health}}' %s", c.Name)
		case c.State == "exited":
			return failedf("container exited with code %d before becoming healthy: see docker logs %s", c.ExitCode, c.Name)
		case c.Health == "" && c.State == "running" && !healthcheck:
			return errors.New("container has no healthcheck")
		}
		return errNotYet
	case compose.ConditionCompleted:
		switch {
		case c.State == "exited" && c.ExitCode == 0:
			return nil
		case c.State == "exited":
			return failedf("container exited with code %d, service_completed_successfully needs 0: see docker logs %s", c.ExitCode, c.Name)
		}
		return errNotYet
	case conditionRunning:
		switch c.State {
		case "running":
			return nil
		case "exited":
			return failedf("container exited with code %d: see docker logs %s", c.ExitCode, c.Name)
		}
		return errNotYet
	default: // service_started
		switch c.State {
		case "running", "restarting", "paused", "exited":
			// exited: it did start (a one-shot may finish before we look).
			return nil
		}
		return errNotYet
	}
}

// waitFor polls container id until condition holds, fails for good, the
// DependencyTimeout passes, or ctx ends.
func (a *applier) waitFor(ctx context.Context, id, condition string, healthcheck bool) (compose.Container, error) {
	wctx, cancel := context.WithTimeout(ctx, a.opts.DependencyTimeout)
	defer cancel()
	var last compose.Container
	for {
		cctx, ccancel := a.call(wctx)
		c, err := a.eng.InspectContainer(cctx, id)
		ccancel()
		if err != nil && wctx.Err() == nil {
			return last, fmt.Errorf("inspect container %s: %w", shortID(id), err)
		}
		if err == nil {
			last = c
			switch err := check(condition, healthcheck, c); {
			case err == nil:
				return c, nil
			case !errors.Is(err, errNotYet):
				return c, err
			}
		}
		timer := time.NewTimer(a.opts.PollInterval)
		select {
		case <-wctx.Done():
			timer.Stop()
			if ctx.Err() != nil {
				return last, fmt.Errorf("stopped waiting: %w", ctx.Err())
			}
			return last, &conditionTimeoutError{msg: fmt.Sprintf("timed out after %s (last state %s)", a.opts.DependencyTimeout, stateText(last))}
		case <-timer.C:
		}
	}
}

func stateText(c compose.Container) string {
	if c.State == "" {
		return "unknown"
	}
	if c.Health != "" {
		return c.State + ", health " + c.Health
	}
	return c.State
}

func hasReplica(live []liveContainer, replicas int) bool {
	for _, c := range live {
		if c.number <= replicas {
			return true
		}
	}
	return false
}
