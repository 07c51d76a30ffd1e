package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

const (
	commitC = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff"
	head3   = "3333333333333333333333333333333333333333"
)

// newRollbackFixture is an agent over a stateful fake engine that runs
// fake.Project at fake.CommitA. fake.CommitB changes web's image to one that
// crash-loops; commitC changes web's config in a way that works. Release
// directories exist on disk.
func newRollbackFixture(t *testing.T) *agentFixture {
	t.Helper()
	f := newAgentFixture(t)
	f.git.releases = t.TempDir()
	f.eng.UseWorld(fake.Converged(fake.Project()))
	f.eng.SetOnStart("migrate", func(c *compose.Container) { c.State, c.ExitCode = "exited", 0 })
	f.eng.SetOnStart("web", func(c *compose.Container) {
		if c.Image == fake.ImgWebB {
			c.State, c.RestartCount = "restarting", 3
		}
	})
	f.eng.ContainerLogs["prod-web-1"] = []string{"starting web", "panic: cannot read /etc/web/app.conf"}
	f.variants = map[string]func(*compose.Project){
		fake.CommitB: fake.ModService("web", func(s *compose.Service) {
			s.Image, s.Config.Image, s.ConfigHash = fake.ImgWebB, fake.ImgWebB, fake.SHA("config", "web", fake.ImgWebB)
		}),
		commitC: fake.ModService("web", func(s *compose.Service) {
			s.Config.Env, s.ConfigHash = []string{"WORKERS=4"}, fake.SHA("config", "web", "workers=4")
		}),
	}
	return f
}

// pin points the pin at commit with a new branch head.
func (f *agentFixture) pin(commit, head string) {
	f.git.set(func(g *agentGit) { g.commit, g.head = commit, head })
}

func (f *agentFixture) eventKinds() []reconcile.EventKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []reconcile.EventKind
	for _, e := range f.events {
		out = append(out, e.Kind)
	}
	return out
}

func (f *agentFixture) lastEvent() reconcile.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events[len(f.events)-1]
}

// webImage is the image of the web container the fake engine runs now.
func (f *agentFixture) webImage() string {
	f.eng.Mu.Lock()
	defer f.eng.Mu.Unlock()
	for _, c := range f.eng.World {
		if c.Name == "prod-web-1" {
			return c.Image + "/" + c.State
		}
	}
	return "none"
}

func mutatingCount(f *agentFixture) int { return len(fake.Mutating(f.eng.Calls())) }

