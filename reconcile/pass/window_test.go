package pass

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// fake.NewClock stands at Friday 2025-03-14 09:26 UTC: this window is
// closed then and opens on Monday.
const closedWindow = "Mon 09:00-16:00 Europe/Berlin"

func windows(t *testing.T, list ...string) []window.Window {
	t.Helper()
	ws, err := window.ParseAll(list)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// newWindowFixture runs fake.Project at CommitA, deployed and healthy;
// the pin names CommitB (a new web image), which is healthy too; the
// clock stands outside closedWindow.
func newWindowFixture(t *testing.T) (*runnerFixture, Environment) {
	t.Helper()
	f := newWindowFixtureDeployed(t, true)
	env := prodEnv
	env.Windows = windows(t, closedWindow)
	return f, env
}

func newWindowFixtureDeployed(t *testing.T, deployed bool) *runnerFixture {
	t.Helper()
	f := newGateFailureFixture(t)
	f.eng.SetOnStart("web", nil)
	f.r.Clock = fake.NewClock()
	if !deployed {
		return f
	}
	if err := f.st.SaveDeployed("prod", reconcile.DeployedOf(fake.Project(), f.r.now())); err != nil {
		t.Fatal(err)
	}
	return f
}

func eventKinds(res *Result) []reconcile.EventKind {
	var kinds []reconcile.EventKind
	for _, e := range res.Events {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// removeWeb is drift: the web container removed by hand.
func removeWeb(f *runnerFixture) {
	f.eng.Mu.Lock()
	defer f.eng.Mu.Unlock()
	for id, c := range f.eng.World {
		if c.Service == "web" {
			delete(f.eng.World, id)
		}
	}
}

// TestClosedWindowHoldsANewReleaseAndRepairsWhatRuns: outside its window
// the new commit is not applied, but the container removed by hand is
// put back, as the commit that runs has it; the hold is in the result and
// the history, and EventHeld is said once, however many passes follow.
func TestClosedWindowHoldsANewReleaseAndRepairsWhatRuns(t *testing.T) {
	f, env := newWindowFixture(t)
	removeWeb(f)
	res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
	if err != nil {
		t.Fatal(err)
	}
	want := "waiting for the deploy window (opens Mon 09:00 CET)"
	if h := res.Held; h == nil || h.Kind != reconcile.HoldWindow || h.Commit != fake.CommitB || h.Reason != want ||
		!h.Opens.Equal(time.Date(2025, 3, 17, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("held: %+v", res.Held)
	}
	if got := webImage(f.eng); got != fake.ImgWebA+"/running" {
		t.Fatalf("web runs %s, want the running release's image put back", got)
	}
	rec := res.Record
	if rec.Result != reconcile.ResultApplied || rec.Commit != fake.CommitA || !rec.Held.Same(res.Held) || rec.Head != head2 {
		t.Fatalf("record: %+v", rec)
	}
	if d, _ := f.st.Deployed("prod", "prod"); d.Commit != fake.CommitA {
		t.Fatalf("deployed %s, want what ran", d.Commit)
	}
	if kinds := eventKinds(res); !slices.Contains(kinds, reconcile.EventHeld) {
		t.Fatalf("events %q, want held", kinds)
	}
	for _, e := range res.Events {
		if e.Kind == reconcile.EventHeld && (e.Commit != fake.CommitB || e.Reason != want || e.Environment != "prod") {
			t.Fatalf("held event: %+v", e)
		}
	}
	// Again, with nothing to repair: held, noop, and not said again.
	res, err = f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerPoll})
	if err != nil || res.Held == nil || res.Record.Result != reconcile.ResultNoop || len(res.Events) != 0 {
		t.Fatalf("second pass: %v %+v events %q", err, res.Record, eventKinds(res))
	}
	if creates := webCreates(f.eng.Calls()); len(creates) != 1 {
		t.Fatalf("web created %q, want once (the repair)", creates)
	}
	// The plan says the same, and plans what runs.
	plan, err := f.r.Plan(context.Background(), env)
	if err != nil || plan.Held == nil || plan.Held.Reason != want || !plan.Plan.Empty() {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	// The window opens: the release goes out.
	f.r.Clock.(*fake.Clock).Advance(72 * time.Hour)
	res, err = f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerPoll})
	if err != nil || res.Held != nil || res.Record.Commit != fake.CommitB || webImage(f.eng) != fake.ImgWebB+"/running" {
		t.Fatalf("in the window: %v %+v web %s", err, res.Record, webImage(f.eng))
	}
}

// TestHeldWithNothingRunningPlansAndAppliesNothing: a first release
// outside its window is planned, not applied.
func TestHeldWithNothingRunningPlansAndAppliesNothing(t *testing.T) {
	f := newWindowFixtureDeployed(t, false)
	env := prodEnv
	env.Windows = windows(t, closedWindow)
	f.eng.UseWorld(compose.Observed{Project: "prod", Images: map[string]string{}})
	res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
	if err != nil {
		t.Fatal(err)
	}
	if res.Held == nil || res.Held.Commit != fake.CommitB || res.Plan.Empty() || res.Record.Result != reconcile.ResultPaused || res.Applied != nil {
		t.Fatalf("result: %+v record %+v", res, res.Record)
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("engine changed: %q", m)
	}
}

// TestForceWindowApplies: --force-window applies the release while the
// window is closed, and the history says so.
func TestForceWindowApplies(t *testing.T) {
	f, env := newWindowFixture(t)
	res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI, ForceWindow: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Held != nil || !res.ForceWindow || !res.Record.ForceWindow || res.Record.Commit != fake.CommitB || webImage(f.eng) != fake.ImgWebB+"/running" {
		t.Fatalf("forced: %+v web %s", res.Record, webImage(f.eng))
	}
	h, _ := f.st.History("prod", 0)
	if len(h) != 1 || !h[0].ForceWindow {
		t.Fatalf("history: %+v", h)
	}
}

// TestRollbackIsNeverWindowGated: a release forced out of its window that
// fails its gate is rolled back, window closed or not.
func TestRollbackIsNeverWindowGated(t *testing.T) {
	f, env := newWindowFixture(t)
	f.eng.SetOnStart("web", func(c *compose.Container) {
		if c.Image == fake.ImgWebB {
			c.State, c.RestartCount = "restarting", 3
		}
	})
	res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI, ForceWindow: true})
	var ge *reconcile.GateError
	if !errors.As(err, &ge) || res.Record.Result != reconcile.ResultRolledBack || webImage(f.eng) != fake.ImgWebA+"/running" {
		t.Fatalf("err %v record %+v web %s", err, res.Record, webImage(f.eng))
	}
}

