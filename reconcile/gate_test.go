package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

var _ Clock = (*fake.AutoClock)(nil)

func running(rc int) compose.Container { return compose.Container{State: "running", RestartCount: rc} }
func health(h string) compose.Container {
	return compose.Container{State: "running", Health: h}
}
func exited(code int) compose.Container { return compose.Container{State: "exited", ExitCode: code} }

func TestGate(t *testing.T) {
	p := fake.Project(fake.ModService("web", func(s *compose.Service) {
		s.Config.Labels = map[string]string{}
	}))
	created := func(services ...string) []Action {
		var out []Action
		for _, s := range services {
			out = append(out, Action{Kind: ActCreate, Service: s, Number: 1, Container: "prod-" + s + "-1"})
		}
		return out
	}
	tests := []struct {
		name     string
		project  *compose.Project
		actions  []Action
		script   map[string][]compose.Container // by container name
		wantErr  string                         // "" = passes; else the GateError's reason contains it
		wantSvc  string
		minPolls int // at least this many inspections of the last target (bake)
	}{
		{name: "healthcheck turns healthy", actions: created("db"),
			script: map[string][]compose.Container{"prod-db-1": {health("starting"), health("starting"), health("healthy")}}},
		{name: "unhealthy fails at once", actions: created("db"),
			script:  map[string][]compose.Container{"prod-db-1": {health("starting"), health("unhealthy")}},
			wantErr: "healthcheck reports unhealthy", wantSvc: "db"},
		{name: "no healthcheck: running the whole bake period", actions: created("web"),
			script:   map[string][]compose.Container{"prod-web-1": {{State: "created"}, running(0)}},
			minPolls: int(DefaultBake / (500 * time.Millisecond))},
		{name: "looks running, then restarts during the bake", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), running(0), running(0), running(1)}},
			wantErr: "restarted 1 time(s) within the 15s bake period", wantSvc: "web"},
		{name: "restarting state is a crash loop", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), {State: "restarting", RestartCount: 2}}},
			wantErr: "restarted 2 time(s)", wantSvc: "web"},
		{name: "exits during the bake (no restart policy)", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), exited(2)}},
			wantErr: "exited with code 2 within the 15s bake period", wantSvc: "web"},
		{name: "image healthcheck on a service without one in compose", actions: created("web"),
			script: map[string][]compose.Container{"prod-web-1": {health("starting"), health("healthy")}}},
		{name: "one-shot others wait for exits 0", actions: created("migrate"),
			script: map[string][]compose.Container{"prod-migrate-1": {running(0), exited(0)}}},
		{name: "one-shot others wait for exits 1", actions: created("migrate"),
			script:  map[string][]compose.Container{"prod-migrate-1": {running(0), exited(1)}},
			wantErr: "exited with code 1; services depending on it with service_completed_successfully need 0", wantSvc: "migrate"},
		{name: "timeout: never healthy", actions: created("db"),
			script:  map[string][]compose.Container{"prod-db-1": {health("starting")}},
			wantErr: "not healthy after 2m0s (last state running, health starting)", wantSvc: "db"},
		{name: "timeout: never running", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {{State: "created"}}},
			wantErr: "not running after 2m0s (last state created)", wantSvc: "web"},
		{name: "opt-out label: not watched at all",
			project: fake.Project(fake.ModService("web", func(s *compose.Service) { s.Config.Labels = map[string]string{LabelHealthGate: "false"} })),
			actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {exited(1)}}},
		{name: "restart of an old container: its earlier restarts do not count",
			actions: []Action{{Kind: ActRestart, Service: "web", Number: 1, Container: "prod-web-1"}},
			script:  map[string][]compose.Container{"prod-web-1": {running(7)}}},
		{name: "removals alone gate nothing",
			actions: []Action{{Kind: ActRemove, Service: "old", Container: "prod-old-1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proj := p
			if tt.project != nil {
				proj = tt.project
			}
			eng := fake.NewEngine()
			for name, states := range tt.script {
				eng.Script(name, states...)
				eng.ContainerLogs[name] = []string{"line 1", "panic: listen tcp :80: address already in use"}
			}
			err := runGate(context.Background(), eng, gateTargets(proj, tt.actions),
				GateOptions{Clock: fake.NewAutoClock()}, zerolog.Nop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("gate failed: %v", err)
				}
			} else {
				var ge *GateError
				if !errors.As(err, &ge) || ge.Service != tt.wantSvc || !strings.Contains(ge.Reason, tt.wantErr) {
					t.Fatalf("gate error %v, want service %s and a reason containing %q", err, tt.wantSvc, tt.wantErr)
				}
				if len(ge.Logs) != 2 || ge.Logs[1] != "panic: listen tcp :80: address already in use" {
					t.Fatalf("gate error carries logs %q", ge.Logs)
				}
				if Classify(&StepError{Step: StepVerify, Err: err}) != ClassHealth {
					t.Fatalf("a gate failure is not classified %q", ClassHealth)
				}
			}
			inspects := 0
			for _, c := range eng.Calls() {
				if strings.HasPrefix(c, "inspect") {
					inspects++
				}
			}
			if tt.project != nil && inspects != 0 {
				t.Fatalf("an opted-out service was inspected %d times", inspects)
			}
			if inspects < tt.minPolls {
				t.Fatalf("%d inspections; the bake period needs at least %d", inspects, tt.minPolls)
			}
		})
	}
}

