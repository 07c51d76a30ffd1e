package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

const (
	head1 = "1111111111111111111111111111111111111111"
	head2 = "2222222222222222222222222222222222222222"
)

// agentGit stands in for gitsource behind both pass.Source (the pass) and
// HeadSource (the poll). The branch head is what the test sets; every
// revision resolves to fake.CommitA, whose release the fake engine runs.
type agentGit struct {
	mu        sync.Mutex
	head      string
	headErr   error
	headCalls int
	revCalls  map[string]int // Resolve calls: one per pass that asks git
	// gate, when set for an environment, holds its Resolve calls until
	// the gate is closed (or, with honourCtx, the pass context ends).
	gate      map[string]chan struct{}
	honourCtx bool
	entered   chan string // receives the environment of every Resolve call
	ctxErrs   []error     // the pass context's error when each gated call went on
	revErr    error       // returned by Resolve when set
	pruned    int
	commit    string // what the pin resolves to; fake.CommitA when ""
	releases  string // when set, release dirs are made under it, so they exist on disk
}

func newAgentGit() *agentGit {
	return &agentGit{head: head1, revCalls: map[string]int{}, gate: map[string]chan struct{}{}, entered: make(chan string, 100)}
}

func (g *agentGit) Head(ctx context.Context) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		return "", errors.New("agentGit: Head called without a deadline")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.headCalls++
	return g.head, g.headErr
}

func (g *agentGit) Resolve(ctx context.Context, want gitsource.Want) (gitsource.Release, error) {
	g.mu.Lock()
	g.revCalls[want.Environment]++
	gate := g.gate[want.Environment]
	head, err := g.head, g.revErr
	g.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		return gitsource.Release{}, errors.New("agentGit: Resolve called without a deadline")
	}
	select {
	case g.entered <- want.Environment:
	default:
	}
	if gate != nil {
		if g.honourCtx {
			select {
			case <-gate:
			case <-ctx.Done():
			}
		} else {
			<-gate
		}
		g.mu.Lock()
		g.ctxErrs = append(g.ctxErrs, ctx.Err())
		g.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return gitsource.Release{}, err
		}
	}
	if err != nil {
		return gitsource.Release{}, err
	}
	g.mu.Lock()
	c := g.commit
	g.mu.Unlock()
	if c == "" {
		c = fake.CommitA
	}
	if want.Commit != "" {
		c = want.Commit
	}
	return gitsource.Release{Head: head, Commit: c, PinFile: want.PinFile}, nil
}

func (g *agentGit) AddPaths(ctx context.Context, rel gitsource.Release, paths []string) error {
	return nil
}

func (g *agentGit) AddMountPoints(ctx context.Context, rel gitsource.Release, paths []string) error {
	return nil
}

func (g *agentGit) Materialize(ctx context.Context, rel gitsource.Release) (gitsource.Release, error) {
	if _, ok := ctx.Deadline(); !ok {
		return rel, errors.New("agentGit: Materialize called without a deadline")
	}
	g.mu.Lock()
	releases := g.releases
	g.mu.Unlock()
	rel.Dir = "/var/lib/lockstep/releases/prod/" + rel.Commit
	if releases != "" {
		rel.Dir = filepath.Join(releases, rel.Commit)
		if err := os.MkdirAll(rel.Dir, 0o750); err != nil {
			return rel, err
		}
	}
	return rel, nil
}

func (g *agentGit) CheckFloor(ctx context.Context, floor, commit string) error { return nil }

func (g *agentGit) Prune(map[string]bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruned++
	return nil
}

// open lets env's held Revision calls (and all later ones) go on.
func (g *agentGit) open(env string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.gate[env]; ok {
		close(c)
		delete(g.gate, env)
	}
}

