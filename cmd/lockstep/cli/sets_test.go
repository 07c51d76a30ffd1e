package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

const setConfig = testConfig + `
[[environment_set]]
name = "review"
pins = "environments/review/*.toml"
remove_volumes = true
url = "https://${LOCKSTEP_SLUG}.review.example.com"
`

// listingRunner is the fake runner that can also list a set's pin files.
type listingRunner struct {
	*fakeRunner
	files []string
}

func (l listingRunner) ListPins(ctx context.Context, glob string) (string, []string, error) {
	return shaStaging, l.files, nil
}

// TestPlanOfASetEnvironment: `lockstep plan review-pr-1` finds the
// environment among its set's pin files, with the set's settings.
func TestPlanOfASetEnvironment(t *testing.T) {
	cfg := writeConfig(t, setConfig)
	fake := &fakeRunner{results: map[string]*pass.Result{
		"review-pr-1": {Environment: "review-pr-1", Project: "review-pr-1", Head: shaStaging, Commit: shaProd, Plan: noChanges("review-pr-1", "review-pr-1", shaProd)},
	}}
	lr := listingRunner{fakeRunner: fake, files: []string{"environments/review/pr-1.toml", "environments/review/pr-2.toml"}}
	var stdout, stderr bytes.Buffer
	c := newTestCLI(&stdout, &stderr, lr)
	if code := c.run(context.Background(), []string{"--config", cfg, "plan", "review-pr-1"}); code != exitOK {
		t.Fatalf("plan review-pr-1: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if len(fake.envs) != 1 {
		t.Fatalf("passes: %q", fake.calls)
	}
	env := fake.envs[0]
	if env.Name != "review-pr-1" || env.Project != "review-pr-1" || env.Set != "review" || env.PinFile != "environments/review/pr-1.toml" ||
		env.URL != "https://pr-1.review.example.com" || !env.RemoveVolumes {
		t.Fatalf("environment: %+v", env)
	}

	stdout.Reset()
	stderr.Reset()
	if code := c.run(context.Background(), []string{"--config", cfg, "plan", "review-pr-9"}); code != exitFailure ||
		!strings.Contains(stderr.String(), "no pin file of set review (environments/review/*.toml) at "+shaStaging[:12]+" makes the environment review-pr-9") {
		t.Fatalf("plan of a set environment without a pin file: exit %d %s", code, stderr.String())
	}
	if code := c.run(context.Background(), []string{"--config", cfg, "plan", "qa"}); code != exitUsage {
		t.Fatalf("an unknown name is still a usage error: exit %d", code)
	}
}

func TestStatusListsSetsAndWhatIsNotDeployed(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	envs := []reconcile.EnvStatus{
		{Name: "production", Project: "prod", Pinned: shaProd, Running: shaProd},
		{Name: "review-pr-1", Project: "review-pr-1", Set: "review", PinFile: "environments/review/pr-1.toml", URL: "https://pr-1.review.example.com", Pinned: shaStaging, Running: shaStaging},
		{Name: "review-pr-3", Set: "review", PinFile: "environments/review/pr-3.toml", NotDeployed: "not deployed: set review already runs its max of 1"},
	}
	var b bytes.Buffer
	writeStatus(&b, envs, now)
	out := b.String()
	for _, want := range []string{
		"review-pr-1: set review, pin file environments/review/pr-1.toml, https://pr-1.review.example.com\n",
		"set review: environments/review/pr-3.toml (review-pr-3): not deployed: set review already runs its max of 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if rows := strings.Count(out, shaProd[:12]) + strings.Count(out, shaStaging[:12]); rows != 4 || strings.Contains(strings.Split(out, "\n")[3], "review-pr-3") {
		t.Errorf("table rows:\n%s", out)
	}
}

// newTestCLI is a CLI whose runner is r, with an empty process
// environment.
func newTestCLI(stdout, stderr *bytes.Buffer, r runner) *cli {
	return &cli{
		stdout: stdout, stderr: stderr,
		getenv: func(string) string { return "" },
		newRunner: func(*config.Config, zerolog.Logger) (runner, io.Closer, error) {
			return r, nil, nil
		},
	}
}
