package pass

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// newGateFailureFixture is a pipeline over a stateful fake engine that runs
// fake.Project at fake.CommitA, recorded as the last healthy revision with
// its release directory on disk. The pin names fake.CommitB, whose web
// image crash-loops.
func newGateFailureFixture(t *testing.T) *runnerFixture {
	t.Helper()
	f := newRunnerFixture(t, nil, false)
	releases := t.TempDir()
	for _, c := range []string{fake.CommitA, fake.CommitB} {
		if err := os.MkdirAll(filepath.Join(releases, c), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	f.src.rev = gitsource.Release{Head: head2, Commit: fake.CommitB, Dir: filepath.Join(releases, fake.CommitB)}
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		p := fake.Project()
		p.ReleaseDir, p.Commit = rel.Dir, rel.Commit
		if rel.Commit == fake.CommitB {
			fake.ModService("web", func(s *compose.Service) {
				s.Image, s.Config.Image, s.ConfigHash = fake.ImgWebB, fake.ImgWebB, fake.SHA("config", "web", fake.ImgWebB)
			})(p)
		}
		return p, nil
	}
	f.r.Gate = reconcile.GateOptions{Clock: fake.NewAutoClock()}
	f.eng.UseWorld(fake.Converged(fake.Project()))
	f.eng.SetOnStart("migrate", func(c *compose.Container) { c.State, c.ExitCode = "exited", 0 })
	f.eng.SetOnStart("web", func(c *compose.Container) {
		if c.Image == fake.ImgWebB {
			c.State, c.RestartCount = "restarting", 3
		}
	})
	if err := f.st.PushHealthy("prod", state.HealthyRevision{Commit: fake.CommitA, ReleaseDir: filepath.Join(releases, fake.CommitA)}); err != nil {
		t.Fatal(err)
	}
	return f
}

// webCreates are the engine's "create web#..." calls.
func webCreates(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "create web#") {
			out = append(out, c)
		}
	}
	return out
}

// webImage is the image and state of the web container the engine runs.
func webImage(eng *fake.Engine) string {
	eng.Mu.Lock()
	defer eng.Mu.Unlock()
	for _, c := range eng.World {
		if c.Service == "web" {
			return c.Image + "/" + c.State
		}
	}
	return "none"
}

// TestNoRollbackLeavesAGateFailureRunningQuarantined: with --no-rollback
// a release that fails its health gate stays running for inspection,
// although a healthy revision is there to go back to; it is quarantined
// and recorded as a health failure, and nothing is rolled back. Without
// the flag the same fixture rolls back, so the test tells them apart.
func TestNoRollbackLeavesAGateFailureRunningQuarantined(t *testing.T) {
	tests := []struct {
		name       string
		noRollback bool
		result     reconcile.Result
		errSuffix  string
		webCreates int    // the failed release's, plus the rollback's
		web        string // what runs after the pass
		events     []reconcile.EventKind
	}{
		{"no-rollback", true, reconcile.ResultFailed, "; left running (--no-rollback) and quarantined", 1,
			fake.ImgWebB + "/restarting", []reconcile.EventKind{reconcile.EventFailure}},
		{"default rolls back", false, reconcile.ResultRolledBack, "; rolled back to " + fake.CommitA[:12], 2,
			fake.ImgWebA + "/running", []reconcile.EventKind{reconcile.EventFailure, reconcile.EventRollback}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newGateFailureFixture(t)
			res, err := f.r.Run(context.Background(), prodEnv, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI, NoRollback: tt.noRollback})
			var ge *reconcile.GateError
			if !errors.As(err, &ge) || ge.Service != "web" {
				t.Fatalf("error %v, want the gate failure of web", err)
			}
			rec := res.Record
			if rec == nil || rec.Result != tt.result || rec.Class != reconcile.ClassHealth || rec.Service != "web" ||
				rec.Commit != fake.CommitB || !strings.HasSuffix(rec.Error, tt.errSuffix) {
				t.Fatalf("record: %+v", rec)
			}
			if tt.noRollback && (rec.RolledBackTo != "" || res.RolledBackTo != "") {
				t.Fatalf("rolled back to %q/%q with --no-rollback", rec.RolledBackTo, res.RolledBackTo)
			}
			if got := webCreates(f.eng.Calls()); len(got) != tt.webCreates {
				t.Fatalf("web created %d times (%q), want %d", len(got), got, tt.webCreates)
			}
			if got := webImage(f.eng); got != tt.web {
				t.Fatalf("web runs %s, want %s", got, tt.web)
			}
			q, _ := f.st.Quarantine("prod")
			if !slices.Equal(state.Commits(q), []string{fake.CommitB}) || q[0].Service != "web" || q[0].Manual {
				t.Fatalf("quarantine: %+v", q)
			}
			h, _ := f.st.History("prod", 0)
			if len(h) != 1 || h[0].ID != rec.ID || h[0].Result != tt.result || h[0].Class != reconcile.ClassHealth {
				t.Fatalf("history: %+v", h)
			}
			if d, _ := f.st.Deployed("prod", "prod"); d == nil || (tt.noRollback && d.Commit != fake.CommitB) || (!tt.noRollback && d.Commit != fake.CommitA) {
				t.Fatalf("deployment record: %+v", d)
			}
			if hs, _ := f.st.Healthy("prod"); len(hs) != 1 || hs[0].Commit != fake.CommitA {
				t.Fatalf("healthy revisions: %+v", hs)
			}
			var kinds []reconcile.EventKind
			for _, e := range res.Events {
				kinds = append(kinds, e.Kind)
			}
			if !slices.Equal(kinds, tt.events) {
				t.Fatalf("events %q, want %q", kinds, tt.events)
			}
		})
	}
}
