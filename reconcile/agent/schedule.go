package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// pass runs one pass of l's environment through the pipeline (which
// decides and records its outcome: quarantine, rollback, history) and then
// schedules what comes next: nothing, a retry after backoff, or waiting for
// the branch to move.
func (a *Agent) pass(ctx context.Context, l *envLoop, st *loopState, trigger reconcile.Trigger) {
	if ctx.Err() != nil {
		return // shutting down: start nothing new
	}
	st.passes++
	start := a.clock.Now()
	id := pass.NewID(start)
	plog := a.log.With().Str("pass", id).Logger()

	// A pass that fails its gate runs a rollback with a context of its
	// own: passContext restarts the busy deadline for it.
	a.setBusy(l, a.opts.PassTimeout+a.opts.ShutdownGrace)
	res, err := a.pipeline.Run(context.WithValue(ctx, busyKey{}, l), l.env, pass.Options{Mode: pass.ModeApply, Trigger: trigger, ID: id, Log: &a.log})
	a.setBusy(l, 0)

	if res.Quarantined != nil && res.Record == nil {
		a.skipQuarantined(l, st, res, trigger, plog.With().Str("env", l.env.Name).Str("commit", res.Commit).Logger())
		return
	}
	if res.Record == nil { // not reached: every apply that is not held is recorded
		return
	}
	a.finishPass(l, st, res, err, plog)
}

// manualRollback is `lockstep rollback`: the pipeline holds the pinned
// commit back and applies the last healthy revision again.
func (a *Agent) manualRollback(ctx context.Context, l *envLoop, st *loopState) {
	if ctx.Err() != nil {
		return
	}
	start := a.clock.Now()
	id := pass.NewID(start)
	plog := a.log.With().Str("pass", id).Logger()
	a.mu.Lock()
	pinned := l.status.Pinned
	a.mu.Unlock()
	a.setBusy(l, a.opts.PassTimeout+a.opts.ShutdownGrace)
	res, err := a.pipeline.Rollback(context.WithValue(ctx, busyKey{}, l), l.env, pinned, pass.Options{Trigger: reconcile.TriggerRollback, ID: id, Head: st.lastHead, Log: &a.log})
	a.setBusy(l, 0)
	if res.Record == nil {
		return // nothing to roll back to: said in the log, nothing ran
	}
	st.passes++
	a.finishPass(l, st, res, err, plog)
}

// finishPass decides what comes after a pass (nothing, a retry after
// backoff, waiting for the branch), notes it in the status, logs it and
// tells the hooks.
func (a *Agent) finishPass(l *envLoop, st *loopState, res *pass.Result, err error, plog zerolog.Logger) {
	rec := *res.Record
	if rec.Head != "" {
		st.lastHead = rec.Head
	}
	st.passError = rec.Error
	delay := a.schedule(st, rec)
	a.scheduleWindow(st, rec, plog)

	events := res.Events
	a.mu.Lock()
	for _, ev := range events {
		if ev.Kind == reconcile.EventFailure {
			l.alerting = true
		}
	}
	if l.alerting && res.Healthy && (rec.Result == reconcile.ResultApplied || rec.Result == reconcile.ResultNoop) {
		l.alerting = false
		events = append(events, reconcile.Event{Kind: reconcile.EventRecovery, Environment: l.env.Name, Commit: rec.Commit, Previous: res.Previous, Time: a.clock.Now().UTC()})
	}
	a.recordPass(l, rec, delay, err)
	a.mu.Unlock()

	logPass(plog, l.env.Name, rec, delay)
	if a.opts.OnPass != nil {
		a.opts.OnPass(rec)
	}
	if a.opts.OnEvent != nil {
		for _, e := range events {
			a.opts.OnEvent(e)
		}
	}
}

// schedule sets what the loop does after a pass recorded as rec and
// returns the retry delay (0 for none).
func (a *Agent) schedule(st *loopState, rec reconcile.PassRecord) time.Duration {
	var delay time.Duration
	st.transient, st.waiting = false, false
	switch rec.Class {
	case "":
		if rec.Result != reconcile.ResultFailed {
			st.backoff.Reset()
			st.retry = nil
		}
		// A pass cut short by shutdown decides nothing.
	case reconcile.ClassGit, reconcile.ClassEngine:
		st.transient = true
		delay = st.backoff.Next()
		st.retry = a.clock.After(delay)
	case reconcile.ClassPermanent:
		st.waiting, st.waitHead = true, rec.Head
		st.backoff.Reset()
		st.retry = nil
	case reconcile.ClassHealth:
		// The commit is quarantined: passes skip it until the pin moves
		// or an operator retries. Nothing to schedule.
		st.backoff.Reset()
		st.retry = nil
	}
	return delay
}

