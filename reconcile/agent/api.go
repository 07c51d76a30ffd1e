package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// UnknownEnvironmentError is returned for an environment the agent does not
// run (a typo in `lockstep history ENV` or `lockstep sync ENV`).
type UnknownEnvironmentError struct {
	Name  string
	Known []string
}

func (e *UnknownEnvironmentError) Error() string {
	return fmt.Sprintf("no environment named %q; this agent runs: %s", e.Name, strings.Join(e.Known, ", "))
}

// NotFound is true: the API answers 404.
func (e *UnknownEnvironmentError) NotFound() bool { return true }

// Sync nudges env ("" = every environment). TriggerSync always runs a
// pass; any other trigger (TriggerWebhook) asks the loop to check the branch
// now, as a poll would. It never blocks: nudges that arrive while one is
// queued are merged into it.
func (a *Agent) Sync(env string, trigger reconcile.Trigger) error {
	if trigger == "" {
		trigger = reconcile.TriggerSync
	}
	targets := a.snapshot()
	if env != "" {
		l, ok := a.lookup(env)
		if !ok {
			return a.unknown(env)
		}
		targets = []*envLoop{l}
	} else {
		// The sets look at their pin files again too.
		a.mu.Lock()
		for _, s := range a.sets {
			s.nudge(trigger)
		}
		a.mu.Unlock()
	}
	for _, l := range targets {
		a.mu.Lock()
		l.pending = stronger(l.pending, trigger)
		a.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default: // a wake-up is already queued; it will see pending
		}
	}
	return nil
}

// stronger merges two queued triggers: a sync must not be lost behind a
// webhook, since only a sync retries a permanent failure at the same head.
func stronger(queued, next reconcile.Trigger) reconcile.Trigger {
	if queued == "" || next == reconcile.TriggerSync {
		return next
	}
	return queued
}

// Retry clears env's quarantine and queues a pass: the pinned commit is
// tried again, health gate and rollback included.
func (a *Agent) Retry(env string) error {
	l, ok := a.lookup(env)
	if !ok {
		return a.unknown(env)
	}
	released, err := a.store.ClearQuarantine(env)
	if err != nil {
		return fmt.Errorf("clear the quarantine of %s: %w", env, err)
	}
	if len(released) > 0 {
		a.log.Info().Str("env", env).Strs("released", state.Commits(released)).Msg("quarantine cleared by lockstep retry")
		a.mu.Lock()
		l.status.Waiting = ""
		a.mu.Unlock()
	}
	return a.Sync(env, reconcile.TriggerSync)
}

// Rollback queues the emergency brake for env: apply its last healthy
// revision (other than the pinned commit) again, from the release
// directory on disk, without asking git, and hold the pinned commit back
// until the pin names another one. It fails with
// *pass.NothingToRollBackError when there is no such revision.
func (a *Agent) Rollback(env string) error {
	l, ok := a.lookup(env)
	if !ok {
		return a.unknown(env)
	}
	a.mu.Lock()
	pinned := l.status.Pinned
	a.mu.Unlock()
	target, err := a.pipeline.RollbackTarget(l.env, pinned)
	if err != nil {
		return err
	}
	a.mu.Lock()
	l.rollbackQueued = true
	a.mu.Unlock()
	a.log.Info().Str("env", env).Str("to", target.Commit).Msg("rollback requested")
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func (a *Agent) unknown(env string) error {
	loops := a.snapshot()
	known := make([]string, len(loops))
	for i, l := range loops {
		known[i] = l.env.Name
	}
	return &UnknownEnvironmentError{Name: env, Known: known}
}

// lookup finds the loop of env, fixed or of a set.
func (a *Agent) lookup(env string) (*envLoop, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.byName[env]
	return l, ok
}

// snapshot is the loops running now (sets' come and go).
func (a *Agent) snapshot() []*envLoop {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.loops)
}