func (g *agentGit) set(f func(g *agentGit)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

func (g *agentGit) counts(env string) (heads, revisions int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.headCalls, g.revCalls[env]
}

type agentFixture struct {
	t      *testing.T
	git    *agentGit
	eng    *fake.Engine
	clock  *fake.Clock
	state  string
	runner *pass.Pipeline
	opts   Options
	logs   *fake.SyncBuffer

	mu      sync.Mutex
	loadErr error
	records []reconcile.PassRecord
	events  []reconcile.Event
	// variants change the project loaded at a commit (fake.CommitA loads
	// fake.Project as is).
	variants map[string]func(*compose.Project)

	a      *Agent
	cancel context.CancelFunc
	done   chan error
}

// newAgentFixture builds an agent over a real Pipeline whose git and engine
// are fakes; the engine already runs fake.Project at fake.CommitA, so passes are
// no-ops unless a test makes something fail.
func newAgentFixture(t *testing.T, envs ...string) *agentFixture {
	t.Helper()
	if len(envs) == 0 {
		envs = []string{"prod"}
	}
	o := fake.Converged(fake.Project())
	f := &agentFixture{t: t, git: newAgentGit(), eng: fake.NewEngine(), clock: fake.NewClock(), state: t.TempDir(), logs: &fake.SyncBuffer{}}
	f.eng.Observed = &o
	f.runner = &pass.Pipeline{
		Source: f.git,
		Load: func(ctx context.Context, env pass.Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.loadErr != nil {
				return nil, f.loadErr
			}
			p := fake.Project()
			p.ReleaseDir, p.Commit = rel.Dir, rel.Commit
			if v := f.variants[rel.Commit]; v != nil {
				v(p)
			}
			return p, nil
		},
		Backend: &reconcile.Host{Engine: f.eng, Options: reconcile.ApplyOptions{PollInterval: 1}},
		State:   state.New(f.state, 0, zerolog.New(f.logs)),
		Log:     zerolog.Nop(),
		Gate:    reconcile.GateOptions{Clock: fake.NewAutoClock()},
	}
	f.opts = Options{
		PollInterval:   time.Minute,
		DriftInterval:  10 * time.Hour,
		ShutdownGrace:  30 * time.Second,
		BackoffInitial: 2 * time.Second,
		BackoffMax:     time.Minute,
		Clock:          f.clock,
		Log:            zerolog.New(f.logs).Level(zerolog.DebugLevel),
		OnPass: func(r reconcile.PassRecord) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.records = append(f.records, r)
		},
		OnEvent: func(e reconcile.Event) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.events = append(f.events, e)
		},
	}
	for _, e := range envs {
		f.opts.Environments = append(f.opts.Environments, pass.Environment{Name: e, Project: "prod", PinFile: "environments/" + e + ".toml"})
	}
	return f
}

func (f *agentFixture) newAgent() *Agent {
	f.t.Helper()
	a, err := New(f.runner, f.git, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

// start runs a new agent until the test ends (or stop).
func (f *agentFixture) start() {
	f.t.Helper()
	f.a = f.newAgent()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.done = make(chan error, 1)
	a, done := f.a, f.done
	go func() { done <- a.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		for _, e := range f.opts.Environments {
			f.git.open(e.Name)
		}
		<-done
	})
}

// stop cancels the agent and waits for Run to return.
func (f *agentFixture) stop() {
	f.t.Helper()
	f.cancel()
	var err error
	fake.Eventually(f.t, "Run to return", func() bool {
		select {
		case err = <-f.done:
			f.done <- err // for the cleanup
			return true
		default:
			return false
		}
	})
	if err != nil {
		f.t.Fatalf("Run after cancel: %v, want nil", err)
	}
}

func (f *agentFixture) waits(env string) int {
	f.a.mu.Lock()
	defer f.a.mu.Unlock()
	return f.a.byName[env].waits
}

// settle waits until env's loop has handled whatever it was woken for and
// waits for events again: it came back to its select more than after times.
func (f *agentFixture) settle(env string, after int) {
	f.t.Helper()
	fake.Eventually(f.t, env+" loop to come back to waiting", func() bool { return f.waits(env) > after })
}

// advance moves the clock by d and waits for env's loop to handle it.
func (f *agentFixture) advance(env string, d time.Duration) {
	f.t.Helper()
	w := f.waits(env)
	f.clock.Advance(d)
	f.settle(env, w)
}

// nudge calls Sync and waits for env's loop to handle it.
func (f *agentFixture) nudge(env string, trigger reconcile.Trigger) {
	f.t.Helper()
	w := f.waits(env)
	if err := f.a.Sync(env, trigger); err != nil {
		f.t.Fatal(err)
	}
	f.settle(env, w)
}

func (f *agentFixture) passes() []reconcile.PassRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]reconcile.PassRecord{}, f.records...)
}