func TestAgentRollsBackAGateFailureQuarantinesAndMovesOn(t *testing.T) {
	f := newRollbackFixture(t)
	f.start()
	f.settle("prod", 0)
	if s := f.status("prod"); s.LastHealthy != fake.CommitA {
		t.Fatalf("a converged healthy host is not recorded healthy: %+v", s)
	}

	f.pin(fake.CommitB, head2)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:rolled-back")
	rec := f.passes()[1]
	if rec.Commit != fake.CommitB || rec.RolledBackTo != fake.CommitA || rec.Service != "web" || rec.Class != reconcile.ClassHealth ||
		!strings.Contains(rec.Error, "health gate: service web (container prod-web-1): restarted 3 time(s) within the 15s bake period") ||
		!strings.HasSuffix(rec.Error, "; rolled back to "+fake.CommitA[:12]) ||
		len(rec.Logs) != 2 || rec.Logs[1] != "panic: cannot read /etc/web/app.conf" {
		t.Fatalf("pass record: %+v", rec)
	}
	if got := f.webImage(); got != fake.ImgWebA+"/running" {
		t.Fatalf("web after the rollback runs %s, want %s", got, fake.ImgWebA)
	}
	s := f.status("prod")
	if s.Pinned != fake.CommitB || s.Running != fake.CommitA || s.LastHealthy != fake.CommitA || !slices.Equal(s.Quarantined, []string{fake.CommitB}) ||
		s.Rollbacks != 1 || s.GateFailures != 1 || !strings.Contains(s.LastFailure, "web") || !strings.Contains(s.Waiting, "quarantined") {
		t.Fatalf("status after the rollback: %+v", s)
	}
	if k := f.eventKinds(); !slices.Equal(k, []reconcile.EventKind{reconcile.EventFailure, reconcile.EventRollback}) {
		t.Fatalf("events %q", k)
	}
	if e := f.lastEvent(); e.Commit != fake.CommitB || e.Previous != fake.CommitA || e.Service != "web" || e.Environment != "prod" || e.Time.IsZero() || len(e.Logs) != 2 {
		t.Fatalf("rollback event: %+v", e)
	}

	// The failed commit is not tried again: not by a poll that sees the
	// branch move with the pin unchanged, not by a sync.
	calls := mutatingCount(f)
	f.git.set(func(g *agentGit) { g.head = head1 })
	f.advance("prod", pollTick)
	f.nudge("prod", reconcile.TriggerSync)
	if n := len(f.passes()); n != 2 || mutatingCount(f) != calls {
		t.Fatalf("quarantined commit applied again: %q, %d mutating calls", f.triggers(), mutatingCount(f)-calls)
	}
	if !strings.Contains(f.logs.String(), "pinned commit is quarantined") {
		t.Fatal("no log line says why the pass was skipped")
	}

	// It survives a restart.
	f.stop()
	b := f.newAgent()
	if s := b.Status()[0]; !slices.Equal(s.Quarantined, []string{fake.CommitB}) || s.LastHealthy != fake.CommitA || s.LastFailure == "" {
		t.Fatalf("status after a restart: %+v", s)
	}
	f.start()
	f.settle("prod", 0)
	if n := len(f.passes()); n != 2 {
		t.Fatalf("the restarted agent applied the quarantined commit: %q", f.triggers())
	}

	// lockstep retry: the commit is tried again (and fails again).
	w := f.waits("prod")
	if err := f.a.Retry("prod"); err != nil {
		t.Fatal(err)
	}
	f.settle("prod", w)
	wantTriggers(t, f, "start:noop", "poll:rolled-back", "sync:rolled-back")

	// A new good commit deploys normally and lifts the quarantine.
	f.pin(commitC, head3)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:rolled-back", "sync:rolled-back", "poll:applied")
	s = f.status("prod")
	if s.Running != commitC || s.LastHealthy != commitC || len(s.Quarantined) != 0 || s.Waiting != "" || s.LastError != "" {
		t.Fatalf("status after a good commit: %+v", s)
	}
	if q, _ := state.New(f.state, 0, zerolog.Nop()).Quarantine("prod"); len(q) != 0 {
		t.Fatalf("quarantine on disk after the pin moved: %+v", q)
	}
	if k := f.eventKinds(); !slices.Equal(k, []reconcile.EventKind{reconcile.EventFailure, reconcile.EventRollback, reconcile.EventFailure, reconcile.EventRollback, reconcile.EventDeploy, reconcile.EventRecovery}) {
		t.Fatalf("events %q", k)
	}
}

func TestAgentFirstDeployFailureStaysRunningAndFailed(t *testing.T) {
	f := newRollbackFixture(t)
	f.eng.UseWorld(compose.Observed{Project: "prod"}) // a fresh host
	f.pin(fake.CommitB, head1)
	f.start()
	f.settle("prod", 0)
	wantTriggers(t, f, "start:failed")
	rec := f.passes()[0]
	if rec.Class != reconcile.ClassHealth || rec.Service != "web" || !strings.Contains(rec.Error, "no healthy revision to roll back to: left running") {
		t.Fatalf("record: %+v", rec)
	}
	if got := f.webImage(); got != fake.ImgWebB+"/restarting" {
		t.Fatalf("web: %s, want the failed release left running", got)
	}
	s := f.status("prod")
	if s.Running != fake.CommitB || s.LastHealthy != "" || !slices.Equal(s.Quarantined, []string{fake.CommitB}) || s.GateFailures != 1 || s.Rollbacks != 0 {
		t.Fatalf("status: %+v", s)
	}
	if k := f.eventKinds(); !slices.Equal(k, []reconcile.EventKind{reconcile.EventFailure}) {
		t.Fatalf("events %q", k)
	}
	if err := f.a.Rollback("prod"); !errors.As(err, new(*pass.NothingToRollBackError)) {
		t.Fatalf("Rollback with nothing healthy: %v", err)
	}
	f.git.set(func(g *agentGit) { g.head = head2 })
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:failed")
}

