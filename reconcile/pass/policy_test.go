package pass

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// privilegedWeb makes the fixture's web service privileged and bind /etc.
func privilegedWeb(f *runnerFixture) {
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		p := fake.Project(fake.ModService("web", func(s *compose.Service) {
			s.Host.Privileged = true
			s.Host.Binds = append(s.Host.Binds, "/etc:/host-etc:ro")
		}))
		p.ReleaseDir = rel.Dir
		return p, nil
	}
}

var wantPolicy = []string{
	`service "web": privileged: true is not allowed ([policy].allow_privileged = false)`,
	`service "web": volumes: bind of /etc at /host-etc is outside the release and every allowed root ([policy].allowed_bind_roots = [])`,
}

// TestRunnerPolicyEnforceTouchesNothing: in enforce mode a violating
// release fails plan, validate and apply at the policy step, before the
// engine is asked anything (not even observe), as a permanent error that
// names the service, the setting and the rule.
func TestRunnerPolicyEnforceTouchesNothing(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	privilegedWeb(f)
	f.r.Policy = compose.Policy{Mode: compose.PolicyEnforce}

	passes := map[string]func() (*Result, error){
		"apply":    func() (*Result, error) { return f.r.Apply(context.Background(), prodEnv) },
		"plan":     func() (*Result, error) { return f.r.Plan(context.Background(), prodEnv) },
		"validate": func() (*Result, error) { return f.r.Validate(context.Background(), prodEnv, "") },
	}
	for name, pass := range passes {
		res, err := pass()
		var pe *compose.PolicyError
		var se *reconcile.StepError
		if !errors.As(err, &pe) || !errors.As(err, &se) || se.Step != reconcile.StepPolicy {
			t.Fatalf("%s: want a policy StepError wrapping *compose.PolicyError, got %v", name, err)
		}
		if reconcile.Classify(err) != reconcile.ClassPermanent {
			t.Errorf("%s: class %q, want %q: retrying cannot help", name, reconcile.Classify(err), reconcile.ClassPermanent)
		}
		for _, w := range append([]string{"policy prod at " + fake.CommitA[:12]}, wantPolicy...) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q: %v", name, w, err)
			}
		}
		if res == nil || !slices.Equal(res.Policy, wantPolicy) || res.Plan != nil || res.Commit != fake.CommitA {
			t.Errorf("%s: result %+v", name, res)
		}
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Fatalf("the engine was called for a release the policy refuses: %q", calls)
	}
	// The refused apply is recorded in the history, as every apply is
	// (issue 9: the CLI's passes go into the same state as the agent's);
	// nothing else of the state is written.
	var written []string
	_ = filepath.WalkDir(f.state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(f.state, p)
			written = append(written, rel)
		}
		return nil
	})
	if !slices.Equal(written, []string{filepath.Join("environments", "prod", "history.json")}) {
		t.Fatalf("a refused release wrote state: %v", written)
	}
	if recs, _ := state.New(f.state, 0, zerolog.Nop()).History("prod", 0); len(recs) != 1 || recs[0].Result != reconcile.ResultFailed || recs[0].Class != reconcile.ClassPermanent {
		t.Fatalf("the refused apply's history record: %+v", recs)
	}

	// Allowed by the policy: the same release passes in enforce mode.
	f.r.Policy = compose.Policy{Mode: compose.PolicyEnforce, AllowPrivileged: true, AllowedBindRoots: []string{"/etc"}}
	res, err := f.r.Plan(context.Background(), prodEnv)
	if err != nil || len(res.Policy) != 0 {
		t.Fatalf("allowed release: %v, policy %q", err, res.Policy)
	}
}

// TestRunnerPolicyWarnDeploys: in warn mode the release deploys; each
// violation is logged at warn with its service, setting and rule, and is
// in the pass result.
func TestRunnerPolicyWarnDeploys(t *testing.T) {
	f := newRunnerFixture(t, nil, false)
	privilegedWeb(f)
	var logs bytes.Buffer
	f.r.Log = zerolog.New(&logs)
	f.r.Policy = compose.Policy{Mode: compose.PolicyWarn}
	for _, id := range []string{"new1", "new2", "new3"} {
		f.eng.Script(id, compose.Container{State: "running", Health: "healthy"})
	}
	f.eng.Script("new2", compose.Container{State: "exited", ExitCode: 0})

	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatalf("apply in warn mode: %v", err)
	}
	if res.Applied == nil || res.Applied.Created != 3 {
		t.Fatalf("warn mode must deploy: applied %+v", res.Applied)
	}
	if !slices.Equal(res.Policy, wantPolicy) {
		t.Errorf("result policy:\n got %q\nwant %q", res.Policy, wantPolicy)
	}
	var warned int
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "deploy policy violation") {
			warned++
			for _, field := range []string{`"env":"prod"`, `"service":"web"`, `"commit":"` + fake.CommitA + `"`} {
				if !strings.Contains(line, field) {
					t.Errorf("warning lacks %s: %s", field, line)
				}
			}
		}
	}
	if warned != 2 || !strings.Contains(logs.String(), `"rule":"allow_privileged"`) || !strings.Contains(logs.String(), `"rule":"allowed_bind_roots"`) {
		t.Errorf("want 2 warn lines naming their rules, got %d:\n%s", warned, logs.String())
	}

	// The default (zero) policy warns too: "" is warn, never enforce.
	f.r.Policy = compose.Policy{}
	if res, err := f.r.Plan(context.Background(), prodEnv); err != nil || len(res.Policy) != 2 {
		t.Fatalf("zero policy: %v, %q", err, res.Policy)
	}
}