func (f *agentFixture) triggers() []string {
	var out []string
	for _, r := range f.passes() {
		out = append(out, string(r.Trigger)+":"+string(r.Result))
	}
	return out
}

func (f *agentFixture) status(env string) reconcile.EnvStatus {
	for _, s := range f.a.Status() {
		if s.Name == env {
			return s
		}
	}
	f.t.Fatalf("no status for %s", env)
	return reconcile.EnvStatus{}
}

func (f *agentFixture) setEngineFailure(err error) {
	f.eng.Mu.Lock()
	defer f.eng.Mu.Unlock()
	if err == nil {
		delete(f.eng.Fail, "observe")
		return
	}
	f.eng.Fail["observe"] = err
}

func (f *agentFixture) setLoadErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loadErr = err
}

// pollTick is more than one jittered poll interval.
const pollTick = time.Minute + 7*time.Second

func wantTriggers(t *testing.T, f *agentFixture, want ...string) {
	t.Helper()
	if got := f.triggers(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("passes (trigger:result): %q, want %q", got, want)
	}
}

func TestAgentCoalescesNudgesDuringAPass(t *testing.T) {
	f := newAgentFixture(t)
	f.git.gate["prod"] = make(chan struct{})
	f.start()
	<-f.git.entered // the start pass is in flight
	for i := range 1000 {
		trigger := reconcile.TriggerWebhook
		if i%3 == 0 {
			trigger = reconcile.TriggerSync
		}
		if err := f.a.Sync("prod", trigger); err != nil {
			t.Fatal(err)
		}
	}
	f.git.open("prod")
	f.settle("prod", 1) // the start pass, then one pass for the whole burst
	wantTriggers(t, f, "start:noop", "sync:noop")
	if _, revs := f.git.counts("prod"); revs != 2 {
		t.Fatalf("1000 nudges during a pass: %d passes in all, want 2", revs)
	}
}

func TestAgentSyncOfAllEnvironmentsAndUnknownOnes(t *testing.T) {
	f := newAgentFixture(t, "prod", "stage")
	f.start()
	f.settle("prod", 0)
	f.settle("stage", 0)
	wp, ws := f.waits("prod"), f.waits("stage")
	if err := f.a.Sync("", reconcile.TriggerSync); err != nil {
		t.Fatal(err)
	}
	f.settle("prod", wp)
	f.settle("stage", ws)
	for _, env := range []string{"prod", "stage"} {
		if _, revs := f.git.counts(env); revs != 2 {
			t.Errorf("%s: %d passes after Sync of all, want 2", env, revs)
		}
	}

	err := f.a.Sync("prdo", reconcile.TriggerSync)
	var unknown *UnknownEnvironmentError
	if !errors.As(err, &unknown) || unknown.Name != "prdo" || strings.Join(unknown.Known, ",") != "prod,stage" {
		t.Fatalf("Sync of an unknown environment: %v", err)
	}
	if !strings.Contains(err.Error(), `"prdo"`) || !strings.Contains(err.Error(), "prod, stage") {
		t.Errorf("message should name the typo and the known environments: %v", err)
	}
	if _, err := f.a.History("prdo", 0); !errors.As(err, &unknown) {
		t.Fatalf("History of an unknown environment: %v", err)
	}
}