func TestAgentFailedRollbackDoesNotLoop(t *testing.T) {
	f := newRollbackFixture(t)
	f.start()
	f.settle("prod", 0)
	// Now every web container crash-loops, old release or new (a shared
	// database went away, say).
	f.eng.SetOnStart("web", func(c *compose.Container) { c.State, c.RestartCount = "restarting", 1 })
	f.pin(fake.CommitB, head2)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:failed")
	rec := f.passes()[1]
	if rec.Class != reconcile.ClassHealth || !strings.Contains(rec.Error, "ROLLBACK to "+fake.CommitA[:12]+" FAILED too") {
		t.Fatalf("record: %+v", rec)
	}
	if s := f.status("prod"); s.Running != fake.CommitA || !slices.Equal(s.Quarantined, []string{fake.CommitB}) {
		t.Fatalf("status: %+v", s)
	}
	if k := f.eventKinds(); !slices.Equal(k, []reconcile.EventKind{reconcile.EventFailure, reconcile.EventFailure}) {
		t.Fatalf("events %q", k)
	}
	calls := mutatingCount(f)
	f.git.set(func(g *agentGit) { g.head = head1 })
	f.advance("prod", pollTick)
	f.advance("prod", pollTick)
	if len(f.passes()) != 2 || mutatingCount(f) != calls {
		t.Fatalf("after a failed rollback the agent kept trying: %q", f.triggers())
	}
	if !strings.Contains(f.logs.String(), "ROLLBACK FAILED") {
		t.Fatal("a failed rollback must be logged loudly")
	}
}

func TestAgentManualRollbackWorksWithGitUnreachable(t *testing.T) {
	f := newRollbackFixture(t)
	f.start()
	f.settle("prod", 0)
	if err := f.a.Rollback("prod"); !errors.As(err, new(*pass.NothingToRollBackError)) || !strings.Contains(err.Error(), "no healthy revision to roll back to") {
		t.Fatalf("Rollback when the pin is the only healthy revision: %v", err)
	}
	var c interface{ Conflict() bool }
	if err := f.a.Rollback("prod"); !errors.As(err, &c) || !c.Conflict() {
		t.Fatalf("pass.NothingToRollBackError must answer Conflict: %v", err)
	}
	if err := f.a.Rollback("prdo"); !errors.As(err, new(*UnknownEnvironmentError)) {
		t.Fatalf("Rollback of an unknown environment: %v", err)
	}

	f.pin(commitC, head2)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:applied")

	gitDown := errors.New("dial tcp 127.0.0.1:3000: connect: connection refused")
	f.git.set(func(g *agentGit) { g.revErr, g.headErr = gitDown, gitDown })
	_, revsBefore := f.git.counts("prod")
	w := f.waits("prod")
	if err := f.a.Rollback("prod"); err != nil {
		t.Fatal(err)
	}
	f.settle("prod", w)
	wantTriggers(t, f, "start:noop", "poll:applied", "rollback:rolled-back")
	if _, revs := f.git.counts("prod"); revs != revsBefore {
		t.Fatalf("the rollback asked git %d times", revs-revsBefore)
	}
	rec := f.passes()[2]
	if rec.Commit != commitC || rec.RolledBackTo != fake.CommitA || rec.Recreated != 1 || rec.Error != "" {
		t.Fatalf("rollback record: %+v", rec)
	}
	s := f.status("prod")
	if s.Running != fake.CommitA || !slices.Equal(s.Quarantined, []string{commitC}) || s.Rollbacks != 1 || s.GateFailures != 0 {
		t.Fatalf("status after the rollback: %+v", s)
	}
	if e := f.lastEvent(); e.Kind != reconcile.EventRollback || e.Commit != commitC || e.Previous != fake.CommitA {
		t.Fatalf("event: %+v", e)
	}

	// Git is back, the pin still names commitC: held.
	f.git.set(func(g *agentGit) { g.revErr, g.headErr, g.head = nil, nil, head3 })
	f.nudge("prod", reconcile.TriggerWebhook)
	if len(f.passes()) != 3 {
		t.Fatalf("held commit applied again: %q", f.triggers())
	}
}

func TestAgentRollbackReMaterializesAGoneRelease(t *testing.T) {
	f := newRollbackFixture(t)
	f.start()
	f.settle("prod", 0)
	f.pin(commitC, head2)
	f.advance("prod", pollTick)
	if err := os.RemoveAll(filepath.Join(f.git.releases, fake.CommitA)); err != nil {
		t.Fatal(err)
	}
	_, before := f.git.counts("prod")
	w := f.waits("prod")
	if err := f.a.Rollback("prod"); err != nil {
		t.Fatal(err)
	}
	f.settle("prod", w)
	wantTriggers(t, f, "start:noop", "poll:applied", "rollback:rolled-back")
	if _, after := f.git.counts("prod"); after != before+1 {
		t.Fatalf("%d source calls to bring back a deleted release, want 1", after-before)
	}
}

