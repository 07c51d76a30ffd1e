package pass

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// fakeSource stands in for gitsource behind the Source interface.
type fakeSource struct {
	rev         gitsource.Release
	err         error
	pruned      []map[string]bool
	mu          sync.Mutex // AddMountPoints runs in concurrent passes (the lock tests)
	mountPoints [][]string // what each AddMountPoints was asked for
	paths       []string   // what AddPaths was asked for
	mountErr    error
}

func (s *fakeSource) Resolve(ctx context.Context, want gitsource.Want) (gitsource.Release, error) {
	if want.Commit != "" {
		s.rev.Commit = want.Commit
	}
	if s.err != nil {
		return gitsource.Release{}, s.err
	}
	return s.rev, nil
}

// AddPaths records what the loader asked for, as AddMountPoints does.
func (s *fakeSource) AddPaths(ctx context.Context, rel gitsource.Release, paths []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths = append(s.paths, paths...)
	return nil
}

func (s *fakeSource) AddMountPoints(ctx context.Context, rel gitsource.Release, paths []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mountPoints = append(s.mountPoints, paths)
	return s.mountErr
}

func (s *fakeSource) Materialize(ctx context.Context, rel gitsource.Release) (gitsource.Release, error) {
	return rel, nil
}

func (s *fakeSource) CheckFloor(ctx context.Context, floor, commit string) error { return nil }

func (s *fakeSource) Prune(inUse map[string]bool) error {
	s.pruned = append(s.pruned, inUse)
	return nil
}

// runner is the old Runner's API over a Pipeline, so the tests read as
// before: Apply, Plan and Validate are passes of the three modes.
type runner struct {
	*Pipeline
}

func (r *runner) Apply(ctx context.Context, env Environment) (*Result, error) {
	return r.Run(ctx, env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
}

func (r *runner) Plan(ctx context.Context, env Environment) (*Result, error) {
	return r.Run(ctx, env, Options{Mode: ModePlan})
}

func (r *runner) Validate(ctx context.Context, env Environment, commit string) (*Result, error) {
	return r.Run(ctx, env, Options{Mode: ModeValidate, Commit: commit})
}

type runnerFixture struct {
	src   *fakeSource
	eng   *fake.Engine
	state string
	st    *state.Store
	r     *runner
}

func newRunnerFixture(t *testing.T, observed *compose.Observed, paused bool) *runnerFixture {
	t.Helper()
	f := &runnerFixture{
		src:   &fakeSource{rev: gitsource.Release{Head: fake.CommitB, Commit: fake.CommitA, Dir: "/state/releases/" + fake.CommitA, Paused: paused}},
		eng:   fake.NewEngine(),
		state: t.TempDir(),
	}
	f.eng.Observed = observed
	f.st = state.New(f.state, 0, zerolog.Nop())
	f.r = &runner{&Pipeline{
		Source: f.src,
		Load: func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
			p := fake.Project()
			p.ReleaseDir = rel.Dir
			return p, nil
		},
		Backend: &reconcile.Host{Engine: f.eng, Options: reconcile.ApplyOptions{PollInterval: 1}},
		Log:     zerolog.Nop(),
		State:   f.st,
	}}
	return f
}

// loadDeployed, loadHealthy and deployedPath read the records the old
// Runner wrote, now through the store.
func (f *runnerFixture) loadDeployed(env, project string) (*reconcile.Deployed, error) {
	return f.st.Deployed(env, project)
}

func (f *runnerFixture) loadHealthy(env string) ([]state.HealthyRevision, error) {
	return f.st.Healthy(env)
}

func deployedPath(stateDir, env string) string {
	return filepath.Join(stateDir, "environments", env, "deployed.json")
}

// briefs is the plan's actions in one line each, for failure messages.
func briefs(p *reconcile.Plan) []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		out[i] = string(a.Kind) + " " + a.Service + " " + a.Container
	}
	return out
}

var prodEnv = Environment{Name: "prod", Project: "prod", PinFile: "environments/prod.toml"}

func TestRunnerApplyFreshProjectRecordsAndPrunes(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	for _, id := range []string{"new1", "new2", "new3"} { // db, migrate, web as the fake numbers them
		f.eng.Script(id, compose.Container{State: "running", Health: "healthy"})
	}
	f.eng.Script("new2", compose.Container{State: "exited", ExitCode: 0})
	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatalf("apply: %v\ncalls: %q", err, f.eng.Calls())
	}
	if res.Commit != fake.CommitA || res.Head != fake.CommitB || res.Applied == nil || res.Applied.Created != 3 {
		t.Fatalf("result: %+v applied %+v", res, res.Applied)
	}
	d, err := f.loadDeployed("prod", "prod")
	if err != nil || d == nil || d.Commit != fake.CommitA || d.Replicas["web"] != 1 {
		t.Fatalf("deployment record after apply: %+v, %v", d, err)
	}
	if len(f.src.pruned) != 1 || !f.src.pruned[0][f.src.rev.Dir] {
		t.Fatalf("prune must keep the release just applied: %v", f.src.pruned)
	}
}

func TestRunnerConvergedApplyTouchesNothing(t *testing.T) {
	o := fake.Converged(fake.Project())
	f := newRunnerFixture(t, &o, false)
	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Plan.Empty() || res.Applied != nil {
		t.Fatalf("converged host: plan %v, applied %+v", briefs(res.Plan), res.Applied)
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("a converged apply made mutating calls: %q", m)
	}
	// The record is written once, when first seen converged; not again.
	d, _ := f.loadDeployed("prod", "prod")
	if d == nil || d.Commit != fake.CommitA {
		t.Fatalf("converged host not recorded: %+v", d)
	}
	st, _ := os.Stat(deployedPath(f.state, "prod"))
	if _, err := f.r.Apply(context.Background(), prodEnv); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(deployedPath(f.state, "prod"))
	if !st.ModTime().Equal(st2.ModTime()) {
		t.Errorf("an unchanged deployment was written again")
	}
}