func TestAgentPollWithUnchangedHeadDoesNoPass(t *testing.T) {
	f := newAgentFixture(t)
	f.start()
	f.settle("prod", 0)
	for tick := 1; tick <= 3; tick++ {
		f.advance("prod", pollTick)
		heads, revs := f.git.counts("prod")
		if heads != tick || revs != 1 {
			t.Fatalf("after poll tick %d: %d head checks and %d passes, want %d and 1", tick, heads, revs, tick)
		}
	}
	wantTriggers(t, f, "start:noop")
}

func TestAgentPollRunsAPassWhenTheBranchMoves(t *testing.T) {
	f := newAgentFixture(t)
	f.start()
	f.settle("prod", 0)
	f.git.set(func(g *agentGit) { g.head = head2 })
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:noop")
	if p := f.passes()[1]; p.Head != head2 || p.Commit != fake.CommitA {
		t.Fatalf("poll pass: head %s commit %s", p.Head, p.Commit)
	}
	f.advance("prod", pollTick) // unchanged since that pass
	wantTriggers(t, f, "start:noop", "poll:noop")

	// A webhook is a nudge to look now: a pass only if the branch moved.
	f.nudge("prod", reconcile.TriggerWebhook)
	wantTriggers(t, f, "start:noop", "poll:noop")
	f.git.set(func(g *agentGit) { g.head = head1 })
	f.nudge("prod", reconcile.TriggerWebhook)
	wantTriggers(t, f, "start:noop", "poll:noop", "webhook:noop")
}

func TestAgentDriftTimerRunsAPassWithGitUnchanged(t *testing.T) {
	f := newAgentFixture(t)
	f.opts.PollInterval = 10 * time.Hour
	f.opts.DriftInterval = 10 * time.Minute
	f.start()
	f.settle("prod", 0)
	f.clock.Advance(9 * time.Minute) // nothing due yet
	f.advance("prod", time.Minute)
	wantTriggers(t, f, "start:noop", "drift:noop")
	if heads, _ := f.git.counts("prod"); heads != 0 {
		t.Fatalf("a drift pass checked the head %d times; it runs a full pass anyway", heads)
	}
	// Any pass restarts the drift interval: after a sync 5 minutes later,
	// the next drift pass is 10 minutes after the sync, not after the
	// last drift pass.
	f.clock.Advance(5 * time.Minute)
	f.nudge("prod", reconcile.TriggerSync)
	f.clock.Advance(6 * time.Minute)
	wantTriggers(t, f, "start:noop", "drift:noop", "sync:noop")
	f.advance("prod", 4*time.Minute)
	wantTriggers(t, f, "start:noop", "drift:noop", "sync:noop", "drift:noop")
}

func TestAgentTransientFailureBacksOffThenResets(t *testing.T) {
	f := newAgentFixture(t)
	f.opts.PollInterval = 10 * time.Hour
	engineDown := errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
	f.setEngineFailure(engineDown)
	f.start()
	f.settle("prod", 0)

	retryIn := func() time.Duration { s := f.status("prod"); return s.NextRetry.Sub(f.clock.Now()) }
	s := f.status("prod")
	if s.LastPass == nil || s.LastPass.Result != reconcile.ResultFailed || s.LastPass.Class != reconcile.ClassEngine || s.EngineErrors != 1 ||
		!strings.Contains(s.LastError, "observe project prod: "+engineDown.Error()) {
		t.Fatalf("status after an engine failure: %+v", s)
	}
	if d := retryIn(); d < time.Second || d >= 2*time.Second {
		t.Fatalf("first retry in %v, want within [1s, 2s)", d)
	}

	f.advance("prod", retryIn())
	if d := retryIn(); d < 2*time.Second || d >= 4*time.Second {
		t.Fatalf("second retry in %v, want within [2s, 4s): the delay doubles", d)
	}
	wantTriggers(t, f, "start:failed", "retry:failed")

	f.setEngineFailure(nil)
	f.advance("prod", retryIn())
	wantTriggers(t, f, "start:failed", "retry:failed", "retry:noop")
	s = f.status("prod")
	if !s.NextRetry.IsZero() || s.LastError != "" || s.Running != fake.CommitA || s.EngineErrors != 2 || s.Passes[reconcile.ResultFailed] != 2 || s.Passes[reconcile.ResultNoop] != 1 {
		t.Fatalf("status after recovering: %+v", s)
	}

	// Reset: the next failure starts from the initial delay again.
	f.setEngineFailure(engineDown)
	f.nudge("prod", reconcile.TriggerSync)
	if d := retryIn(); d < time.Second || d >= 2*time.Second {
		t.Fatalf("retry after a success and a new failure in %v, want within [1s, 2s)", d)
	}
}

