package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

const windowConfig = `[repo]
url = "https://git.example.com/acme/infra.git"

[[environment]]
name = "production"
project = "prod"
windows = ["Mon-Fri 09:00-16:00 Europe/Berlin"]
`

// heldRunner answers with production's new release (shaStaging) held for
// its window while shaProd runs.
func heldRunner() *fakeRunner {
	return &fakeRunner{results: map[string]*pass.Result{
		"production": {Environment: "production", Project: "prod", Head: shaStaging, Commit: shaProd, Plan: noChanges("production", "prod", shaProd),
			Held: &pass.Held{Kind: reconcile.HoldWindow, Commit: shaStaging, Reason: "waiting for the deploy window (opens Mon 09:00 CET)",
				Opens: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}},
	}}
}

func TestPlanAndApplySayWhatIsHeld(t *testing.T) {
	cfg := writeConfig(t, windowConfig)
	fake := heldRunner()
	got := run(t, fake, nil, "--config", cfg, "plan")
	want := "  pending: release 4d2e1aa0c3b2 waiting for the deploy window (opens Mon 09:00 CET); the plan is of what runs (9fceb02d0ae5)"
	if got.code != exitOK || !strings.Contains(got.stdout, want) {
		t.Fatalf("plan: exit %d, stdout lacks %q:\n%s", got.code, want, got.stdout)
	}
	if ws := fake.envs[0].Windows; len(ws) != 1 || ws[0].String() != "Mon-Fri 09:00-16:00 Europe/Berlin" {
		t.Fatalf("the pass got windows %v from the config", ws)
	}

	got = run(t, fake, nil, "--config", cfg, "plan", "--json")
	var out []struct {
		Held *reconcile.Hold `json:"held"`
	}
	if err := json.Unmarshal([]byte(got.stdout), &out); err != nil || len(out) != 1 || out[0].Held == nil || out[0].Held.Commit != shaStaging || out[0].Held.Kind != reconcile.HoldWindow {
		t.Fatalf("plan --json: %v\n%s", err, got.stdout)
	}

	got = run(t, fake, nil, "--config", cfg, "apply")
	if want := "production: release 4d2e1aa0c3b2 held, waiting for the deploy window (opens Mon 09:00 CET); the plan is of what runs"; !strings.Contains(got.stdout, want) {
		t.Fatalf("apply stdout lacks %q:\n%s", want, got.stdout)
	}
	if o := fake.opts[len(fake.opts)-1]; o.ForceWindow {
		t.Fatal("apply without --force-window forced the window")
	}
}

func TestApplyForceWindow(t *testing.T) {
	cfg := writeConfig(t, windowConfig)
	fake := heldRunner()
	res := fake.results["production"]
	res.Held, res.ForceWindow, res.Commit = nil, true, shaStaging
	res.Plan = changes("production", "prod", shaStaging)
	res.Applied = &reconcile.ApplyResult{Done: res.Plan.Actions, Recreated: 1}
	got := run(t, fake, nil, "--config", cfg, "apply", "--force-window", "production")
	if got.code != exitOK || !fake.opts[0].ForceWindow || !strings.Contains(got.stdout, "production: applied outside its deploy window (--force-window)") {
		t.Fatalf("exit %d opts %+v stdout:\n%s%s", got.code, fake.opts, got.stdout, got.stderr)
	}
	if got := run(t, fake, nil, "--config", cfg, "plan", "--force-window"); got.code != exitUsage {
		t.Fatalf("plan --force-window: exit %d, want a usage error", got.code)
	}
}

func TestStatusAndHistorySayWhatIsHeld(t *testing.T) {
	var b strings.Builder
	writeStatus(&b, []reconcile.EnvStatus{{Name: "production", Pinned: shaStaging, Running: shaProd,
		Held: "waiting for the deploy window (opens Mon 09:00 CET)", Pending: shaStaging, HeldBy: reconcile.HoldWindow}}, time.Now())
	if want := "production: held: release 4d2e1aa0c3b2 waiting for the deploy window (opens Mon 09:00 CET)\n"; !strings.Contains(b.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	writeHistory(&b, []reconcile.PassRecord{
		{ID: "p1", Trigger: "poll", Commit: shaProd, Result: reconcile.ResultNoop, Held: &reconcile.Hold{Kind: reconcile.HoldWindow, Commit: shaStaging}},
		{ID: "p2", Trigger: "cli", Commit: shaStaging, Result: reconcile.ResultApplied, ForceWindow: true},
	})
	for _, want := range []string{"noop (4d2e1aa0c3b2 held: window)", "applied (--force-window)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("history lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStatusSaysTheSwarm(t *testing.T) {
	var b strings.Builder
	writeStatus(&b, []reconcile.EnvStatus{{Name: "production", Running: shaProd, Swarm: &reconcile.SwarmStatus{
		Node: "m2", Role: reconcile.SwarmFollower, Leader: "m1", Nodes: 3,
		Lost: []reconcile.SwarmNode{{Hostname: "m3", State: "down", Reachability: "unreachable"}}}}}, time.Now())
	if want := "production: swarm: on m2, follower of m1, 3 nodes; node m3 down (manager unreachable)\n"; !strings.Contains(b.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, b.String())
	}
}