func TestAgentRollsBackAFailedMigrationOthersWaitFor(t *testing.T) {
	const commitD = "d00dd00dd00dd00dd00dd00dd00dd00dd00dd00d"
	const badMigrate = "127.0.0.1:5000/migrate:bad"
	f := newRollbackFixture(t)
	f.variants[commitD] = func(p *compose.Project) {
		fake.ModService("migrate", func(s *compose.Service) {
			s.Image, s.Config.Image, s.ConfigHash = badMigrate, badMigrate, fake.SHA("config", "migrate", "bad")
		})(p)
		f.variants[commitC](p) // web changes too: apply waits for migrate before recreating it
	}
	f.eng.SetOnStart("migrate", func(c *compose.Container) {
		c.State, c.ExitCode = "exited", 0
		if c.Image == badMigrate {
			c.ExitCode = 1
		}
	})
	f.eng.ContainerLogs["prod-migrate-1"] = []string{"ERROR: relation \"users\" already exists"}
	f.start()
	f.settle("prod", 0)
	f.pin(commitD, head2)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:rolled-back")
	rec := f.passes()[1]
	if rec.Service != "migrate" || rec.Class != reconcile.ClassHealth || rec.RolledBackTo != fake.CommitA ||
		!strings.Contains(rec.Error, "container exited with code 1, service_completed_successfully needs 0") ||
		!strings.Contains(rec.Error, "(web waits for it with service_completed_successfully)") ||
		len(rec.Logs) != 1 {
		t.Fatalf("record: %+v", rec)
	}
	if s := f.status("prod"); s.Running != fake.CommitA || !slices.Equal(s.Quarantined, []string{commitD}) || !strings.Contains(s.LastFailure, "migrate") {
		t.Fatalf("status: %+v", s)
	}
}

// TestAgentRollsBackToAHealthyRevisionRecordedByAnotherProcess (bug 4):
// a healthy revision written to the state dir by another process (a
// `lockstep apply`, through a store of its own) while the agent runs is the
// one a later gate failure rolls back to: the agent reads the store when it
// needs a target and keeps no copy made at start.
func TestAgentRollsBackToAHealthyRevisionRecordedByAnotherProcess(t *testing.T) {
	f := newRollbackFixture(t)
	f.start()
	f.settle("prod", 0)
	if s := f.status("prod"); s.LastHealthy != fake.CommitA {
		t.Fatalf("start: %+v", s)
	}

	// Another process applies commitC, finds it healthy and records it.
	dirC := filepath.Join(f.git.releases, commitC)
	if err := os.MkdirAll(dirC, 0o750); err != nil {
		t.Fatal(err)
	}
	other := state.New(f.state, 0, zerolog.Nop())
	if err := other.PushHealthy("prod", state.HealthyRevision{Commit: commitC, ReleaseDir: dirC, PinFile: "environments/prod.toml"}); err != nil {
		t.Fatal(err)
	}
	if s := f.status("prod"); s.LastHealthy != commitC {
		t.Fatalf("status does not show the healthy revision another process recorded: %+v", s)
	}

	f.pin(fake.CommitB, head2)
	f.advance("prod", pollTick)
	wantTriggers(t, f, "start:noop", "poll:rolled-back")
	if rec := f.passes()[1]; rec.Commit != fake.CommitB || rec.RolledBackTo != commitC || !strings.HasSuffix(rec.Error, "; rolled back to "+commitC[:12]) {
		t.Fatalf("pass record: %+v; want rolled back to %s, the newest healthy revision", rec, commitC)
	}
	f.eng.Mu.Lock()
	var webCommit string
	for _, c := range f.eng.World {
		if c.Name == "prod-web-1" {
			webCommit = c.Commit + "/" + c.State
		}
	}
	f.eng.Mu.Unlock()
	if webCommit != commitC+"/running" {
		t.Fatalf("web after the rollback: %s, want %s/running", webCommit, commitC)
	}
	if e := f.lastEvent(); e.Kind != reconcile.EventRollback || e.Previous != commitC {
		t.Fatalf("rollback event: %+v", e)
	}
}