func TestRunnerPausedAppliesNothing(t *testing.T) {
	f := newRunnerFixture(t, nil, true)
	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Paused || res.Plan.Empty() {
		t.Fatalf("paused env: want the pending plan reported, got paused=%v plan %v", res.Paused, briefs(res.Plan))
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("paused env: engine calls %q", m)
	}
	if d, _ := f.loadDeployed("prod", "prod"); d != nil {
		t.Fatalf("paused env recorded a deployment: %+v", d)
	}
}

func TestRunnerPlanAndValidateWriteNothing(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	res, err := f.r.Plan(context.Background(), prodEnv)
	if err != nil || res.Plan.Empty() {
		t.Fatalf("plan: %v, %+v", err, res)
	}
	if _, err := f.r.Validate(context.Background(), prodEnv, fake.CommitB); err != nil {
		t.Fatal(err)
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("plan/validate made engine calls: %q", m)
	}
	if entries, _ := os.ReadDir(f.state); len(entries) != 0 {
		t.Fatalf("plan/validate wrote state: %v", entries)
	}
	if len(f.src.pruned) != 0 {
		t.Fatalf("plan pruned releases")
	}
}

func TestRunnerStopsAtTheFirstFailingStep(t *testing.T) {
	gitDown := errors.New("git server unreachable")
	f := newRunnerFixture(t, nil, false)
	f.src.err = gitDown
	if _, err := f.r.Apply(context.Background(), prodEnv); !errors.Is(err, gitDown) {
		t.Fatalf("source error not returned as is: %v", err)
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Fatalf("engine called although the revision could not be resolved: %q", calls)
	}

	f = newRunnerFixture(t, nil, false)
	bad := errors.New("compose.yaml:3: bad")
	f.r.Load = func(context.Context, Environment, gitsource.Release, func(string) error) (*compose.Project, error) {
		return nil, bad
	}
	_, err := f.r.Apply(context.Background(), prodEnv)
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "load prod at "+fake.CommitA[:12]) {
		t.Fatalf("load error: %v", err)
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Fatalf("engine called although the release did not load: %q", calls)
	}
}

func TestRunnerNamesTheFailingStep(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(f *runnerFixture)
		step     string
		contains string
	}{
		{"source", func(f *runnerFixture) { f.src.err = errors.New("fetch: connection refused") }, reconcile.StepSource, "fetch: connection refused"},
		{"load", func(f *runnerFixture) {
			f.r.Load = func(context.Context, Environment, gitsource.Release, func(string) error) (*compose.Project, error) {
				return nil, errors.New("bad")
			}
		}, reconcile.StepLoad, "load prod at " + fake.CommitA[:12] + ": bad"},
		{"observe", func(f *runnerFixture) { f.eng.Fail["observe"] = errors.New("engine down") }, reconcile.StepObserve, "observe project prod: engine down"},
		{"apply", func(f *runnerFixture) { f.eng.Fail["pull"] = errors.New("registry down") }, reconcile.StepApply, "apply prod at " + fake.CommitA[:12] + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRunnerFixture(t, nil, false)
			tt.setup(f)
			_, err := f.r.Apply(context.Background(), prodEnv)
			var se *reconcile.StepError
			if !errors.As(err, &se) || se.Step != tt.step || !strings.HasPrefix(err.Error(), tt.contains) {
				t.Fatalf("error %v (step %+v), want step %s and a message starting %q", err, se, tt.step, tt.contains)
			}
		})
	}
}

// The load step hands the project's mount points to the source before
// the engine is asked anything, in every mode; a release that cannot hold
// them stops the pass at load.
func TestRunnerAddsMountPointsBeforeTheEngine(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		p := fake.Project()
		p.ReleaseDir = rel.Dir
		p.MountPoints = []string{"src/node_modules"}
		return p, nil
	}
	if _, err := f.r.Plan(context.Background(), prodEnv); err != nil {
		t.Fatal(err)
	}
	if len(f.src.mountPoints) != 1 || strings.Join(f.src.mountPoints[0], ",") != "src/node_modules" {
		t.Fatalf("AddMountPoints calls: %q", f.src.mountPoints)
	}
	f.src.mountErr = errors.New("src is a file in the release")
	_, err := f.r.Apply(context.Background(), prodEnv)
	var se *reconcile.StepError
	if !errors.As(err, &se) || se.Step != reconcile.StepLoad || !strings.Contains(err.Error(), "src is a file") {
		t.Fatalf("apply with a refused mount point: %v", err)
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("engine changed although the mount points were refused: %q", m)
	}
}

// The loader's need reaches the source's AddPaths with the release being
// loaded, in every mode: that is how a partial release gets what compose
// uses before the loader reads it.
func TestRunnerLoaderNeedAddsPaths(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		for _, p := range []string{"compose.yaml", "nginx"} {
			if err := need(p); err != nil {
				return nil, err
			}
		}
		p := fake.Project()
		p.ReleaseDir = rel.Dir
		return p, nil
	}
	if _, err := f.r.Validate(context.Background(), prodEnv, ""); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.src.paths, ","); got != "compose.yaml,nginx" {
		t.Fatalf("AddPaths asked for %q, want compose.yaml,nginx", got)
	}
}
