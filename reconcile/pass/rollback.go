package pass

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// NothingToRollBackError is Rollback's answer when the environment has no
// healthy revision other than the pinned commit.
type NothingToRollBackError struct {
	Environment string
	Pinned      string
}

func (e *NothingToRollBackError) Error() string {
	return fmt.Sprintf("environment %s has no healthy revision to roll back to (other than the pinned %s): one is recorded after each release that passes the health gate", e.Environment, reconcile.Short(e.Pinned))
}

// Conflict is true: the API answers 409.
func (e *NothingToRollBackError) Conflict() bool { return true }

// RollbackTarget is the revision `lockstep rollback` of env would go back
// to while pinned is the pinned commit.
func (p *Pipeline) RollbackTarget(env Environment, pinned string) (state.HealthyRevision, error) {
	healthy, err := p.State.Healthy(env.Name)
	if err != nil {
		return state.HealthyRevision{}, err
	}
	target, ok := state.RollbackTarget(healthy, pinned)
	if !ok {
		return target, &NothingToRollBackError{Environment: env.Name, Pinned: pinned}
	}
	return target, nil
}

// Rollback is `lockstep rollback`, the emergency brake: the pinned commit
// is held back (quarantined, manually) whatever happens next, and the last
// healthy revision other than it is applied again from its release
// directory, without git when it is still on disk. The pass is recorded
// with opts.Trigger (reconcile.TriggerRollback).
func (p *Pipeline) Rollback(ctx context.Context, env Environment, pinned string, opts Options) (*Result, error) {
	opts.Mode = ModeApply
	r := p.newRun(env, opts)
	unlock, err := r.lockApply(ctx)
	if err != nil {
		// Not even the quarantine: the holder may be writing it. Nothing
		// ran, so no record either (the agent does not retry a rollback).
		r.log.Error().Err(err).Msg("rollback asked for, but another apply of the environment holds its lock: not rolled back")
		return r.res, err
	}
	defer unlock()
	start := p.now()
	target, err := p.RollbackTarget(env, pinned)
	if err != nil {
		r.log.Error().Err(err).Msg("rollback asked for, but there is no healthy revision to go back to")
		return r.res, err
	}
	if pinned != "" {
		r.quarantine(state.Quarantine{Commit: pinned, Manual: true, At: start.UTC(),
			Reason: fmt.Sprintf("held back by lockstep rollback to %s", reconcile.Short(target.Commit))})
	}
	r.log.Warn().Str("pinned", pinned).Str("to", target.Commit).Msg("rolling back on request")
	sub, err := p.applyHealthy(ctx, env, target, opts)
	rec := reconcile.PassRecord{ID: r.opts.ID, Environment: env.Name, Trigger: opts.Trigger, Start: start.UTC(), Head: opts.Head, Commit: pinned}
	if sub.Plan != nil {
		rec.Plan = sub.Plan.Summary()
	}
	if a := sub.Applied; a != nil {
		rec.Created, rec.Recreated, rec.Removed, rec.Updated = a.Created, a.Recreated, a.Removed, a.Updated
	}
	r.res = sub
	r.res.Commit, r.res.Head = pinned, opts.Head
	if err != nil {
		rec.Result, rec.Error, rec.Class = reconcile.ResultFailed, fmt.Sprintf("rollback to %s: %v", reconcile.Short(target.Commit), err), reconcile.Classify(err)
		var ge *reconcile.GateError
		if errors.As(err, &ge) {
			rec.Service, rec.Logs = ge.Service, ge.Logs
		}
		r.event(failureEvent(pinned, target.Commit, fmt.Sprintf("rollback to %s failed: ", reconcile.Short(target.Commit)), err))
	} else {
		rec.Result, rec.RolledBackTo = reconcile.ResultRolledBack, target.Commit
		r.res.RolledBackTo = target.Commit
		r.event(reconcile.Event{Kind: reconcile.EventRollback, Commit: pinned, Previous: target.Commit, Reason: "lockstep rollback"})
	}
	r.finish(&rec, start)
	return r.res, err
}

// applyHealthy applies a healthy revision again (restore, then the steps
// from load on, gated), with a pass context of its own: the failed release
// may have used up most of the first one. A gate failure comes back as
// the verify step's error; nothing is quarantined or rolled back further.
func (p *Pipeline) applyHealthy(ctx context.Context, env Environment, target state.HealthyRevision, opts Options) (*Result, error) {
	opts.Mode, opts.Commit = ModeApply, ""
	r := p.newRun(env, opts)
	pctx, cancel := p.passContext(ctx)
	defer cancel()
	rlog := r.log.With().Str("commit", target.Commit).Logger()
	rel, err := p.restore(rlog.WithContext(pctx), env, target, rlog)
	if err != nil {
		return r.res, err
	}
	r.setRelease(rel)
	if err := r.runSteps(pctx, "load"); err != nil {
		return r.res, err
	}
	if r.gateErr != nil {
		return r.res, r.stepErr
	}
	r.log.Info().Msg("rolled back: the last healthy revision runs and passed the health gate")
	return r.res, nil
}
