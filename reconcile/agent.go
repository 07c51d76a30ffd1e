package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// HeadSource is the cheap "did the branch move?" check: one ref listing, no
// objects fetched. gitsource.Source implements it.
type HeadSource interface {
	Head(ctx context.Context) (string, error)
}

// Triggers: why a pass ran, as recorded in PassRecord.Trigger.
const (
	TriggerStart   = "start"   // first pass after the agent started
	TriggerPoll    = "poll"    // the poll timer saw the branch move
	TriggerDrift   = "drift"   // periodic comparison with the engine, git unchanged
	TriggerRetry   = "retry"   // backoff after a git or engine failure ran out
	TriggerWebhook = "webhook" // a push notification: look at git now
	TriggerSync    = "sync"    // an operator asked (lockstep sync): always a pass
	// TriggerRollback is `lockstep rollback`: the last healthy revision is
	// applied again and the pinned commit held back.
	TriggerRollback = "rollback"
)

// Agent defaults, for options left zero.
const (
	DefaultPollInterval  = time.Minute
	DefaultDriftInterval = 5 * time.Minute
	DefaultShutdownGrace = time.Minute
	DefaultPassTimeout   = 30 * time.Minute
	DefaultHeadTimeout   = time.Minute
)

// AgentOptions configure an Agent. Zero values take the defaults above.
type AgentOptions struct {
	Environments  []Environment
	PollInterval  time.Duration // jittered +-10%
	DriftInterval time.Duration // full pass even when git is unchanged
	ShutdownGrace time.Duration // how long the pass in flight may go on after ctx is cancelled
	HistorySize   int
	StateDir      string // "" = the Runner's StateDir; both "" keeps history in memory only
	Clock         Clock  // nil = real
	Log           zerolog.Logger
	OnPass        func(PassRecord) // called after every pass (metrics); must not block
	// OnEvent is called for failures, rollbacks, recoveries and deploys
	// (notifications), from the environment's loop: it must not block.
	OnEvent func(Event)
	// Health overrides the Runner's health gate options where set (each
	// Environment's HealthTimeout and Bake override both).
	Health GateOptions

	// PassTimeout bounds one pass (pull and health waits included).
	PassTimeout time.Duration
	// HeadTimeout bounds one branch head check.
	HeadTimeout time.Duration
	// BackoffInitial and BackoffMax shape the retry delays after a git or
	// engine failure (see Backoff).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
}

// Agent keeps every environment converged: one loop per environment, one
// pass at a time in each, triggered by its poll timer, drift timer, retries
// and nudges (Sync), which coalesce. It keeps each environment's status and
// a bounded, persisted history of passes.
type Agent struct {
	runner *Runner
	heads  HeadSource
	opts   AgentOptions
	clock  Clock
	log    zerolog.Logger

	loops  []*envLoop
	byName map[string]*envLoop

	mu      sync.Mutex // guards running and the guarded fields of every envLoop
	running bool
}

// envLoop is one environment's share of the agent. The fields below mu are
// read by Status, Sync, Ready and Alive from other goroutines.
type envLoop struct {
	env Environment
	// wake has capacity 1: a send that finds it full is dropped, which is
	// what makes a burst of nudges during a pass yield one more pass.
	wake chan struct{}

	// Guarded by Agent.mu.
	pending   string // strongest trigger asked for since the loop last looked
	status    EnvStatus
	hist      *history
	ready     bool
	beat      time.Time     // when the loop last came back to wait for events
	waits     int           // how many times it did (tests use it to know the loop is idle)
	busySince time.Time     // zero unless a pass or head check is in flight
	busyFor   time.Duration // how long that may take before the loop counts as wedged
	// healthy mirrors the Runner's record of healthy revisions, newest
	// first; quarantine the commits held back (persisted here).
	healthy    []HealthyRevision
	quarantine []Quarantine
	// rollbackQueued is set by Rollback for the loop to act on.
	rollbackQueued bool
	// alerting is set once a failure event went out, until a recovery.
	alerting bool
}

// loopState is what one environment loop remembers between events. Only
// its goroutine touches it.
type loopState struct {
	lastHead   string // branch head at the last pass
	transient  bool   // the last pass (or head check) failed with a git or engine error
	headFailed bool   // the last head check failed
	passError  string // error of the last pass, "" when it did not fail
	passes     int    // passes run, to see whether an event ran one
	waiting    bool   // the last pass failed permanently ...
	waitHead   string // ... at this branch head
	backoff    Backoff
	retry      <-chan time.Time // nil unless a retry is scheduled
}