func TestGateEngineErrorIsNotAGateFailure(t *testing.T) {
	eng := fake.NewEngine()
	eng.Fail["inspect"] = errors.New("Cannot connect to the Docker daemon")
	err := runGate(context.Background(), eng, gateTargets(fake.Project(), []Action{{Kind: ActCreate, Service: "web", Container: "prod-web-1"}}),
		GateOptions{Clock: fake.NewAutoClock()}, zerolog.Nop())
	var ge *GateError
	if err == nil || errors.As(err, &ge) || Classify(&StepError{Step: StepVerify, Err: err}) != ClassEngine {
		t.Fatalf("engine down during the gate: %v; want a plain (engine) error, not a rollback", err)
	}
}

func TestGatePlanAndLogSayWhatIsWaitedFor(t *testing.T) {
	p := fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 2 }))
	var acts []Action
	for _, s := range []string{"db", "migrate", "web"} {
		acts = append(acts, Action{Kind: ActRecreate, Service: s})
	}
	targets := gateTargets(p, acts)
	if len(targets) != 4 || targets[3].Container != "prod-web-2" {
		t.Fatalf("targets: %+v", targets)
	}
	if got := strings.Join(gatePlan(targets, 15*time.Second), ", "); got != "db healthy, migrate exits 0, web 15s without restart" {
		t.Fatalf("plan gate: %q", got)
	}
	if got := gateWaiting(targets, 15*time.Second); got != "db (healthcheck), migrate (exit code 0), web (running 15s without restart)" {
		t.Fatalf("log: %q", got)
	}
	plan := &Plan{Environment: "prod", Actions: acts, Gate: gatePlan(targets, 15*time.Second)}
	var b strings.Builder
	if err := plan.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  then waits: db healthy, migrate exits 0, web 15s without restart\n") {
		t.Fatalf("plan text:\n%s", b.String())
	}
}

func TestRunnerPlanShowsTheGateAndHonoursTheEnvironmentsBake(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	env := prodEnv
	env.Bake = 40 * time.Second
	res, err := f.r.Plan(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Gate, ", "); got != "db healthy, migrate exits 0, web 40s without restart" {
		t.Fatalf("plan gate: %q", got)
	}
}

func TestRunnerGateFailureIsAVerifyStepErrorAndNotHealthy(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	f.r.Gate.Clock = fake.NewAutoClock()
	f.eng.Script("new1", health("healthy")) // apply waits on db and migrate by ID
	f.eng.Script("new2", exited(0))
	f.eng.Script("prod-db-1", health("healthy"))
	f.eng.Script("prod-migrate-1", exited(0))
	f.eng.Script("prod-web-1", running(0), exited(137))
	f.eng.ContainerLogs["prod-web-1"] = []string{"Killed"}
	res, err := f.r.Apply(context.Background(), prodEnv)
	var se *StepError
	var ge *GateError
	if !errors.As(err, &se) || se.Step != StepVerify || !errors.As(err, &ge) || ge.Service != "web" ||
		!strings.HasPrefix(err.Error(), "verify prod at "+fake.CommitA[:12]+": health gate: service web (container prod-web-1): exited with code 137") {
		t.Fatalf("gate failure: %v", err)
	}
	if res.Healthy || res.Applied == nil || res.Applied.Created != 3 {
		t.Fatalf("result: %+v", res)
	}
	if hs, _ := loadHealthy(f.state, "prod"); len(hs) != 0 {
		t.Fatalf("a revision that failed its gate was recorded healthy: %+v", hs)
	}
	if len(f.src.pruned) != 0 {
		t.Fatal("pruned releases after a gate failure: the rollback target may be among them")
	}
}

