package pass

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

const head2 = "2222222222222222222222222222222222222222"

func running(rc int) compose.Container { return compose.Container{State: "running", RestartCount: rc} }
func health(h string) compose.Container {
	return compose.Container{State: "running", Health: h}
}
func exited(code int) compose.Container { return compose.Container{State: "exited", ExitCode: code} }

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
	var se *reconcile.StepError
	var ge *reconcile.GateError
	if !errors.As(err, &se) || se.Step != reconcile.StepVerify || !errors.As(err, &ge) || ge.Service != "web" ||
		!strings.HasPrefix(err.Error(), "verify prod at "+fake.CommitA[:12]+": health gate: service web (container prod-web-1): exited with code 137") {
		t.Fatalf("gate failure: %v", err)
	}
	if res.Healthy || res.Applied == nil || res.Applied.Created != 3 {
		t.Fatalf("result: %+v", res)
	}
	if hs, _ := f.loadHealthy("prod"); len(hs) != 0 {
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
	if hs, _ := f.loadHealthy("prod"); len(hs) != 0 {
		t.Fatalf("recorded healthy: %+v", hs)
	}
	fake.ObservedContainer(&o, "web", 1).RestartCount = 0
	f.src.rev.ComposeFiles = []string{"deploy/compose.yaml"}
	f.src.rev.Vars = map[string]string{"TAG": "x"}
	res, err = f.r.Apply(context.Background(), prodEnv)
	if err != nil || !res.Healthy {
		t.Fatalf("converged and healthy: healthy=%v err=%v", res.Healthy, err)
	}
	hs, _ := f.loadHealthy("prod")
	if len(hs) != 1 || hs[0].Commit != fake.CommitA || hs[0].ReleaseDir != f.src.rev.Dir ||
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
	// verified lists the release dirs Materialize was asked to check;
	// modified, when set, is its answer for a dir already on disk.
	verified []string
	modified error
}

func (s *countingSource) Resolve(ctx context.Context, want gitsource.Want) (gitsource.Release, error) {
	s.calls = append(s.calls, want.Commit)
	if s.err != nil {
		return gitsource.Release{}, s.err
	}
	return gitsource.Release{Head: head2, Commit: want.Commit, Dir: s.dir, ComposeFiles: []string{"from-the-current-pin.yaml"}}, nil
}

func (s *countingSource) AddPaths(ctx context.Context, rel gitsource.Release, paths []string) error {
	return nil
}

func (s *countingSource) AddMountPoints(ctx context.Context, rel gitsource.Release, paths []string) error {
	return nil
}

func (s *countingSource) Materialize(ctx context.Context, rel gitsource.Release) (gitsource.Release, error) {
	s.verified = append(s.verified, rel.Dir)
	if s.modified != nil && rel.Dir != "" && rel.Dir != s.dir {
		return rel, s.modified
	}
	return rel, nil
}

func (s *countingSource) CheckFloor(context.Context, string, string) error { return nil }

func (s *countingSource) Prune(map[string]bool) error { return nil }

// TestRunnerRestoreVerifiesTheReleaseOnDisk: a rollback uses its release
// directory only through Materialize (its manifest check); one modified
// by hand that the cache cannot restore is fetched again, and with git
// down too the rollback is refused saying the release was modified.
func TestRunnerRestoreVerifiesTheReleaseOnDisk(t *testing.T) {
	dir := t.TempDir()
	modified := &gitsource.ModifiedError{Dir: dir, Problems: []string{"worker/config.txt: content differs from git"}, Err: errors.New("git object 1234 is not in the cache")}
	src := &countingSource{err: errors.New("dial tcp: connection refused"), modified: modified}
	r := &restorer{&Pipeline{Source: src, Log: zerolog.Nop()}}
	hr := state.HealthyRevision{Commit: fake.CommitA, ReleaseDir: dir}
	_, err := r.Restore(context.Background(), prodEnv, hr)
	if len(src.verified) != 1 || src.verified[0] != dir {
		t.Fatalf("restore did not verify the release on disk: Materialize got %q", src.verified)
	}
	if err == nil || !strings.Contains(err.Error(), "modified by hand (worker/config.txt: content differs from git)") || len(src.calls) != 1 {
		t.Fatalf("restore of a modified release with git down: %v (resolve calls %q)", err, src.calls)
	}
	src.modified = nil
	if rev, err := r.Restore(context.Background(), prodEnv, hr); err != nil || rev.Dir != dir || len(src.calls) != 1 {
		t.Fatalf("restore of a verified release: %+v %v, resolve calls %q (want none more)", rev, err, src.calls)
	}
}

func TestRunnerRestoreUsesTheReleaseOnDiskAndGitOnlyWhenItIsGone(t *testing.T) {
	dir := t.TempDir()
	src := &countingSource{err: errors.New("dial tcp: connection refused")}
	r := &restorer{&Pipeline{Source: src, Log: zerolog.Nop()}}
	hr := state.HealthyRevision{Commit: fake.CommitA, ReleaseDir: dir, ComposeFiles: []string{"deploy/compose.yaml"}, Vars: map[string]string{"A": "1"}, EnvFiles: []string{"secrets/prod.env.age"}}
	rev, err := r.Restore(context.Background(), prodEnv, hr)
	if err != nil || rev.Dir != dir || rev.ComposeFiles[0] != "deploy/compose.yaml" || rev.Vars["A"] != "1" || len(rev.EnvFiles) != 1 || len(src.calls) != 0 {
		t.Fatalf("restore from disk: %+v %v, source calls %q", rev, err, src.calls)
	}

	hr.ReleaseDir = dir + "/gone"
	if _, err := r.Restore(context.Background(), prodEnv, hr); err == nil || reconcile.Classify(err) != reconcile.ClassGit || !strings.Contains(err.Error(), "is gone from disk") {
		t.Fatalf("restore with the dir gone and git down: %v", err)
	}
	src.err, src.dir = nil, dir
	rev, err = r.Restore(context.Background(), prodEnv, hr)
	if err != nil || rev.Dir != dir || rev.ComposeFiles[0] != "deploy/compose.yaml" || src.calls[len(src.calls)-1] != fake.CommitA {
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
	r := &restorer{&Pipeline{Source: src, Log: zerolog.Nop()}}
	hr := state.HealthyRevision{Commit: fake.CommitA, ReleaseDir: dir}

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
	if rev, err := r.Restore(context.Background(), env, hr); err != nil || rev.Dir != dir {
		t.Fatalf("restore above the floor: %+v %v", rev, err)
	}
}

// restorer is the old Runner.Restore over a Pipeline's restore.
type restorer struct{ *Pipeline }

func (r *restorer) Restore(ctx context.Context, env Environment, hr state.HealthyRevision) (gitsource.Release, error) {
	return r.restore(ctx, env, hr, zerolog.Nop())
}
