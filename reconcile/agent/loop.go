package agent

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// loop is one environment's event loop: a first pass, then whatever its
// timers and nudges ask for, one thing at a time, until ctx is done.
func (a *Agent) loop(ctx context.Context, l *envLoop) {
	st := &loopState{backoff: reconcile.Backoff{Initial: a.opts.BackoffInitial, Max: a.opts.BackoffMax}}
	log := a.log.With().Str("env", l.env.Name).Logger()
	a.pass(ctx, l, st, reconcile.TriggerStart)
	poll := a.clock.After(a.pollDelay())
	drift := a.clock.After(a.opts.DriftInterval)
	for {
		if ctx.Err() != nil {
			return
		}
		before := st.passes
		a.mu.Lock()
		l.beat = a.clock.Now()
		l.waits++
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
			a.mu.Lock()
			trigger := l.pending
			l.pending = ""
			rollback := l.rollbackQueued
			l.rollbackQueued = false
			a.mu.Unlock()
			if rollback {
				a.manualRollback(ctx, l, st)
			}
			switch trigger {
			case "":
			case reconcile.TriggerSync:
				a.pass(ctx, l, st, trigger)
			default:
				a.check(ctx, l, st, trigger)
			}
		case <-poll:
			poll = a.clock.After(a.pollDelay())
			if st.retry != nil {
				log.Debug().Msg("poll skipped: backing off after a failure, the retry will check")
				continue
			}
			a.check(ctx, l, st, reconcile.TriggerPoll)
		case <-st.retry:
			st.retry = nil
			a.check(ctx, l, st, reconcile.TriggerRetry)
		case <-st.opens:
			// A full pass: the branch has not moved, the time has.
			st.opens = nil
			a.pass(ctx, l, st, reconcile.TriggerWindow)
		case <-drift:
			drift = a.clock.After(a.opts.DriftInterval)
			switch {
			case st.waiting:
				log.Debug().Msg("drift check skipped: waiting for the branch to move after a permanent error")
			case st.retry != nil:
				log.Debug().Msg("drift check skipped: backing off after a failure, the retry will run a pass")
			default:
				a.pass(ctx, l, st, reconcile.TriggerDrift)
			}
		}
		if st.passes != before {
			// Any full pass compares with the engine: the drift check is
			// due a whole interval after the last one.
			drift = a.clock.After(a.opts.DriftInterval)
		}
	}
}

// pollDelay is the poll interval +-10%, so hosts started together do not
// list refs in the same second forever.
func (a *Agent) pollDelay() time.Duration {
	p := a.opts.PollInterval
	spread := p / 5
	if spread <= 0 {
		return p
	}
	return p - spread/2 + mrand.N(spread+1)
}

// check asks the branch head and runs a pass (labelled trigger) only when
// there is a reason: the branch moved, or the last pass failed in a way a
// retry can fix. An unchanged repository costs this one ref listing.
func (a *Agent) check(ctx context.Context, l *envLoop, st *loopState, trigger reconcile.Trigger) {
	log := a.log.With().Str("env", l.env.Name).Str("trigger", string(trigger)).Logger()
	head, err := a.head(ctx, l)
	if err != nil {
		if ctx.Err() != nil {
			return // stopping, not a git failure
		}
		a.headFailed(l, st, err, log)
		return
	}
	if st.headFailed {
		st.headFailed = false
		if !st.transient {
			// Git is back and the last pass needs no retry: the status
			// shows that pass's outcome again.
			st.backoff.Reset()
			st.retry = nil
			a.mu.Lock()
			l.status.LastError = st.passError
			l.status.NextRetry = time.Time{}
			a.mu.Unlock()
		}
	}
	switch {
	case st.transient:
		a.pass(ctx, l, st, trigger)
	case st.waiting && head == st.waitHead:
		log.Debug().Str("head", head).Msg("branch unchanged since the permanent error: still waiting")
	case head != st.lastHead:
		a.pass(ctx, l, st, trigger)
	default:
		log.Debug().Str("head", head).Msg("branch unchanged: nothing to do")
	}
}

func (a *Agent) head(ctx context.Context, l *envLoop) (string, error) {
	a.setBusy(l, a.opts.HeadTimeout)
	defer a.setBusy(l, 0)
	hctx, cancel := context.WithTimeout(ctx, a.opts.HeadTimeout)
	defer cancel()
	head, err := a.heads.Head(hctx)
	if err != nil {
		return "", &reconcile.StepError{Step: reconcile.StepSource, Err: err}
	}
	return head, nil
}

// headFailed notes a failed head check in the status and schedules a retry
// with backoff: the git host is not asked again before it.
func (a *Agent) headFailed(l *envLoop, st *loopState, err error, log zerolog.Logger) {
	st.headFailed = true
	delay := st.backoff.Next()
	st.retry = a.clock.After(delay)
	class := reconcile.Classify(err)
	log.Info().Err(err).Str("class", string(class)).Dur("retry_in", delay).Msg("cannot check the branch head")
	a.mu.Lock()
	defer a.mu.Unlock()
	l.status.LastError = err.Error()
	l.status.NextRetry = a.clock.Now().Add(delay)
	switch class {
	case reconcile.ClassGit, reconcile.ClassPermanent:
		l.status.GitErrors++
	case reconcile.ClassEngine:
		l.status.EngineErrors++
	}
}
