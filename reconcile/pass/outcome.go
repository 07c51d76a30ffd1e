package pass

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// QuarantinedError is an apply's answer when the pinned commit is held
// back: nothing was applied.
type QuarantinedError struct {
	Environment string
	Quarantine  state.Quarantine
}

func (e *QuarantinedError) Error() string {
	return fmt.Sprintf("commit %s is quarantined (%s): not applied; pin another commit, or run `lockstep retry %s`",
		reconcile.Short(e.Quarantine.Commit), e.Quarantine.Reason, e.Environment)
}

// Permanent is true: trying again changes nothing until the pin moves or
// the quarantine is cleared.
func (e *QuarantinedError) Permanent() bool { return true }

// Run runs one pass of env as opts.Mode says. An apply ends with its
// outcome decided and recorded: a release that fails its health gate is
// quarantined and the last healthy revision applied again (unless
// opts.NoRollback), and the pass goes into the environment's history. An
// apply holds the environment's apply lock from start to end (see
// Pipeline.LockWait).
// The result may come back with an error: it says how far the pass got.
func (p *Pipeline) Run(ctx context.Context, env Environment, opts Options) (*Result, error) {
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
	err := r.runSteps(pctx, "resolve")
	cancel()
	if opts.Mode != ModeApply {
		return r.res, err
	}
	if q := r.res.Quarantined; q != nil && err == nil {
		return r.res, &QuarantinedError{Environment: env.Name, Quarantine: *q}
	}
	rec := r.record(start)
	err = r.settle(ctx, &rec, err)
	r.heldEvent()
	r.finish(&rec, start)
	return r.res, err
}

func (p *Pipeline) newRun(env Environment, opts Options) *run {
	log := p.Log
	if opts.Log != nil {
		log = *opts.Log
	}
	if opts.ID == "" {
		opts.ID = NewID(p.now())
	}
	r := &run{p: p, env: env, opts: opts, log: log.With().Str("env", env.Name).Str("pass", opts.ID).Logger(), backend: p.backendFor(env)}
	r.res = &Result{Environment: env.Name, Project: env.Project}
	return r
}

// record starts the history record of the pass from what it found.
func (r *run) record(start time.Time) reconcile.PassRecord {
	rec := reconcile.PassRecord{ID: r.opts.ID, Environment: r.env.Name, Trigger: r.opts.Trigger, Start: start.UTC(),
		Head: r.res.Head, Commit: r.res.Commit, Held: r.res.Held, ForceWindow: r.forced, Swarm: r.res.Swarm}
	r.res.ForceWindow = r.forced
	if r.res.Plan != nil {
		rec.Plan = r.res.Plan.Summary()
	}
	if a := r.res.Applied; a != nil {
		rec.Created, rec.Recreated, rec.Removed, rec.Adopted, rec.Updated = a.Created, a.Recreated, a.Removed, a.Adopted, a.Updated
	}
	return rec
}

// settle decides the outcome of an apply: its result and class, the
// events, and, for a release that failed its health gate, the quarantine
// and the rollback. err is the error the steps stopped at; the one
// returned is the pass's.
func (r *run) settle(ctx context.Context, rec *reconcile.PassRecord, err error) error {
	switch {
	case r.gateErr != nil:
		return r.gateFailed(ctx, rec)
	case err != nil:
		rec.Result, rec.Error, rec.Class = reconcile.ResultFailed, err.Error(), reconcile.Classify(err)
	case (r.res.Paused || r.holdAll || r.follower) && r.res.Plan != nil && !r.res.Plan.Empty():
		rec.Result = reconcile.ResultPaused
	case r.res.Applied != nil:
		rec.Result = reconcile.ResultApplied
		if r.res.Healthy {
			r.res.Events = append(r.res.Events, reconcile.Event{Kind: reconcile.EventDeploy, Commit: r.rel.Commit, Previous: r.res.Previous})
		}
	default:
		rec.Result = reconcile.ResultNoop
	}
	return err
}

