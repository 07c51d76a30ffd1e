package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// applyAndReplan applies the plan for the world f holds, then plans again
// from what f reports afterwards.
func applyAndReplan(t *testing.T, f *fake.Engine, desired *compose.Project) (*ApplyResult, *Plan, error) {
	t.Helper()
	ctx := context.Background()
	observed, err := f.Observe(withDeadline(t), desired)
	if err != nil {
		t.Fatal(err)
	}
	res, applyErr := Apply(ctx, f, desired, observed, BuildPlan(desired, observed), testOptions())
	after, err := f.Observe(withDeadline(t), desired)
	if err != nil {
		t.Fatal(err)
	}
	return res, BuildPlan(desired, after), applyErr
}

func withDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestApplyReconnectsWithoutRestart: a container disconnected by hand, and
// a stopped one whose network was re-created, are re-wired in place (no
// stop, no create, no remove: IDs stay), the stopped one before its start,
// and the next plan is empty.
func TestApplyReconnectsWithoutRestart(t *testing.T) {
	desired := netProject()
	world := fake.Converged(desired)
	for i := range world.Networks {
		if world.Networks[i].Name == "prod_backend" {
			world.Networks[i].ID = "net-backend-recreated"
		}
	}
	delete(fake.ObservedContainer(&world, "web", 1).Networks, "prod_backend")
	db := fake.ObservedContainer(&world, "db", 1)
	db.State, db.Health = "exited", ""
	webID, dbID := fake.ObservedContainer(&world, "web", 1).ID, db.ID
	f := fake.NewEngine()
	f.UseWorld(world)

	res, next, err := applyAndReplan(t, f, desired)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"disconnect " + dbID + " prod_backend",
		"connect " + dbID + " prod_backend",
		"start " + dbID,
		"connect " + webID + " prod_backend",
	}
	if got := fake.Mutating(f.Calls()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("engine calls:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if res.Reconnected != 2 || res.Started != 1 || res.Created+res.Recreated+res.Removed != 0 {
		t.Errorf("result = %+v", res)
	}
	if !next.Empty() {
		t.Errorf("next plan is not empty: %q", briefs(next))
	}
}

// TestApplyRecreatedNetworkReconnectsInOnePass: a network removed by hand
// (its containers disconnected) is created and every container that
// belongs on it reconnected by the same apply.
func TestApplyRecreatedNetworkReconnectsInOnePass(t *testing.T) {
	desired := netProject()
	world := fake.Converged(desired)
	world.Networks = world.Networks[:1] // prod_backend removed by hand
	delete(fake.ObservedContainer(&world, "web", 1).Networks, "prod_backend")
	delete(fake.ObservedContainer(&world, "db", 1).Networks, "prod_backend")
	webID, dbID := fake.ObservedContainer(&world, "web", 1).ID, fake.ObservedContainer(&world, "db", 1).ID
	f := fake.NewEngine()
	f.UseWorld(world)

	res, next, err := applyAndReplan(t, f, desired)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"create-network prod_backend",
		"connect " + dbID + " prod_backend",
		"connect " + webID + " prod_backend",
	}
	if got := fake.Mutating(f.Calls()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("engine calls:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if res.Reconnected != 2 {
		t.Errorf("result = %+v", res)
	}
	if !next.Empty() {
		t.Errorf("next plan is not empty: %q", briefs(next))
	}
}

// TestApplyReconnectFailure: a failed connect says which container and
// network, and what is left off until the next pass.
func TestApplyReconnectFailure(t *testing.T) {
	desired := netProject(fake.ModService("web", fake.OnNetworks([]string{"backend", "default"})))
	world := fake.Converged(desired)
	web := fake.ObservedContainer(&world, "web", 1)
	web.Networks = nil // disconnected from both
	f := fake.NewEngine()
	f.UseWorld(world)
	f.Fail["connect "+web.ID+" prod_backend"] = errors.New("network prod_backend not found")

	_, next, err := applyAndReplan(t, f, desired)
	if err == nil {
		t.Fatal("apply succeeded with a failing connect")
	}
	for _, part := range []string{"reconnect web (prod-web-1)", "connect container " + web.ID[:12] + " to network prod_backend",
		"network prod_backend not found", "prod-web-1 is not on prod_backend, prod_default until the next pass"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if got := briefs(next); len(got) != 1 || !strings.HasPrefix(got[0], "reconnect prod-web-1") {
		t.Errorf("next plan = %q, want the reconnect again", got)
	}
}
