package cli

import (
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// On a swarm manager that is not the leader the pass plans and changes
// nothing: plan and apply say so on stdout, where the plan alone read as
// if apply had carried it out.
func TestPlanAndApplySayAFollowerAppliesNothing(t *testing.T) {
	cfg := writeConfig(t, windowConfig)
	why := "this node (n2) is a manager but not the leader: the agent on the leader applies"
	fake := &fakeRunner{results: map[string]*pass.Result{
		"production": {Environment: "production", Project: "prod", Head: shaStaging, Commit: shaStaging, Plan: changes("production", "prod", shaStaging),
			Held: &pass.Held{Kind: reconcile.HoldFollower, Commit: shaStaging, Reason: why}},
	}}
	got := run(t, fake, nil, "--config", cfg, "plan")
	if want := "  held: " + why + "; apply on this node changes nothing\n"; got.code != exitOK || !strings.Contains(got.stdout, want) {
		t.Errorf("plan: exit %d, stdout lacks %q:\n%s", got.code, want, got.stdout)
	}
	got = run(t, fake, nil, "--config", cfg, "apply")
	if want := "production: nothing applied: " + why + "\n"; !strings.Contains(got.stdout, want) {
		t.Errorf("apply: stdout lacks %q:\n%s", want, got.stdout)
	}
}
