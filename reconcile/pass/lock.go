package pass

import (
	"context"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// DefaultLockWait is how long an apply waits for another apply of the same
// environment when the Pipeline sets no LockWait.
const DefaultLockWait = 2 * time.Minute

// lockApply takes the environment's apply lock (reconcile/state) for an
// apply or a rollback, so two of them never change one host at once,
// whoever runs them: the agent, `lockstep apply`, two of those. Waiting is
// said in the log; a wait that runs out is a *state.BusyError.
func (r *run) lockApply(ctx context.Context) (func(), error) {
	wait := r.p.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	return r.p.State.LockApply(ctx, r.env.Name, state.Holder{Pass: r.opts.ID}, wait, func(h state.Holder) {
		ev := r.log.Info().Int("holder_pid", h.PID).Str("holder_command", h.Command).Str("holder_pass", h.Pass).Dur("wait_up_to", wait)
		if !h.Since.IsZero() {
			ev = ev.Time("holder_since", h.Since)
		}
		ev.Msgf("waiting for the apply of %s by %s to finish", r.env.Name, h)
	})
}

// busy ends an apply that could not take the lock (it waited since
// start): nothing ran, so nothing goes into the history (which the holder
// is writing), but the result carries a failed record, so that the agent
// retries with backoff. Whoever called says the error (the CLI on
// stderr, the agent in its "pass finished" line).
func (r *run) busy(start time.Time, err error) {
	rec := r.record(start)
	rec.Result, rec.Error, rec.Class = reconcile.ResultFailed, err.Error(), reconcile.Classify(err)
	rec.Duration = r.p.now().Sub(start)
	r.res.Record = &rec
}