// NewAgent prepares an agent for r's environments; it loads each
// environment's history and the record of its last deployment, so Status
// answers before the first pass.
func NewAgent(r *Runner, heads HeadSource, opts AgentOptions) (*Agent, error) {
	if r == nil || heads == nil {
		return nil, errors.New("agent: a runner and a head source are required")
	}
	if len(opts.Environments) == 0 {
		return nil, errors.New("agent: no environments to run; add at least one [[environment]] to the config")
	}
	setDefault(&opts.PollInterval, DefaultPollInterval)
	setDefault(&opts.DriftInterval, DefaultDriftInterval)
	setDefault(&opts.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&opts.PassTimeout, DefaultPassTimeout)
	setDefault(&opts.HeadTimeout, DefaultHeadTimeout)
	if opts.HistorySize <= 0 {
		opts.HistorySize = DefaultHistorySize
	}
	if opts.StateDir == "" {
		opts.StateDir = r.StateDir
	}
	a := &Agent{runner: r, heads: heads, opts: opts, clock: opts.Clock, log: opts.Log, byName: map[string]*envLoop{}}
	if a.clock == nil {
		a.clock = realClock{}
	}
	now := a.clock.Now()
	for _, env := range opts.Environments {
		if env.Name == "" || env.Name == "." || env.Name == ".." || strings.ContainsAny(env.Name, "/\\\x00") {
			// It names a directory under the state dir.
			return nil, fmt.Errorf("agent: environment name %q cannot be a directory name; use letters, digits, '-' and '_'", env.Name)
		}
		if _, dup := a.byName[env.Name]; dup {
			return nil, fmt.Errorf("agent: environment %q is listed twice", env.Name)
		}
		l := &envLoop{env: env, wake: make(chan struct{}, 1)}
		l.hist = loadHistory(opts.StateDir, env.Name, opts.HistorySize, now, a.log)
		var err error
		if l.healthy, err = loadHealthy(opts.StateDir, env.Name); err != nil {
			a.log.Warn().Err(err).Str("env", env.Name).Msg("ignoring the unreadable record of healthy revisions: no rollback target until the next healthy pass")
		}
		if l.quarantine, err = loadQuarantine(opts.StateDir, env.Name); err != nil {
			// Failing open would redeploy a release known to be broken.
			return nil, fmt.Errorf("agent: environment %s: quarantined commits: %w", env.Name, err)
		}
		l.status = a.restoredStatus(env, l.hist)
		l.status.Quarantined = quarantinedCommits(l.quarantine)
		if len(l.healthy) > 0 {
			l.status.LastHealthy = l.healthy[0].Commit
		}
		a.loops = append(a.loops, l)
		a.byName[env.Name] = l
	}
	return a, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// restoredStatus is what is known of env before any pass of this process:
// its last recorded pass, and what runs from the deployment record. A
// deleted state dir leaves these empty until the first pass re-derives
// them from git and the engine.
func (a *Agent) restoredStatus(env Environment, h *history) EnvStatus {
	st := EnvStatus{Name: env.Name, Project: env.Project, Passes: map[string]int{}}
	if n := len(h.records); n > 0 {
		last := h.records[n-1]
		st.LastPass = &last
		st.Pinned = last.Commit
		if last.Result == ResultFailed || last.Result == ResultRolledBack {
			st.LastError = last.Error
		}
		for i := n - 1; i >= 0; i-- {
			if r := h.records[i].Result; r != ResultFailed && r != ResultRolledBack {
				st.LastSuccess = h.records[i].Start
				break
			}
		}
		for i := n - 1; i >= 0; i-- {
			if h.records[i].Class == ClassHealth {
				st.LastFailure = h.records[i].Error
				break
			}
		}
	}
	d, err := loadDeployed(a.opts.StateDir, env.Name, env.Project)
	if err != nil {
		a.log.Warn().Err(err).Str("env", env.Name).Msg("ignoring the unreadable record of the last deployment; the first pass re-derives it")
	}
	if d != nil {
		st.Running = d.Commit
	}
	return st
}

// Run drives every environment until ctx is done, then waits for the passes
// in flight (each bounded by ShutdownGrace after ctx is done). It returns
// nil on a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("agent: already running")
	}
	a.running = true
	now := a.clock.Now()
	for _, l := range a.loops {
		l.beat = now
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	var wg sync.WaitGroup
	for _, l := range a.loops {
		wg.Go(func() { a.loop(ctx, l) })
	}
	wg.Wait()
	return nil
}

