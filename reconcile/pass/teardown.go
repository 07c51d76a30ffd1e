package pass

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Teardown reasons, as plans and the history say them.
const (
	ReasonPinDeleted = "pin file deleted"
	ReasonTTLExpired = "ttl expired"
)

// HostPortError refuses a review environment whose compose files publish
// a fixed host port: two review environments of one set would fight over
// it. It is permanent: the release is immutable.
type HostPortError struct {
	Environment string
	Set         string
	Files       []string // the compose files loaded, release-relative
	Ports       []string // `service "web" publishes 0.0.0.0:8080/tcp`
}

func (e *HostPortError) Error() string {
	return fmt.Sprintf("environment %s of set %s refused: %s (compose files %s) publish fixed host ports, which two review environments cannot share; "+
		"publish none and let a reverse proxy route to each environment by name (a host rule built from ${LOCKSTEP_SLUG}), "+
		"or publish the container port only (ports: [\"8080\"]) for an ephemeral host port",
		e.Environment, e.Set, strings.Join(e.Ports, ", "), strings.Join(e.Files, ", "))
}

// Permanent is true: the same release is refused the same way.
func (e *HostPortError) Permanent() bool { return true }

// hostPorts refuses, for an environment of a set, a loaded project that
// publishes a fixed host port, before the engine is asked anything.
func (r *run) hostPorts() error {
	if r.env.Set == "" {
		return nil
	}
	var ports []string
	for i := range r.project.Services {
		svc := &r.project.Services[i]
		for _, h := range svc.HostPorts() {
			ports = append(ports, fmt.Sprintf("service %q publishes %s", svc.Name, h))
		}
	}
	if len(ports) == 0 {
		return nil
	}
	e := &HostPortError{Environment: r.env.Name, Set: r.env.Set, Ports: ports}
	for _, f := range r.project.ConfigFiles {
		if rel, err := filepath.Rel(r.project.ReleaseDir, f); err == nil {
			f = filepath.ToSlash(rel)
		}
		e.Files = append(e.Files, f)
	}
	return &reconcile.StepError{Step: reconcile.StepPolicy, Err: e}
}

// Teardown removes a review environment: under its apply lock it observes
// the project, plans the removal of every container and network of it
// (its named volumes too when env.RemoveVolumes) with reason, applies the
// plan, records the pass (ResultRemoved) in the history, emits
// EventTeardown, and forgets what the state dir says runs (deployed,
// healthy, quarantine; the history stays). keepMember leaves the set
// membership recorded (a ttl that expired: the environment must not come
// back until its pin names another commit). It is re-runnable: after a
// kill -9 half-way, the next one removes what is left; one that finds
// nothing to remove only forgets, and records nothing (Record is nil). In
// ModePlan it only plans.
func (p *Pipeline) Teardown(ctx context.Context, env Environment, reason string, keepMember bool, opts Options) (*Result, error) {
	r := p.newRun(env, opts)
	if opts.Mode == ModeApply {
		waited := p.now()
		unlock, err := r.lockApply(ctx)
		if err != nil {
			r.busy(waited, err)
			return r.res, err
		}
		defer unlock()
	}
	start := p.now()
	pctx, cancel := p.passContext(ctx)
	defer cancel()
	err := r.teardown(pctx, reason)
	if opts.Mode != ModeApply {
		return r.res, err
	}
	if err == nil && r.res.Plan.Empty() {
		// Nothing of it on the engine (a teardown finished before a kill
		// -9 let it forget, or it never ran): forgetting is all there is
		// to do, and nothing is recorded.
		if ferr := p.State.Forget(env.Name, keepMember); ferr != nil {
			return r.res, fmt.Errorf("forget the torn down environment %s: %w", env.Name, ferr)
		}
		return r.res, nil
	}
	rec := r.record(start)
	switch {
	case err != nil:
		rec.Result, rec.Error, rec.Class = reconcile.ResultFailed, err.Error(), reconcile.Classify(err)
	default:
		rec.Result = reconcile.ResultRemoved
		r.event(reconcile.Event{Kind: reconcile.EventTeardown, Previous: r.res.Previous, Reason: reason})
		if ferr := p.State.Forget(env.Name, keepMember); ferr != nil {
			r.log.Warn().Err(ferr).Msg("cannot forget the torn down environment's records")
		}
	}
	r.finish(&rec, start)
	return r.res, err
}

// teardown is the steps of a teardown: observe, plan, apply.
func (r *run) teardown(ctx context.Context, reason string) error {
	ctx = r.log.WithContext(ctx)
	empty := &compose.Project{Name: r.env.Project, Environment: r.env.Name}
	observed, err := r.backend.Observe(ctx, empty)
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepObserve, Err: fmt.Errorf("observe project %s: %w", r.env.Project, err)}
	}
	if last, err := r.p.State.Deployed(r.env.Name, r.env.Project); err == nil && last != nil {
		r.res.Previous = last.Commit
		r.res.Commit = last.Commit
	}
	plan := reconcile.TeardownPlan(r.env.Name, r.env.Project, observed, r.env.RemoveVolumes, reason)
	r.res.Plan = plan
	if r.opts.Mode != ModeApply || plan.Empty() {
		return nil
	}
	applied, err := r.backend.Apply(ctx, empty, observed, plan, r.p.gateOptions(r.env))
	r.res.Applied = applied
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepApply, Err: fmt.Errorf("tear down %s: %w", r.env.Name, err)}
	}
	r.log.Info().Str("plan", plan.Summary()).Str("reason", reason).Msg("torn down")
	if dir := r.p.Secrets.RuntimeDir; dir != "" {
		if err := compose.PruneSecrets(dir, r.env.Project, map[string]bool{}); err != nil {
			r.log.Warn().Err(err).Msg("cannot remove the torn down environment's decrypted secrets")
		}
	}
	return nil
}