// scheduleWindow sets the timer for the deploy window a held release
// waits for, so that it goes out when the window opens rather than at the
// next drift check. A pass that holds nothing (or a failure, which says
// nothing of the hold) leaves no timer, or the one set before.
func (a *Agent) scheduleWindow(st *loopState, rec reconcile.PassRecord, plog zerolog.Logger) {
	switch h := rec.Held; {
	case h != nil && !h.Opens.IsZero():
		in := h.Opens.Sub(a.clock.Now())
		st.opens = a.clock.After(in)
		plog.Debug().Str("env", rec.Environment).Time("opens", h.Opens).Dur("in", in).Msg("a pass is scheduled for when the deploy window opens")
	case rec.Result != reconcile.ResultFailed:
		st.opens = nil
	}
}

// logPass writes the one line every pass ends with: info when it changed
// something or failed, debug for a no-op.
func logPass(plog zerolog.Logger, env string, rec reconcile.PassRecord, delay time.Duration) {
	ev := plog.Info()
	switch rec.Result {
	case reconcile.ResultNoop:
		if rec.Held == nil { // a held release is worth a line
			ev = plog.Debug()
		}
	case reconcile.ResultRolledBack:
		ev = plog.Warn()
	case reconcile.ResultFailed:
		if rec.Class == reconcile.ClassHealth {
			ev = plog.Error()
		}
	}
	ev = ev.Str("env", env).Str("commit", rec.Commit).Str("trigger", string(rec.Trigger)).
		Str("result", string(rec.Result)).Str("plan", rec.Plan).Dur("took", rec.Duration)
	if rec.RolledBackTo != "" {
		ev = ev.Str("rolled_back_to", rec.RolledBackTo)
	}
	if rec.Held != nil {
		ev = ev.Str("pending", rec.Held.Commit).Str("held", rec.Held.Reason)
	}
	if rec.ForceWindow {
		ev = ev.Bool("force_window", true)
	}
	if rec.Error != "" {
		ev = ev.Str("error", rec.Error).Str("class", string(rec.Class))
		if delay > 0 {
			ev = ev.Dur("retry_in", delay)
		}
	}
	ev.Msg("pass finished")
}

// skipQuarantined ends a pass that found the pinned commit quarantined:
// nothing is applied or recorded in the history; the status says why.
func (a *Agent) skipQuarantined(l *envLoop, st *loopState, res *pass.Result, trigger reconcile.Trigger, log zerolog.Logger) {
	if res.Head != "" {
		st.lastHead = res.Head
	}
	st.transient, st.waiting = false, false
	st.backoff.Reset()
	st.retry = nil
	q := *res.Quarantined
	ev := log.Debug()
	if trigger == reconcile.TriggerSync {
		ev = log.Info() // an operator asked: say why nothing happens
	}
	ev.Str("trigger", string(trigger)).Str("quarantined", q.Reason).
		Msg("pinned commit is quarantined: not applying it; pin another commit or run `lockstep retry " + l.env.Name + "`")
	a.mu.Lock()
	defer a.mu.Unlock()
	l.status.Pinned = res.Commit
	l.status.NextRetry = time.Time{}
	l.status.Waiting = quarantineWaiting(l.env.Name, q)
	l.ready = true
}

// recordPass updates l's status with rec. Called with a.mu held.
func (a *Agent) recordPass(l *envLoop, rec reconcile.PassRecord, delay time.Duration, err error) {
	s := &l.status
	recCopy := rec
	s.LastPass = &recCopy
	s.Passes[rec.Result]++
	s.Recreated += rec.Recreated
	if rec.Commit != "" {
		s.Pinned = rec.Commit
	}
	if rec.Held != nil {
		s.Pinned = rec.Held.Commit
	}
	foldHold(s, rec)
	s.Swarm = rec.Swarm
	s.NextRetry = time.Time{}
	s.Waiting = ""
	if rec.Class == reconcile.ClassHealth {
		s.GateFailures++
		s.LastFailure = rec.Error
	}
	switch rec.Result {
	case reconcile.ResultApplied, reconcile.ResultNoop, reconcile.ResultPaused:
		s.LastError = ""
		s.LastSuccess = rec.Start
	case reconcile.ResultRolledBack:
		s.Rollbacks++
		s.LastError = rec.Error
	case reconcile.ResultFailed:
		s.LastError = rec.Error
		switch rec.Class {
		case reconcile.ClassGit:
			s.GitErrors++
			s.NextRetry = rec.Start.Add(rec.Duration).Add(delay)
		case reconcile.ClassEngine:
			s.EngineErrors++
			s.NextRetry = rec.Start.Add(rec.Duration).Add(delay)
		case reconcile.ClassPermanent:
			s.Waiting = waitingReason(err, rec)
		}
	}
	l.ready = true
}

// waitingReason says, for the status, why the agent does not retry and
// what makes it try again.
func waitingReason(err error, rec reconcile.PassRecord) string {
	what, at := "permanent error", rec.Commit
	switch reconcile.FailedStep(err) {
	case reconcile.StepSource:
		what = "pin or repository error"
	case reconcile.StepLoad:
		what = "compose error"
	case reconcile.StepApply, reconcile.StepObserve:
		what = "cannot apply"
	}
	if at == "" {
		at = rec.Head
	}
	return fmt.Sprintf("%s at %s: waiting for the branch to move (or `lockstep sync`)", what, reconcile.Short(at))
}