func TestAgentGitDownBacksOffWithoutTouchingTheEngine(t *testing.T) {
	f := newAgentFixture(t)
	f.opts.BackoffInitial = 10 * time.Minute // longer than a poll tick
	f.opts.BackoffMax = time.Hour
	f.start()
	f.settle("prod", 0)
	calls := len(f.eng.Calls())
	gitDown := errors.New("dial tcp 127.0.0.1:3000: connect: connection refused")
	f.git.set(func(g *agentGit) { g.headErr = gitDown })

	f.advance("prod", pollTick)
	s := f.status("prod")
	if s.GitErrors != 1 || !strings.Contains(s.LastError, "connection refused") || s.NextRetry.IsZero() {
		t.Fatalf("status after a failed head check: %+v", s)
	}
	if d := s.NextRetry.Sub(f.clock.Now()); d < 5*time.Minute || d >= 10*time.Minute {
		t.Fatalf("retry in %v, want within [5m, 10m)", d)
	}
	// Poll ticks during the backoff do not ask git again.
	f.advance("prod", pollTick)
	f.advance("prod", pollTick)
	if heads, _ := f.git.counts("prod"); heads != 1 {
		t.Fatalf("%d head checks while backing off, want only the first failed one", heads)
	}

	f.git.set(func(g *agentGit) { g.headErr = nil })
	f.clock.Advance(s.NextRetry.Sub(f.clock.Now()))
	fake.Eventually(t, "the retry to find git back", func() bool {
		s := f.status("prod")
		return s.LastError == "" && s.NextRetry.IsZero()
	})
	_, revs := f.git.counts("prod")
	if revs != 1 || len(f.eng.Calls()) != calls {
		t.Fatalf("git outage with the branch unchanged caused %d passes and %d engine calls; want none", revs-1, len(f.eng.Calls())-calls)
	}
}

func TestAgentPermanentFailureWaitsForTheBranchToMove(t *testing.T) {
	f := newAgentFixture(t)
	f.opts.DriftInterval = 10 * time.Minute
	f.setLoadErr(&compose.LoadError{File: "compose.yaml", Line: 3, Service: "web", Key: "ports", Msg: "bad port"})
	f.start()
	f.settle("prod", 0)
	s := f.status("prod")
	if s.LastPass.Class != reconcile.ClassPermanent || !s.NextRetry.IsZero() ||
		s.Waiting != "compose error at "+fake.CommitA[:12]+": waiting for the branch to move (or `lockstep sync`)" ||
		!strings.Contains(s.LastError, "compose.yaml:3: service \"web\": ports: bad port") {
		t.Fatalf("status after a permanent failure: waiting %q, error %q, next retry %v", s.Waiting, s.LastError, s.NextRetry)
	}

	f.advance("prod", pollTick) // head unchanged
	f.nudge("prod", reconcile.TriggerWebhook)
	w := f.waits("prod")
	f.clock.Advance(10 * time.Minute) // poll and drift both due
	f.settle("prod", w+1)
	wantTriggers(t, f, "start:failed")
	if heads, _ := f.git.counts("prod"); heads != 3 {
		t.Fatalf("%d head checks, want 3 (two polls and the webhook)", heads)
	}

	f.git.set(func(g *agentGit) { g.head = head2 })
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:failed", "poll:failed")
	if s := f.status("prod"); s.LastPass.Head != head2 || s.Waiting == "" {
		t.Fatalf("after failing again at the new head: %+v", s)
	}

	// An operator asking is a reason to try again, head unchanged or not.
	f.nudge("prod", reconcile.TriggerSync)
	wantTriggers(t, f, "start:failed", "poll:failed", "sync:failed")

	f.setLoadErr(nil) // e.g. a host env file was fixed
	f.nudge("prod", reconcile.TriggerWebhook)
	wantTriggers(t, f, "start:failed", "poll:failed", "sync:failed")
	f.nudge("prod", reconcile.TriggerSync)
	wantTriggers(t, f, "start:failed", "poll:failed", "sync:failed", "sync:noop")
	if s := f.status("prod"); s.Waiting != "" || s.LastError != "" || s.Running != fake.CommitA {
		t.Fatalf("after the fix: %+v", s)
	}
}