// Sync nudges env ("" = every environment). TriggerSync always runs a
// pass; any other trigger (TriggerWebhook) asks the loop to check the branch
// now, as a poll would. It never blocks: nudges that arrive while one is
// queued are merged into it.
func (a *Agent) Sync(env string, trigger string) error {
	if trigger == "" {
		trigger = TriggerSync
	}
	targets := a.loops
	if env != "" {
		l, ok := a.byName[env]
		if !ok {
			return a.unknown(env)
		}
		targets = []*envLoop{l}
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
func stronger(queued, next string) string {
	if queued == "" || next == TriggerSync {
		return next
	}
	return queued
}

// NothingToRollBackError is Rollback's answer when the environment has no
// healthy revision other than the pinned commit.
type NothingToRollBackError struct {
	Environment string
	Pinned      string
}

func (e *NothingToRollBackError) Error() string {
	return fmt.Sprintf("environment %s has no healthy revision to roll back to (other than the pinned %s): one is recorded after each release that passes the health gate", e.Environment, short(e.Pinned))
}

// Conflict is true: the API answers 409.
func (e *NothingToRollBackError) Conflict() bool { return true }

// Retry clears env's quarantine and queues a pass: the pinned commit is
// tried again, health gate and rollback included.
func (a *Agent) Retry(env string) error {
	l, ok := a.byName[env]
	if !ok {
		return a.unknown(env)
	}
	a.mu.Lock()
	if len(l.quarantine) > 0 {
		a.log.Info().Str("env", env).Strs("released", quarantinedCommits(l.quarantine)).Msg("quarantine cleared by lockstep retry")
		a.setQuarantine(l, nil, a.log)
		l.status.Waiting = ""
	}
	a.mu.Unlock()
	return a.Sync(env, TriggerSync)
}

// Rollback queues the emergency brake for env: apply its last healthy
// revision (other than the pinned commit) again, from the release
// directory on disk, without asking git, and hold the pinned commit back
// until the pin names another one. It fails with *NothingToRollBackError
// when there is no such revision.
func (a *Agent) Rollback(env string) error {
	l, ok := a.byName[env]
	if !ok {
		return a.unknown(env)
	}
	a.mu.Lock()
	target, ok := rollbackTarget(l.healthy, l.status.Pinned)
	if ok {
		l.rollbackQueued = true
	}
	pinned := l.status.Pinned
	a.mu.Unlock()
	if !ok {
		return &NothingToRollBackError{Environment: env, Pinned: pinned}
	}
	a.log.Info().Str("env", env).Str("to", target.Commit).Msg("rollback requested")
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func (a *Agent) unknown(env string) error {
	known := make([]string, len(a.loops))
	for i, l := range a.loops {
		known[i] = l.env.Name
	}
	return &UnknownEnvironmentError{Name: env, Known: known}
}

// Status returns a copy of every environment's status, in config order.
func (a *Agent) Status() []EnvStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]EnvStatus, len(a.loops))
	for i, l := range a.loops {
		s := l.status
		s.Passes = maps.Clone(s.Passes)
		if s.LastPass != nil {
			p := *s.LastPass
			s.LastPass = &p
		}
		out[i] = s
	}
	return out
}