// Status returns every environment's status, fixed ones in config order,
// then the sets' by name: the loop's own view (what it waits for, when it
// retries, counters) with what the state dir records (what runs, the
// last healthy revision, the quarantine, the last pass, whoever ran it).
// A set's pin files that are not deployed (over its max, a clashing
// name) come last, each saying why in Waiting.
func (a *Agent) Status() []reconcile.EnvStatus {
	a.mu.Lock()
	loops := slices.Clone(a.loops)
	out := make([]reconcile.EnvStatus, len(loops))
	for i, l := range loops {
		s := l.status
		s.Passes = maps.Clone(s.Passes)
		out[i] = s
	}
	var refused []reconcile.EnvStatus
	for _, s := range a.sets {
		for _, r := range s.refused {
			refused = append(refused, reconcile.EnvStatus{Name: r.Name, Set: r.Set, PinFile: r.PinFile, NotDeployed: r.Reason, Passes: map[reconcile.Result]int{}})
		}
		if s.err != "" {
			refused = append(refused, reconcile.EnvStatus{Set: s.spec.Name, PinFile: s.spec.Pins, NotDeployed: s.err, Passes: map[reconcile.Result]int{}})
		}
	}
	a.mu.Unlock()
	for i, l := range loops {
		a.fromState(l.env.Name, l.env.Project, &out[i])
	}
	// Fixed environments keep config order; a set's come after, by name.
	slices.SortStableFunc(out, func(x, y reconcile.EnvStatus) int {
		switch {
		case (x.Set == "") != (y.Set == ""):
			if x.Set == "" {
				return -1
			}
			return 1
		case x.Set == "":
			return 0
		}
		return strings.Compare(x.Name, y.Name)
	})
	return append(out, refused...)
}

// fromState fills what the state dir owns into s.
func (a *Agent) fromState(env, project string, s *reconcile.EnvStatus) {
	if d, err := a.store.Deployed(env, project); err == nil && d != nil {
		s.Running = d.Commit
	}
	if h, err := a.store.Healthy(env); err == nil && len(h) > 0 {
		s.LastHealthy = h[0].Commit
	}
	// A pass recorded that this loop has not folded into its status yet
	// (it is finishing now, or another process ran it: lockstep apply):
	// what the status says of the last pass is read from the history, so
	// it is consistent with the record shown.
	if recs, err := a.store.History(env, 0); err == nil && len(recs) > 0 {
		if last := recs[len(recs)-1]; s.LastPass == nil || s.LastPass.ID != last.ID {
			foldHistory(s, recs)
		}
	}
	q, err := a.store.Quarantine(env)
	if err != nil {
		s.Waiting = fmt.Sprintf("the quarantine record is unreadable (%v): nothing is applied until it is fixed", err)
		return
	}
	s.Quarantined = state.Commits(q)
	if held, ok := state.Quarantined(q, s.Pinned); ok {
		s.Waiting = quarantineWaiting(env, held)
	}
}

func quarantineWaiting(env string, q state.Quarantine) string {
	return fmt.Sprintf("commit %s is quarantined (%s): waiting for the pin to name another commit (or `lockstep retry %s`)", reconcile.Short(q.Commit), q.Reason, env)
}

// History returns up to limit of env's most recent passes, newest last;
// limit <= 0 returns all that are kept.
// A review environment torn down keeps its history: it is found as long
// as the state dir has it.
func (a *Agent) History(env string, limit int) ([]reconcile.PassRecord, error) {
	if _, ok := a.lookup(env); !ok {
		if recs, err := a.history(env, limit); err == nil && len(recs) > 0 {
			return recs, nil
		}
		return nil, a.unknown(env)
	}
	return a.store.History(env, limit)
}

// history reads the history of an environment no loop runs now: a
// torn-down review environment's, when env could be one of a set's.
func (a *Agent) history(env string, limit int) ([]reconcile.PassRecord, error) {
	for _, s := range a.sets {
		if strings.HasPrefix(env, s.spec.Name+"-") && state.CheckEnvironment(env) == nil {
			return a.store.History(env, limit)
		}
	}
	return nil, nil
}

// Ready reports whether every environment has finished its first pass,
// whatever its result: from then on the status says something true.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.loops {
		if !l.ready && !l.late {
			return false
		}
	}
	for _, s := range a.sets {
		if !s.ready {
			return false
		}
	}
	return true
}

// Alive reports whether every environment loop is making progress: it came
// back to wait for events within a few poll intervals, or the pass or head
// check it is in is still within its deadline. The systemd watchdog pings
// only while Alive holds, so a wedged loop gets the agent restarted.
func (a *Agent) Alive() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.running {
		return false
	}
	now := a.clock.Now()
	// The loop comes back at least at every poll tick (+10% jitter).
	idleLimit := 3 * a.opts.PollInterval
	for _, l := range a.loops {
		if !l.busySince.IsZero() {
			if now.Sub(l.busySince) > l.busyFor {
				return false
			}
			continue
		}
		if now.Sub(l.beat) > idleLimit {
			return false
		}
	}
	return true
}

// Environment returns the environment called name as its loop runs it,
// fixed or of a set, while it runs.
func (a *Agent) Environment(name string) (pass.Environment, bool) {
	l, ok := a.lookup(name)
	if !ok {
		return pass.Environment{}, false
	}
	return l.env, true
}