func TestAgentShutdownLetsThePassInFlightFinish(t *testing.T) {
	f := newAgentFixture(t)
	f.git.gate["prod"] = make(chan struct{})
	f.git.honourCtx = true
	f.start()
	<-f.git.entered
	f.cancel()
	select {
	case err := <-f.done:
		t.Fatalf("Run returned (%v) while a pass was in flight and within its grace", err)
	default:
	}
	f.git.open("prod")
	f.stop()
	if f.git.ctxErrs[0] != nil {
		t.Fatalf("the pass in flight saw its context cancelled at shutdown: %v", f.git.ctxErrs[0])
	}
	wantTriggers(t, f, "start:noop")
	if s := f.a.Status()[0]; s.Running != fake.CommitA {
		t.Fatalf("the pass that finished during shutdown was not recorded: %+v", s)
	}
	if err := f.a.Sync("prod", reconcile.TriggerSync); err != nil {
		t.Fatal(err) // must not block, must not start anything
	}
	if _, revs := f.git.counts("prod"); revs != 1 {
		t.Fatalf("%d passes after shutdown began, want only the one in flight", revs)
	}
}

func TestAgentShutdownGraceBoundsThePass(t *testing.T) {
	f := newAgentFixture(t)
	f.git.gate["prod"] = make(chan struct{}) // never opened: the pass waits for its context
	f.git.honourCtx = true
	f.start()
	<-f.git.entered
	f.cancel()
	var err error
	fake.Eventually(t, "the grace to run out and Run to return", func() bool {
		f.clock.Advance(f.opts.ShutdownGrace)
		select {
		case err = <-f.done:
			f.done <- err
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	p := f.passes()
	if len(p) != 1 || p[0].Result != reconcile.ResultFailed || p[0].Class != "" || !strings.Contains(p[0].Error, "context canceled") {
		t.Fatalf("pass cut by the grace: %+v; want failed, no class (not a git or engine failure)", p)
	}
}

func TestAgentReadyAfterTheFirstPassOfEveryEnvironment(t *testing.T) {
	f := newAgentFixture(t, "prod", "stage")
	f.git.gate["stage"] = make(chan struct{})
	a := f.newAgent()
	if a.Ready() || a.Alive() {
		t.Fatalf("an agent that has not run: ready %v alive %v", a.Ready(), a.Alive())
	}
	f.start()
	fake.Eventually(t, "prod's first pass", func() bool { return len(f.passes()) == 1 })
	if f.a.Ready() {
		t.Fatal("ready while stage's first pass is still running")
	}
	if !f.a.Alive() {
		t.Fatal("not alive with one loop idle and one pass in flight")
	}
	f.setLoadErr(errors.New("broken")) // any result counts
	f.git.open("stage")
	f.settle("stage", 0)
	if !f.a.Ready() {
		t.Fatalf("not ready after the first pass of every environment: %q", f.triggers())
	}
}

func TestAgentAliveTurnsFalseWhenALoopIsWedged(t *testing.T) {
	f := newAgentFixture(t)
	f.git.gate["prod"] = make(chan struct{}) // ignores the context: a wedged pass
	f.start()
	<-f.git.entered
	if !f.a.Alive() {
		t.Fatal("not alive during a young pass")
	}
	f.clock.Advance(DefaultPassTimeout + f.opts.ShutdownGrace + time.Second)
	if f.a.Alive() {
		t.Fatal("alive with a pass older than its deadline")
	}
	f.git.open("prod")
	f.settle("prod", 0)
	if !f.a.Alive() {
		t.Fatal("not alive once the pass ended")
	}
	f.stop()
	if f.a.Alive() {
		t.Fatal("alive after Run returned")
	}
}

func TestAgentHistoryIsBoundedPersistedAndReloaded(t *testing.T) {
	f := newAgentFixture(t)
	f.runner.State = state.New(f.state, 3, zerolog.New(f.logs))
	f.start()
	f.settle("prod", 0)
	for range 4 {
		f.nudge("prod", reconcile.TriggerSync)
	}
	h, err := f.a.History("prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	all := f.passes()
	if len(all) != 5 || len(h) != 3 || h[0].ID != all[2].ID || h[2].ID != all[4].ID {
		t.Fatalf("history of 5 passes bounded to 3: got %d records %v", len(h), h)
	}
	if last2, _ := f.a.History("prod", 2); len(last2) != 2 || last2[1].ID != all[4].ID {
		t.Fatalf("History(prod, 2): %v", last2)
	}
	var onDisk []reconcile.PassRecord
	b, err := os.ReadFile(filepath.Join(f.state, "environments", "prod", "history.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil || len(onDisk) != 3 || onDisk[2].ID != all[4].ID || onDisk[2].Result != reconcile.ResultNoop {
		t.Fatalf("history on disk: %v, %v", onDisk, err)
	}
	f.stop()

	// A restart: the history and what runs are known before any pass.
	b2 := f.newAgent()
	h2, _ := b2.History("prod", 0)
	if len(h2) != 3 || h2[2].ID != h[2].ID || !h2[2].Start.Equal(h[2].Start) {
		t.Fatalf("history after a restart: %v, want %v", h2, h)
	}
	s := b2.Status()[0]
	if s.Running != fake.CommitA || s.LastHealthy != fake.CommitA || s.Pinned != fake.CommitA || s.LastPass == nil || s.LastPass.ID != h[2].ID || s.LastSuccess.IsZero() {
		t.Fatalf("status after a restart: %+v", s)
	}
}

func TestAgentToleratesACorruptHistory(t *testing.T) {
	f := newAgentFixture(t)
	path := filepath.Join(f.state, "environments", "prod", "history.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`[{"id": "torn`), 0o640); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.settle("prod", 0)
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt history not moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != `[{"id": "torn` {
		t.Fatalf("moved-aside file changed: %q", b)
	}
	if !strings.Contains(f.logs.String(), "pass history unreadable") {
		t.Fatalf("no log line about the corrupt history:\n%s", f.logs.String())
	}
	h, _ := f.a.History("prod", 0)
	if len(h) != 1 || h[0].Trigger != reconcile.TriggerStart {
		t.Fatalf("history after starting over: %v", h)
	}
	var onDisk []reconcile.PassRecord
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &onDisk) != nil || len(onDisk) != 1 {
		t.Fatalf("new history file: %v %v", onDisk, err)
	}
}

func TestAgentRederivesEverythingAfterTheStateDirIsDeleted(t *testing.T) {
	f := newAgentFixture(t)
	f.start()
	f.settle("prod", 0)
	f.stop()
	if err := os.RemoveAll(f.state); err != nil {
		t.Fatal(err)
	}
	f.records = nil
	f.start()
	f.settle("prod", 0)
	s := f.a.Status()[0]
	if s.Running != fake.CommitA || s.Pinned != fake.CommitA || s.Passes[reconcile.ResultNoop] != 1 || s.LastError != "" {
		t.Fatalf("status after the first pass on an empty state dir: %+v", s)
	}
	for _, name := range []string{"deployed.json", "history.json"} {
		if _, err := os.Stat(filepath.Join(f.state, "environments", "prod", name)); err != nil {
			t.Errorf("%s not written again: %v", name, err)
		}
	}
}

func TestAgentAppliesAndCountsWhatChanged(t *testing.T) {
	f := newAgentFixture(t)
	f.eng.Observed = nil // a fresh host: everything is created
	for _, id := range []string{"new1", "new3"} {
		f.eng.Script(id, compose.Container{State: "running", Health: "healthy"})
	}
	f.eng.Script("new2", compose.Container{State: "exited", ExitCode: 0})
	f.start()
	f.settle("prod", 0)
	p := f.passes()
	if len(p) != 1 || p[0].Result != reconcile.ResultApplied || p[0].Created != 3 || p[0].Plan != "3 to pull, 5 to create" || p[0].Commit != fake.CommitA || p[0].Head != head1 {
		t.Fatalf("pass on a fresh host: %+v", p)
	}
	if s := f.a.Status()[0]; s.Running != fake.CommitA || s.Passes[reconcile.ResultApplied] != 1 || s.LastSuccess.IsZero() {
		t.Fatalf("status: %+v", s)
	}
	if !strings.Contains(f.logs.String(), `"result":"applied"`) {
		t.Fatalf("an applying pass must log at info:\n%s", f.logs.String())
	}
}

func TestAgentPassLogLinesCarryEnvPassAndCommit(t *testing.T) {
	f := newAgentFixture(t)
	f.runner.Log = zerolog.New(f.logs) // the agent must not use it as is
	f.start()
	f.settle("prod", 0)
	f.nudge("prod", reconcile.TriggerSync)
	p := f.passes()
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		id, _ := m["pass"].(string)
		if id == "" {
			continue
		}
		seen[id]++
		if m["env"] != "prod" || m["commit"] != fake.CommitA {
			t.Errorf("pass log line without env or commit: %s", line)
		}
	}
	// Each pass has the Runner's "nothing to do" line and the agent's own.
	if len(p) != 2 || p[0].ID == p[1].ID || seen[p[0].ID] != 2 || seen[p[1].ID] != 2 {
		t.Fatalf("pass ids %v, log lines per id %v\n%s", p, seen, f.logs.String())
	}
}

func TestAgentStopsWithoutLeakingGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newAgentFixture(t, "a", "b", "c")
	f.start()
	for _, env := range []string{"a", "b", "c"} {
		f.settle(env, 0)
	}
	f.nudge("b", reconcile.TriggerSync)
	f.advance("a", pollTick)
	f.stop()
	fake.Eventually(t, fmt.Sprintf("goroutines to drop back to %d", before), func() bool { return runtime.NumGoroutine() <= before })
}

func TestNewAgentRejectsBadOptions(t *testing.T) {
	f := newAgentFixture(t, "prod")
	dup := f.opts
	dup.Environments = append(dup.Environments, dup.Environments[0])
	tests := []struct {
		name string
		r    *pass.Pipeline
		h    HeadSource
		opts Options
		want string
	}{
		{"no runner", nil, f.git, f.opts, "pipeline"},
		{"no environments", f.runner, f.git, Options{}, "no environments"},
		{"duplicate", f.runner, f.git, dup, `"prod" is listed twice`},
		{"name escaping the state dir", f.runner, f.git, Options{Environments: []pass.Environment{{Name: "../etc"}}}, `"../etc" cannot be a directory name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.r, tt.h, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewAgent: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