// gateFailed is settle for a release that did not pass its gate: it is
// quarantined, and the last healthy revision other than it is applied
// again (gated too), unless there is none or the operator said
// --no-rollback. The pass is never a success.
func (r *run) gateFailed(ctx context.Context, rec *reconcile.PassRecord) error {
	ge, err := r.gateErr, r.stepErr
	rec.Result, rec.Error, rec.Class = reconcile.ResultFailed, err.Error(), reconcile.ClassHealth
	rec.Service, rec.Logs = ge.Service, ge.Logs
	r.res.Unhealthy = fmt.Sprintf("service %s: %s", ge.Service, ge.Reason)
	r.quarantine(state.Quarantine{Commit: r.rel.Commit, Service: ge.Service, Reason: ge.Error(), At: r.p.now().UTC()})
	healthy, herr := r.p.State.Healthy(r.env.Name)
	if herr != nil {
		r.log.Warn().Err(herr).Msg("the record of healthy revisions is unreadable: no rollback target")
	}
	target, ok := state.RollbackTarget(healthy, r.rel.Commit)
	r.event(reconcile.Event{Kind: reconcile.EventFailure, Commit: r.rel.Commit, Previous: target.Commit, Service: ge.Service, Reason: ge.Reason, Logs: ge.Logs})
	log := r.log.With().Str("service", ge.Service).Str("reason", ge.Reason).Logger()
	switch {
	case r.opts.NoRollback:
		rec.Error += "; left running (--no-rollback) and quarantined"
		log.Error().Msg("release failed its health gate: left running for inspection (--no-rollback), quarantined")
		return err
	case !ok:
		rec.Error += "; no healthy revision to roll back to: left running and quarantined"
		log.Error().Msg("release failed its health gate and there is no healthy revision to go back to: left running, quarantined")
		return err
	}
	log.Warn().Str("to", target.Commit).Msg("release failed its health gate: rolling back to the last healthy revision")
	if _, rbErr := r.p.applyHealthy(ctx, r.env, target, r.opts); rbErr != nil {
		rec.Error += fmt.Sprintf("; ROLLBACK to %s FAILED too: %v", reconcile.Short(target.Commit), rbErr)
		log.Error().Err(rbErr).Str("to", target.Commit).
			Msg("ROLLBACK FAILED: the last healthy revision did not come back healthy either; a person must act (nothing more is tried)")
		r.event(failureEvent(r.rel.Commit, target.Commit, fmt.Sprintf("rollback to %s failed: ", reconcile.Short(target.Commit)), rbErr))
		return err
	}
	rec.Result, rec.RolledBackTo = reconcile.ResultRolledBack, target.Commit
	rec.Error += "; rolled back to " + reconcile.Short(target.Commit)
	r.res.RolledBackTo = target.Commit
	r.event(reconcile.Event{Kind: reconcile.EventRollback, Commit: r.rel.Commit, Previous: target.Commit, Service: ge.Service, Reason: ge.Reason, Logs: ge.Logs})
	return err
}

// quarantine holds a commit back. A failed write is logged loudly: the
// commit would be tried again by the next pass.
func (r *run) quarantine(q state.Quarantine) {
	if err := r.p.State.Hold(r.env.Name, q); err != nil {
		r.log.Error().Err(err).Msg("cannot record the quarantine; the next pass may try the commit again")
	}
}

func (r *run) event(ev reconcile.Event) { r.res.Events = append(r.res.Events, ev) }

// finish times the record, puts it in the history and on the result.
func (r *run) finish(rec *reconcile.PassRecord, start time.Time) {
	rec.Duration = r.p.now().Sub(start)
	if err := r.p.State.AppendHistory(r.env.Name, *rec); err != nil {
		r.log.Warn().Err(err).Msg("cannot record the pass in the history")
	}
	r.res.Record = rec
	now := r.p.now().UTC()
	for i := range r.res.Events {
		r.res.Events[i].Environment, r.res.Events[i].Time = r.env.Name, now
	}
}

func failureEvent(commit, previous, prefix string, err error) reconcile.Event {
	ev := reconcile.Event{Kind: reconcile.EventFailure, Commit: commit, Previous: previous, Reason: prefix + err.Error()}
	var ge *reconcile.GateError
	if errors.As(err, &ge) {
		ev.Service, ev.Logs = ge.Service, ge.Logs
	}
	return ev
}