func TestRunnerRecordsHealthyOnlyWhenConvergedAndHealthy(t *testing.T) {
	o := fake.Converged(fake.Project())
	fake.ObservedContainer(&o, "web", 1).RestartCount = 3 // crash-looping, caught looking "running"
	f := newRunnerFixture(t, &o, false)
	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil || !res.Plan.Empty() || res.Healthy {
		t.Fatalf("converged but restarting: healthy=%v err=%v", res.Healthy, err)
	}
	if hs, _ := loadHealthy(f.state, "prod"); len(hs) != 0 {
		t.Fatalf("recorded healthy: %+v", hs)
	}
	fake.ObservedContainer(&o, "web", 1).RestartCount = 0
	f.src.rev.ComposeFiles = []string{"deploy/compose.yaml"}
	f.src.rev.Vars = map[string]string{"TAG": "x"}
	res, err = f.r.Apply(context.Background(), prodEnv)
	if err != nil || !res.Healthy {
		t.Fatalf("converged and healthy: healthy=%v err=%v", res.Healthy, err)
	}
	hs, _ := loadHealthy(f.state, "prod")
	if len(hs) != 1 || hs[0].Commit != fake.CommitA || hs[0].ReleaseDir != f.src.rev.ReleaseDir ||
		hs[0].ComposeFiles[0] != "deploy/compose.yaml" || hs[0].Vars["TAG"] != "x" {
		t.Fatalf("healthy record: %+v", hs)
	}
}

// countingSource fails (git unreachable) unless told otherwise, and counts
// its calls.
type countingSource struct {
	calls []string
	err   error
	dir   string
}

func (s *countingSource) Revision(ctx context.Context, env Environment, commit string) (Revision, error) {
	s.calls = append(s.calls, commit)
	if s.err != nil {
		return Revision{}, s.err
	}
	return Revision{Head: head2, Commit: commit, ReleaseDir: s.dir, ComposeFiles: []string{"from-the-current-pin.yaml"}}, nil
}

func (s *countingSource) Prune(map[string]bool) error { return nil }

func TestRunnerRestoreUsesTheReleaseOnDiskAndGitOnlyWhenItIsGone(t *testing.T) {
	dir := t.TempDir()
	src := &countingSource{err: errors.New("dial tcp: connection refused")}
	r := &Runner{Source: src, Log: zerolog.Nop()}
	hr := HealthyRevision{Commit: fake.CommitA, ReleaseDir: dir, ComposeFiles: []string{"deploy/compose.yaml"}, Vars: map[string]string{"A": "1"}, EnvFiles: []string{"secrets/prod.env.age"}}
	rev, err := r.Restore(context.Background(), prodEnv, hr)
	if err != nil || rev.ReleaseDir != dir || rev.ComposeFiles[0] != "deploy/compose.yaml" || rev.Vars["A"] != "1" || len(rev.EnvFiles) != 1 || len(src.calls) != 0 {
		t.Fatalf("restore from disk: %+v %v, source calls %q", rev, err, src.calls)
	}

	hr.ReleaseDir = dir + "/gone"
	if _, err := r.Restore(context.Background(), prodEnv, hr); err == nil || Classify(err) != ClassGit || !strings.Contains(err.Error(), "is gone from disk") {
		t.Fatalf("restore with the dir gone and git down: %v", err)
	}
	src.err, src.dir = nil, dir
	rev, err = r.Restore(context.Background(), prodEnv, hr)
	if err != nil || rev.ReleaseDir != dir || rev.ComposeFiles[0] != "deploy/compose.yaml" || src.calls[len(src.calls)-1] != fake.CommitA {
		t.Fatalf("re-materialized: %+v %v (calls %q); compose files must be the record's, not the current pin's", rev, err, src.calls)
	}
}

// floorSource is a countingSource that also checks floors.
type floorSource struct {
	countingSource
	floorErr error
	checked  []string // "floor>commit"
}

func (s *floorSource) CheckFloor(_ context.Context, floor, commit string) error {
	s.checked = append(s.checked, floor+">"+commit)
	return s.floorErr
}

func TestRunnerRestoreHonoursTheFloor(t *testing.T) {
	dir := t.TempDir()
	src := &floorSource{floorErr: errors.New("pinned commit does not descend from min_commit")}
	r := &Runner{Source: src, Log: zerolog.Nop()}
	hr := HealthyRevision{Commit: fake.CommitA, ReleaseDir: dir}

	// No floor: the release on disk is used, nothing is asked.
	if _, err := r.Restore(context.Background(), prodEnv, hr); err != nil || len(src.checked) != 0 {
		t.Fatalf("restore without a floor: %v, checks %q", err, src.checked)
	}
	env := prodEnv
	env.MinCommit = fake.CommitB
	_, err := r.Restore(context.Background(), env, hr)
	if err == nil || !strings.Contains(err.Error(), "rollback of "+env.Name+" to "+fake.CommitA[:12]+" refused") || !strings.Contains(err.Error(), "min_commit") {
		t.Fatalf("restore below the floor: %v", err)
	}
	if len(src.checked) != 1 || src.checked[0] != fake.CommitB+">"+fake.CommitA {
		t.Fatalf("floor checks: %q", src.checked)
	}
	src.floorErr = nil
	if rev, err := r.Restore(context.Background(), env, hr); err != nil || rev.ReleaseDir != dir {
		t.Fatalf("restore above the floor: %+v %v", rev, err)
	}
}