// TestBothListsMustBeOpen: the host's window is open, the pin's is not:
// held; the pin's alone open: held too.
func TestBothListsMustBeOpen(t *testing.T) {
	for _, tt := range []struct{ host, pin string }{
		{"Fri 09:00-10:00 UTC", closedWindow},
		{closedWindow, "Fri 09:00-10:00 UTC"},
	} {
		f, env := newWindowFixture(t)
		env.Windows = windows(t, tt.host)
		f.src.rev.Windows = windows(t, tt.pin)
		res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI})
		if err != nil || res.Held == nil || webImage(f.eng) != fake.ImgWebA+"/running" {
			t.Fatalf("host %q pin %q: %v held %+v web %s", tt.host, tt.pin, err, res.Held, webImage(f.eng))
		}
	}
	f, env := newWindowFixture(t)
	env.Windows = windows(t, "Fri 09:00-10:00 UTC")
	f.src.rev.Windows = windows(t, "daily 09:00-09:30 UTC")
	if res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerCLI}); err != nil || res.Held != nil || webImage(f.eng) != fake.ImgWebB+"/running" {
		t.Fatalf("both open: %v held %+v web %s", err, res.Held, webImage(f.eng))
	}
}

// TestPausedReportsHeld: a paused pin is a hold, said once.
func TestPausedReportsHeld(t *testing.T) {
	f, env := newWindowFixture(t)
	env.Windows = nil
	f.src.rev.Paused, f.src.rev.PinFile = true, "environments/prod.toml"
	for i, wantEvents := range []int{1, 0} {
		res, err := f.r.Run(context.Background(), env, Options{Mode: ModeApply, Trigger: reconcile.TriggerPoll})
		if err != nil {
			t.Fatal(err)
		}
		h := res.Held
		if h == nil || h.Kind != reconcile.HoldPaused || h.Reason != "paused in its pin file environments/prod.toml" || h.Commit != fake.CommitB ||
			res.Record.Result != reconcile.ResultPaused || res.Record.Held == nil {
			t.Fatalf("pass %d: held %+v record %+v", i, h, res.Record)
		}
		n := 0
		for _, k := range eventKinds(res) {
			if k == reconcile.EventHeld {
				n++
			}
		}
		if n != wantEvents {
			t.Fatalf("pass %d: %d held events, want %d", i, n, wantEvents)
		}
	}
	if webImage(f.eng) != fake.ImgWebA+"/running" {
		t.Fatal("a paused environment changed")
	}
}

// TestHeldToldAgainAfterAnotherOutcome: a hold is told again when an
// earlier record between holds is not a failure and holds something else.
func TestHeldToldAgainAfterAnotherOutcome(t *testing.T) {
	f, env := newWindowFixture(t)
	h := &Held{Kind: reconcile.HoldWindow, Commit: fake.CommitB, Reason: "waiting for the deploy window (opens Mon 09:00 CET)"}
	for _, rec := range []reconcile.PassRecord{
		{ID: "1", Result: reconcile.ResultNoop, Held: h},
		{ID: "2", Result: reconcile.ResultFailed, Class: reconcile.ClassGit},
	} {
		if err := f.st.AppendHistory("prod", rec); err != nil {
			t.Fatal(err)
		}
	}
	r := f.r.newRun(env, Options{Mode: ModeApply})
	if !r.toldHeld(h) {
		t.Fatal("a git failure between two holds must not tell it again")
	}
	if err := f.st.AppendHistory("prod", reconcile.PassRecord{ID: "3", Result: reconcile.ResultApplied}); err != nil {
		t.Fatal(err)
	}
	if r.toldHeld(h) {
		t.Fatal("after a pass that held nothing, a hold is news again")
	}
}
