package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// HeadSource is the cheap "did the branch move?" check: one ref listing, no
// objects fetched. gitsource.Releases implements it.
type HeadSource interface {
	Head(ctx context.Context) (string, error)
}

// Defaults, for options left zero.
const (
	DefaultPollInterval  = time.Minute
	DefaultDriftInterval = 5 * time.Minute
	DefaultShutdownGrace = time.Minute
	DefaultPassTimeout   = pass.DefaultPassTimeout
	DefaultHeadTimeout   = time.Minute
)

// Options configure an Agent. Zero values take the defaults above.
type Options struct {
	Environments  []pass.Environment
	PollInterval  time.Duration   // jittered +-10%
	DriftInterval time.Duration   // full pass even when git is unchanged
	ShutdownGrace time.Duration   // how long the pass in flight may go on after ctx is cancelled
	Clock         reconcile.Clock // nil = real
	Log           zerolog.Logger
	OnPass        func(reconcile.PassRecord) // called after every pass (metrics); must not block
	// OnEvent is called for failures, rollbacks, recoveries and deploys
	// (notifications), from the environment's loop: it must not block.
	OnEvent func(reconcile.Event)

	// PassTimeout bounds one pass (pull and health waits included), and
	// separately the rollback that may follow it.
	PassTimeout time.Duration
	// HeadTimeout bounds one branch head check.
	HeadTimeout time.Duration
	// BackoffInitial and BackoffMax shape the retry delays after a git or
	// engine failure (see reconcile.Backoff).
	BackoffInitial time.Duration
	BackoffMax     time.Duration

	// Sets are the [[environment_set]]s: environments made from the pin
	// files their globs match at the branch head, started and torn down
	// as the files come and go (see sets.go). They need Pins.
	Sets []envset.Set
	// Pins lists a set's pin files at the branch head; gitsource.Releases
	// implements it.
	Pins PinLister
}

// Agent keeps every environment converged: one loop per environment, one
// pass at a time in each, triggered by its poll timer, drift timer, retries
// and nudges (Sync), which coalesce.
type Agent struct {
	pipeline *pass.Pipeline
	store    *state.Store
	heads    HeadSource
	opts     Options
	clock    reconcile.Clock
	log      zerolog.Logger

	mu      sync.Mutex // guards loops, byName, sets' findings, running and the guarded fields of every envLoop
	loops   []*envLoop // fixed environments in config order, then the sets' as they start
	byName  map[string]*envLoop
	sets    []*setRunner
	fixed   map[string]bool // names and projects of the fixed environments
	running bool
}

// envLoop is one environment's share of the agent. The fields below mu are
// read by Status, Sync, Ready and Alive from other goroutines.
type envLoop struct {
	env pass.Environment
	// wake has capacity 1: a send that finds it full is dropped, which is
	// what makes a burst of nudges during a pass yield one more pass.
	wake chan struct{}

	// Guarded by Agent.mu.
	pending   reconcile.Trigger // strongest trigger asked for since the loop last looked
	status    reconcile.EnvStatus
	ready     bool
	beat      time.Time     // when the loop last came back to wait for events
	waits     int           // how many times it did (tests use it to know the loop is idle)
	busySince time.Time     // zero unless a pass or head check is in flight
	busyFor   time.Duration // how long that may take before the loop counts as wedged
	// rollbackQueued is set by Rollback for the loop to act on.
	rollbackQueued bool
	// alerting is set once a failure event went out, until a recovery.
	alerting bool
	// late is set for a set's environment started after the agent was
	// ready: a pin file appearing does not make the agent unready.
	late bool

	// A set's environment runs under a context of its own, cancelled to
	// stop it before its teardown; done is closed when its loop returned.
	// Written before the loop starts, read by the set's runner only.
	cancel context.CancelFunc
	done   chan struct{}
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
	backoff    reconcile.Backoff
	retry      <-chan time.Time // nil unless a retry is scheduled
	// opens fires when the deploy window a held release waits for opens;
	// nil unless the last pass held one.
	opens <-chan time.Time
}