// History returns up to limit of env's most recent passes, newest last;
// limit <= 0 returns all that are kept.
func (a *Agent) History(env string, limit int) ([]PassRecord, error) {
	l, ok := a.byName[env]
	if !ok {
		return nil, a.unknown(env)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return l.hist.last(limit), nil
}

// Ready reports whether every environment has finished its first pass,
// whatever its result: from then on the status says something true.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.loops {
		if !l.ready {
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

// loop is one environment's event loop: a first pass, then whatever its
// timers and nudges ask for, one thing at a time, until ctx is done.
func (a *Agent) loop(ctx context.Context, l *envLoop) {
	st := &loopState{backoff: Backoff{Initial: a.opts.BackoffInitial, Max: a.opts.BackoffMax}}
	log := a.log.With().Str("env", l.env.Name).Logger()
	a.pass(ctx, l, st, TriggerStart)
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
			case TriggerSync:
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
			a.check(ctx, l, st, TriggerPoll)
		case <-st.retry:
			st.retry = nil
			a.check(ctx, l, st, TriggerRetry)
		case <-drift:
			drift = a.clock.After(a.opts.DriftInterval)
			switch {
			case st.waiting:
				log.Debug().Msg("drift check skipped: waiting for the branch to move after a permanent error")
			case st.retry != nil:
				log.Debug().Msg("drift check skipped: backing off after a failure, the retry will run a pass")
			default:
				a.pass(ctx, l, st, TriggerDrift)
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
func (a *Agent) check(ctx context.Context, l *envLoop, st *loopState, trigger string) {
	log := a.log.With().Str("env", l.env.Name).Str("trigger", trigger).Logger()
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
		return "", &StepError{Step: StepSource, Err: err}
	}
	return head, nil
}

// headFailed notes a failed head check in the status and schedules a retry
// with backoff: the git host is not asked again before it.
func (a *Agent) headFailed(l *envLoop, st *loopState, err error, log zerolog.Logger) {
	st.headFailed = true
	delay := st.backoff.Next()
	st.retry = a.clock.After(delay)
	class := Classify(err)
	log.Info().Err(err).Str("class", class).Dur("retry_in", delay).Msg("cannot check the branch head")
	a.mu.Lock()
	defer a.mu.Unlock()
	l.status.LastError = err.Error()
	l.status.NextRetry = a.clock.Now().Add(delay)
	switch class {
	case ClassGit, ClassPermanent:
		l.status.GitErrors++
	case ClassEngine:
		l.status.EngineErrors++
	}
}

func (a *Agent) setBusy(l *envLoop, limit time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if limit == 0 {
		l.busySince, l.busyFor = time.Time{}, 0
		// Coming back from a long pass is progress too.
		l.beat = a.clock.Now()
		return
	}
	l.busySince, l.busyFor = a.clock.Now(), limit
}

// pass runs one pass of l's environment, records it and decides what comes
// next: nothing, a retry after backoff, or waiting for the branch to move.
// A pinned commit in quarantine is not applied. A release that fails the
// health gate is quarantined and the last healthy revision applied again.
func (a *Agent) pass(ctx context.Context, l *envLoop, st *loopState, trigger string) {
	if ctx.Err() != nil {
		return // shutting down: start nothing new
	}
	st.passes++
	start := a.clock.Now()
	id := newPassID(start)
	plog := a.log.With().Str("pass", id).Logger()
	runner := a.passRunner(plog)

	a.setBusy(l, a.opts.PassTimeout+a.opts.ShutdownGrace)
	pctx, cancel := a.passContext(ctx)
	rev, err := runner.Resolve(pctx, l.env)
	res := &PassResult{Environment: l.env.Name, Project: l.env.Project, Head: rev.Head, Commit: rev.Commit}
	if err == nil {
		if q, held := a.checkQuarantine(l, rev, plog); held {
			cancel()
			a.setBusy(l, 0)
			a.skipQuarantined(l, st, rev, q, trigger, plog)
			return
		}
		res, err = runner.ApplyRevision(pctx, l.env, rev)
	}
	cancel()
	a.setBusy(l, 0)

	a.mu.Lock()
	previous := l.status.Running
	a.mu.Unlock()
	rec := PassRecord{ID: id, Environment: l.env.Name, Trigger: trigger, Start: start.UTC()}
	fillRecord(&rec, res)
	var (
		running string     // what runs after the pass, when known to have changed
		healthy []Revision // revisions found healthy, oldest first
		events  []Event
	)
	if res != nil && res.Healthy {
		healthy = append(healthy, rev)
	}
	var ge *GateError
	switch {
	case err != nil && errors.As(err, &ge):
		running = rev.Commit // applied, just not healthy
		rec.Result, rec.Error, rec.Class = ResultFailed, err.Error(), ClassHealth
		rec.Service, rec.Logs = ge.Service, ge.Logs
		a.quarantineCommit(l, Quarantine{Commit: rev.Commit, Service: ge.Service, Reason: ge.Error(), At: start.UTC()}, plog)
		a.mu.Lock()
		target, ok := rollbackTarget(l.healthy, rev.Commit)
		a.mu.Unlock()
		events = append(events, Event{Kind: EventFailure, Commit: rev.Commit, Previous: target.Commit, Service: ge.Service, Reason: ge.Reason, Logs: ge.Logs})
		if !ok {
			rec.Error += "; no healthy revision to roll back to: left running and quarantined"
			plog.Error().Str("env", l.env.Name).Str("commit", rev.Commit).Str("service", ge.Service).Str("reason", ge.Reason).
				Msg("release failed its health gate and there is no healthy revision to go back to: left running, quarantined")
			break
		}
		plog.Warn().Str("env", l.env.Name).Str("commit", rev.Commit).Str("service", ge.Service).Str("reason", ge.Reason).Str("to", target.Commit).
			Msg("release failed its health gate: rolling back to the last healthy revision")
		rbRev, rbRes, rbErr := a.rollbackTo(ctx, l, &runner, target, plog)
		if rbRes != nil && rbRes.Healthy {
			healthy = append(healthy, rbRev)
		}
		if rbErr != nil {
			if rbRes != nil && rbRes.Applied != nil && errors.As(rbErr, new(*GateError)) {
				running = target.Commit
			}
			rec.Error += fmt.Sprintf("; ROLLBACK to %s FAILED too: %v", short(target.Commit), rbErr)
			plog.Error().Err(rbErr).Str("env", l.env.Name).Str("commit", rev.Commit).Str("to", target.Commit).
				Msg("ROLLBACK FAILED: the last healthy revision did not come back healthy either; a person must act (nothing more is tried)")
			events = append(events, failureEvent(rev.Commit, target.Commit, fmt.Sprintf("rollback to %s failed: ", short(target.Commit)), rbErr))
			break
		}
		running = target.Commit
		rec.Result, rec.RolledBackTo = ResultRolledBack, target.Commit
		rec.Error += "; rolled back to " + short(target.Commit)
		events = append(events, Event{Kind: EventRollback, Commit: rev.Commit, Previous: target.Commit, Service: ge.Service, Reason: ge.Reason, Logs: ge.Logs})
	case err != nil:
		rec.Result, rec.Error, rec.Class = ResultFailed, err.Error(), Classify(err)
	case res.Paused && res.Plan != nil && !res.Plan.Empty():
		rec.Result = ResultPaused
	case res.Applied != nil:
		rec.Result = ResultApplied
		running = rev.Commit
	default:
		rec.Result = ResultNoop
		running = rev.Commit
	}
	rec.Duration = a.clock.Now().Sub(start)
	if rec.Result == ResultApplied && res.Healthy {
		events = append(events, Event{Kind: EventDeploy, Commit: rev.Commit, Previous: previous})
	}
	a.finishPass(l, st, rec, err, running, healthy, events, plog)
}

// manualRollback is `lockstep rollback`: apply the last healthy revision
// that is not the pinned commit, and hold the pinned commit back (in
// quarantine) until the pin names another one. It needs no git when the
// release directory is still on disk.
func (a *Agent) manualRollback(ctx context.Context, l *envLoop, st *loopState) {
	if ctx.Err() != nil {
		return
	}
	start := a.clock.Now()
	id := newPassID(start)
	plog := a.log.With().Str("pass", id).Logger()
	a.mu.Lock()
	pinned := l.status.Pinned
	target, ok := rollbackTarget(l.healthy, pinned)
	a.mu.Unlock()
	if !ok {
		plog.Error().Str("env", l.env.Name).Msg("rollback asked for, but there is no healthy revision to go back to")
		return
	}
	st.passes++
	runner := a.passRunner(plog)
	if pinned != "" {
		// First: whatever happens to the rollback, the pinned commit is
		// not applied again behind the operator's back.
		a.quarantineCommit(l, Quarantine{
			Commit: pinned, Manual: true, At: start.UTC(),
			Reason: fmt.Sprintf("held back by lockstep rollback to %s", short(target.Commit)),
		}, plog)
	}
	plog.Warn().Str("env", l.env.Name).Str("pinned", pinned).Str("to", target.Commit).Msg("rolling back on request")
	rev, res, err := a.rollbackTo(ctx, l, &runner, target, plog)
	rec := PassRecord{ID: id, Environment: l.env.Name, Trigger: TriggerRollback, Start: start.UTC(), Head: st.lastHead}
	fillRecord(&rec, res)
	rec.Head, rec.Commit = st.lastHead, pinned
	var (
		running string
		healthy []Revision
		events  []Event
	)
	if res != nil && res.Healthy {
		healthy = append(healthy, rev)
	}
	if err != nil {
		rec.Result, rec.Error, rec.Class = ResultFailed, fmt.Sprintf("rollback to %s: %v", short(target.Commit), err), Classify(err)
		var ge *GateError
		if errors.As(err, &ge) {
			rec.Service, rec.Logs = ge.Service, ge.Logs
			running = target.Commit
		}
		events = append(events, failureEvent(pinned, target.Commit, fmt.Sprintf("rollback to %s failed: ", short(target.Commit)), err))
	} else {
		rec.Result, rec.RolledBackTo = ResultRolledBack, target.Commit
		running = target.Commit
		events = append(events, Event{Kind: EventRollback, Commit: pinned, Previous: target.Commit, Reason: "lockstep rollback"})
	}
	rec.Duration = a.clock.Now().Sub(start)
	a.finishPass(l, st, rec, err, running, healthy, events, plog)
}

// rollbackTo applies target again, with a pass context of its own: the
// failed release may have used up most of the first one.
func (a *Agent) rollbackTo(ctx context.Context, l *envLoop, runner *Runner, target HealthyRevision, log zerolog.Logger) (Revision, *PassResult, error) {
	a.setBusy(l, a.opts.PassTimeout+a.opts.ShutdownGrace)
	defer a.setBusy(l, 0)
	pctx, cancel := a.passContext(ctx)
	defer cancel()
	rev, err := runner.Restore(pctx, l.env, target)
	if err != nil {
		return rev, nil, err
	}
	res, err := runner.ApplyRevision(pctx, l.env, rev)
	if err == nil {
		log.Info().Str("env", l.env.Name).Str("commit", target.Commit).Msg("rolled back: the last healthy revision runs and passed the health gate")
	}
	return rev, res, err
}

func failureEvent(commit, previous, prefix string, err error) Event {
	ev := Event{Kind: EventFailure, Commit: commit, Previous: previous, Reason: prefix + err.Error()}
	var ge *GateError
	if errors.As(err, &ge) {
		ev.Service, ev.Logs = ge.Service, ge.Logs
	}
	return ev
}

// fillRecord copies what a pass result says into rec.
func fillRecord(rec *PassRecord, res *PassResult) {
	if res == nil {
		return
	}
	rec.Head, rec.Commit = res.Head, res.Commit
	if res.Plan != nil {
		rec.Plan = res.Plan.Summary()
	}
	if res.Applied != nil {
		rec.Created, rec.Recreated, rec.Removed = res.Applied.Created, res.Applied.Recreated, res.Applied.Removed
	}
}

// finishPass decides what comes after a pass (nothing, a retry after
// backoff, waiting for the branch), records it, logs it and tells the
// hooks.
func (a *Agent) finishPass(l *envLoop, st *loopState, rec PassRecord, err error, running string, healthy []Revision, events []Event, plog zerolog.Logger) {
	if rec.Head != "" {
		st.lastHead = rec.Head
	}
	st.passError = rec.Error

	var delay time.Duration
	st.transient, st.waiting = false, false
	switch rec.Class {
	case "":
		if rec.Result != ResultFailed {
			st.backoff.Reset()
			st.retry = nil
		}
		// A pass cut short by shutdown decides nothing.
	case ClassGit, ClassEngine:
		st.transient = true
		delay = st.backoff.Next()
		st.retry = a.clock.After(delay)
	case ClassPermanent:
		st.waiting, st.waitHead = true, rec.Head
		st.backoff.Reset()
		st.retry = nil
	case ClassHealth:
		// The commit is quarantined: passes skip it until the pin moves
		// or an operator retries. Nothing to schedule.
		st.backoff.Reset()
		st.retry = nil
	}

	a.mu.Lock()
	for _, ev := range events {
		if ev.Kind == EventFailure {
			l.alerting = true
		}
	}
	if l.alerting && len(healthy) > 0 && (rec.Result == ResultApplied || rec.Result == ResultNoop) {
		l.alerting = false
		events = append(events, Event{Kind: EventRecovery, Commit: rec.Commit, Previous: l.status.Running})
	}
	a.recordPass(l, rec, delay, err, running, healthy)
	a.mu.Unlock()

	ev := plog.Info()
	switch rec.Result {
	case ResultNoop:
		ev = plog.Debug()
	case ResultRolledBack:
		ev = plog.Warn()
	case ResultFailed:
		if rec.Class == ClassHealth {
			ev = plog.Error()
		}
	}
	ev = ev.Str("env", l.env.Name).Str("commit", rec.Commit).Str("trigger", rec.Trigger).
		Str("result", rec.Result).Str("plan", rec.Plan).Dur("took", rec.Duration)
	if rec.RolledBackTo != "" {
		ev = ev.Str("rolled_back_to", rec.RolledBackTo)
	}
	if rec.Error != "" {
		ev = ev.Str("error", rec.Error).Str("class", rec.Class)
		if delay > 0 {
			ev = ev.Dur("retry_in", delay)
		}
	}
	ev.Msg("pass finished")
	if a.opts.OnPass != nil {
		a.opts.OnPass(rec)
	}
	if a.opts.OnEvent != nil {
		now := a.clock.Now().UTC()
		for _, e := range events {
			e.Environment, e.Time = l.env.Name, now
			a.opts.OnEvent(e)
		}
	}
}

// passRunner is the Runner for one pass: its lines carry the pass id, and
// the agent's health options apply. A shallow copy: the Runner holds no
// state between passes.
func (a *Agent) passRunner(log zerolog.Logger) Runner {
	r := *a.runner
	r.Log = log
	h := a.opts.Health
	if h.Timeout > 0 {
		r.Gate.Timeout = h.Timeout
	}
	if h.Bake > 0 {
		r.Gate.Bake = h.Bake
	}
	if h.PollInterval > 0 {
		r.Gate.PollInterval = h.PollInterval
	}
	if h.CallTimeout > 0 {
		r.Gate.CallTimeout = h.CallTimeout
	}
	if h.LogLines > 0 {
		r.Gate.LogLines = h.LogLines
	}
	if h.Clock != nil {
		r.Gate.Clock = h.Clock
	}
	return r
}

// checkQuarantine reports whether rev's commit is quarantined. When it is
// not but others are, the pin has moved on: their quarantine is lifted.
func (a *Agent) checkQuarantine(l *envLoop, rev Revision, log zerolog.Logger) (Quarantine, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if q, held := quarantined(l.quarantine, rev.Commit); held {
		return q, true
	}
	if len(l.quarantine) > 0 {
		log.Info().Str("env", l.env.Name).Str("commit", rev.Commit).Strs("released", quarantinedCommits(l.quarantine)).
			Msg("the pin names another commit: quarantine lifted")
		a.setQuarantine(l, nil, log)
	}
	return Quarantine{}, false
}

// quarantineCommit holds q.Commit back and persists it.
func (a *Agent) quarantineCommit(l *envLoop, q Quarantine, log zerolog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := []Quarantine{q}
	for _, old := range l.quarantine {
		if old.Commit != q.Commit {
			list = append(list, old)
		}
	}
	a.setQuarantine(l, list, log)
}

// setQuarantine replaces l's quarantine and persists it. Called with a.mu
// held. A failed write is logged: the quarantine holds in memory, and is
// lost only if the agent restarts before the disk is writable again.
func (a *Agent) setQuarantine(l *envLoop, list []Quarantine, log zerolog.Logger) {
	l.quarantine = list
	l.status.Quarantined = quarantinedCommits(list)
	if err := saveQuarantine(a.opts.StateDir, l.env.Name, list); err != nil {
		log.Error().Err(err).Str("env", l.env.Name).Msg("cannot persist the quarantine; it holds until the agent restarts")
	}
}

// skipQuarantined ends a pass that found the pinned commit quarantined:
// nothing is applied or recorded in the history; the status says why.
func (a *Agent) skipQuarantined(l *envLoop, st *loopState, rev Revision, q Quarantine, trigger string, log zerolog.Logger) {
	if rev.Head != "" {
		st.lastHead = rev.Head
	}
	st.transient, st.waiting = false, false
	st.backoff.Reset()
	st.retry = nil
	ev := log.Debug()
	if trigger == TriggerSync {
		ev = log.Info() // an operator asked: say why nothing happens
	}
	ev.Str("env", l.env.Name).Str("commit", rev.Commit).Str("trigger", trigger).Str("quarantined", q.Reason).
		Msg("pinned commit is quarantined: not applying it; pin another commit or run `lockstep retry " + l.env.Name + "`")
	a.mu.Lock()
	defer a.mu.Unlock()
	l.status.Pinned = rev.Commit
	l.status.NextRetry = time.Time{}
	l.status.Waiting = quarantineWaiting(l.env.Name, q)
	l.ready = true
}

func quarantineWaiting(env string, q Quarantine) string {
	return fmt.Sprintf("commit %s is quarantined (%s): waiting for the pin to name another commit (or `lockstep retry %s`)", short(q.Commit), q.Reason, env)
}

// recordPass updates l's status and history with rec. running is the
// commit that runs now when the pass changed or confirmed it ("" keeps
// the status's), healthy the revisions the pass found healthy. Called with
// a.mu held.
func (a *Agent) recordPass(l *envLoop, rec PassRecord, delay time.Duration, err error, running string, healthy []Revision) {
	s := &l.status
	recCopy := rec
	s.LastPass = &recCopy
	s.Passes[rec.Result]++
	s.Recreated += rec.Recreated
	if rec.Commit != "" {
		s.Pinned = rec.Commit
	}
	if running != "" {
		s.Running = running
	}
	for _, rev := range healthy {
		l.healthy = pushHealthy(l.healthy, healthyOf(rev, rec.Start))
	}
	if len(l.healthy) > 0 {
		s.LastHealthy = l.healthy[0].Commit
	}
	s.NextRetry = time.Time{}
	s.Waiting = ""
	if rec.Class == ClassHealth {
		s.GateFailures++
		s.LastFailure = rec.Error
	}
	switch rec.Result {
	case ResultApplied, ResultNoop, ResultPaused:
		s.LastError = ""
		s.LastSuccess = rec.Start
	case ResultRolledBack:
		s.Rollbacks++
		s.LastError = rec.Error
	case ResultFailed:
		s.LastError = rec.Error
		switch rec.Class {
		case ClassGit:
			s.GitErrors++
			s.NextRetry = rec.Start.Add(rec.Duration).Add(delay)
		case ClassEngine:
			s.EngineErrors++
			s.NextRetry = rec.Start.Add(rec.Duration).Add(delay)
		case ClassPermanent:
			s.Waiting = waitingReason(err, rec)
		}
	}
	if q, held := quarantined(l.quarantine, s.Pinned); held {
		s.Waiting = quarantineWaiting(l.env.Name, q)
	}
	s.Quarantined = quarantinedCommits(l.quarantine)
	if werr := l.hist.add(rec); werr != nil {
		a.log.Warn().Err(werr).Str("env", l.env.Name).Str("pass", rec.ID).Msg("cannot persist the pass history; it is kept in memory")
	}
	l.ready = true
}

// waitingReason says, for the status, why the agent does not retry and
// what makes it try again.
func waitingReason(err error, rec PassRecord) string {
	what, at := "permanent error", rec.Commit
	var se *StepError
	if errors.As(err, &se) {
		switch se.Step {
		case StepSource:
			what = "pin or repository error"
		case StepLoad:
			what = "compose error"
		case StepApply, StepObserve:
			what = "cannot apply"
		}
	}
	if at == "" {
		at = rec.Head
	}
	return fmt.Sprintf("%s at %s: waiting for the branch to move (or `lockstep sync`)", what, short(at))
}

// passContext is the context of one pass: bounded by PassTimeout, and not
// cancelled with ctx right away: shutdown lets the pass go on for
// ShutdownGrace, so a pull or a recreate in flight can finish rather than
// leave the host half-way.
func (a *Agent) passContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.PassTimeout)
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-a.clock.After(a.opts.ShutdownGrace):
			cancel()
		case <-pctx.Done():
		}
	})
	return pctx, func() {
		stop()
		cancel()
	}
}

// newPassID is a short id that sorts by time: milliseconds in base 36 and
// four random bytes.
func newPassID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return strconv.FormatInt(now.UnixMilli(), 36) + hex.EncodeToString(b[:])
}