// New prepares an agent for opts.Environments, run through p; it reads
// each environment's history and deployment record, so Status answers
// before the first pass. The agent's passes are bounded by its own
// PassTimeout and ShutdownGrace: p's PassContext is replaced in a copy.
func New(p *pass.Pipeline, heads HeadSource, opts Options) (*Agent, error) {
	if p == nil || heads == nil || p.State == nil {
		return nil, errors.New("agent: a pipeline with a state store and a head source are required")
	}
	if len(opts.Environments) == 0 && len(opts.Sets) == 0 {
		return nil, errors.New("agent: no environments to run; add at least one [[environment]] (or [[environment_set]]) to the config")
	}
	if len(opts.Sets) > 0 && opts.Pins == nil {
		return nil, errors.New("agent: environment sets need a pin lister")
	}
	setDefault(&opts.PollInterval, DefaultPollInterval)
	setDefault(&opts.DriftInterval, DefaultDriftInterval)
	setDefault(&opts.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&opts.PassTimeout, DefaultPassTimeout)
	setDefault(&opts.HeadTimeout, DefaultHeadTimeout)
	a := &Agent{store: p.State, heads: heads, opts: opts, clock: opts.Clock, log: opts.Log, byName: map[string]*envLoop{}, fixed: map[string]bool{}}
	if a.clock == nil {
		a.clock = reconcile.WallClock
	}
	pipeline := *p
	pipeline.PassContext = a.passContext
	if pipeline.Clock == nil {
		pipeline.Clock = a.clock
	}
	a.pipeline = &pipeline
	for _, env := range opts.Environments {
		if err := state.CheckEnvironment(env.Name); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if _, dup := a.byName[env.Name]; dup {
			return nil, fmt.Errorf("agent: environment %q is listed twice", env.Name)
		}
		if _, err := a.store.Quarantine(env.Name); err != nil {
			// Failing open would redeploy a release known to be broken.
			return nil, fmt.Errorf("agent: environment %s: quarantined commits: %w", env.Name, err)
		}
		l := &envLoop{env: env, wake: make(chan struct{}, 1)}
		l.status = a.restoredStatus(env)
		a.loops = append(a.loops, l)
		a.byName[env.Name] = l
		a.fixed[env.Name], a.fixed[env.Project] = true, true
	}
	for _, s := range opts.Sets {
		a.sets = append(a.sets, &setRunner{spec: s, wake: make(chan struct{}, 1)})
	}
	return a, nil
}

// foldHold sets st's hold from rec: a record that holds a release sets
// it, any other that is not a failure clears it; a failure says nothing
// of it (it may have stopped before the hold was known), and foldHold
// reports false so that an earlier record decides.
func foldHold(st *reconcile.EnvStatus, rec reconcile.PassRecord) bool {
	switch h := rec.Held; {
	case h != nil:
		st.Held, st.Pending, st.HeldBy, st.Opens = h.Reason, h.Commit, h.Kind, h.Opens
	case rec.Result == reconcile.ResultFailed:
		return false
	default:
		st.Held, st.Pending, st.HeldBy, st.Opens = "", "", "", time.Time{}
	}
	return true
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// restoredStatus is what is known of env before any pass of this process:
// its last recorded pass. A deleted state dir leaves it empty until the
// first pass re-derives it from git and the engine.
func (a *Agent) restoredStatus(env pass.Environment) reconcile.EnvStatus {
	st := reconcile.EnvStatus{Name: env.Name, Project: env.Project, Passes: map[reconcile.Result]int{}}
	if env.Set != "" {
		st.Set, st.URL, st.PinFile = env.Set, env.URL, env.PinFile
	}
	recs, err := a.store.History(env.Name, 0)
	if err != nil {
		a.log.Warn().Err(err).Str("env", env.Name).Msg("ignoring the unreadable pass history")
	}
	foldHistory(&st, recs)
	return st
}

// foldHistory sets what the history says of the last passes in st: the
// last pass, the commit it pinned, its error, the last success and the
// last health gate failure.
func foldHistory(st *reconcile.EnvStatus, recs []reconcile.PassRecord) {
	n := len(recs)
	if n == 0 {
		return
	}
	last := recs[n-1]
	st.LastPass = &last
	st.Pinned = last.Commit
	st.Swarm = last.Swarm
	if last.Held != nil {
		st.Pinned = last.Held.Commit
	}
	for i := n - 1; i >= 0; i-- {
		if foldHold(st, recs[i]) {
			break
		}
	}
	st.LastError = ""
	if last.Result == reconcile.ResultFailed || last.Result == reconcile.ResultRolledBack {
		st.LastError = last.Error
	}
	for i := n - 1; i >= 0; i-- {
		if r := recs[i].Result; r != reconcile.ResultFailed && r != reconcile.ResultRolledBack {
			st.LastSuccess = recs[i].Start
			break
		}
	}
	for i := n - 1; i >= 0; i-- {
		if recs[i].Class == reconcile.ClassHealth {
			st.LastFailure = recs[i].Error
			break
		}
	}
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
	fixed := slices.Clone(a.loops)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	var wg sync.WaitGroup
	for _, l := range fixed {
		wg.Go(func() { a.loop(ctx, l) })
	}
	for _, s := range a.sets {
		wg.Go(func() { a.runSet(ctx, s, &wg) })
	}
	wg.Wait()
	return nil
}

// busyKey carries the envLoop a pass runs for in its context, so that
// passContext can restart the loop's busy deadline.
type busyKey struct{}

// passContext is the context of one pass: bounded by PassTimeout, and not
// cancelled with ctx right away: shutdown lets the pass go on for
// ShutdownGrace, so a pull or a recreate in flight can finish rather than
// leave the host half-way. The pipeline asks for one for the pass and
// another for the rollback that may follow: each restarts the loop's busy
// deadline, so Alive sees a wedged pass after PassTimeout+ShutdownGrace,
// not after twice that.
func (a *Agent) passContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if l, ok := ctx.Value(busyKey{}).(*envLoop); ok {
		a.setBusy(l, a.opts.PassTimeout+a.opts.ShutdownGrace)
	}
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
