package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// TestAgentAppliesAHeldReleaseWhenItsWindowOpens: the pin names a new
// commit while the deploy window is closed (fake.NewClock is a Friday
// morning, the window opens on Monday). The status says it is held and
// why; the loop's timer at the opening runs the pass that applies it,
// without waiting for a poll or a drift check.
func TestAgentAppliesAHeldReleaseWhenItsWindowOpens(t *testing.T) {
	f := newRollbackFixture(t)
	f.opts.PollInterval, f.opts.DriftInterval = 100*time.Hour, 100*time.Hour
	ws, err := window.ParseAll([]string{"Mon 09:00-16:00 Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Environments[0].Windows = ws
	if err := f.runner.State.SaveDeployed("prod", reconcile.DeployedOf(fake.Project(), f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	f.pin(commitC, head2)
	f.start()
	f.settle("prod", 0)
	wantTriggers(t, f, "start:noop")
	s := f.status("prod")
	if s.Held != "waiting for the deploy window (opens Mon 09:00 CET)" || s.Pending != commitC || s.HeldBy != reconcile.HoldWindow ||
		s.Pinned != commitC || s.Running != fake.CommitA {
		t.Fatalf("status: held %q pending %s by %q pinned %s running %s", s.Held, s.Pending, s.HeldBy, s.Pinned, s.Running)
	}
	if kinds := f.eventKinds(); !slices.Equal(kinds, []reconcile.EventKind{reconcile.EventHeld}) {
		t.Fatalf("events %q, want one held", kinds)
	}
	opens := time.Date(2025, 3, 17, 8, 0, 0, 0, time.UTC)
	if !s.Opens.Equal(opens) {
		t.Fatalf("status opens %v, want %v", s.Opens, opens)
	}
	f.clock.Advance(opens.Sub(f.clock.Now()) - time.Second) // not yet
	f.nudge("prod", reconcile.TriggerWebhook)               // head unchanged: no pass
	wantTriggers(t, f, "start:noop")
	f.advance("prod", time.Second)
	wantTriggers(t, f, "start:noop", "window:applied")
	s = f.status("prod")
	if s.Held != "" || s.Pending != "" || s.Running != commitC {
		t.Fatalf("after the window opened: held %q pending %s running %s", s.Held, s.Pending, s.Running)
	}
	if kinds := f.eventKinds(); !slices.Equal(kinds, []reconcile.EventKind{reconcile.EventHeld, reconcile.EventDeploy}) {
		t.Fatalf("events %q", kinds)
	}
}

// TestAgentStatusOfAHoldSurvivesARestart: the hold is read from the
// history, so an agent started again says it before its first pass.
func TestAgentStatusOfAHoldSurvivesARestart(t *testing.T) {
	f := newRollbackFixture(t)
	h := &reconcile.Hold{Kind: reconcile.HoldPaused, Commit: commitC, Reason: "paused in its pin file environments/prod.toml"}
	for _, rec := range []reconcile.PassRecord{
		{ID: "1", Environment: "prod", Result: reconcile.ResultPaused, Commit: commitC, Held: h},
		{ID: "2", Environment: "prod", Result: reconcile.ResultFailed, Class: reconcile.ClassGit},
	} {
		if err := f.runner.State.AppendHistory("prod", rec); err != nil {
			t.Fatal(err)
		}
	}
	a := f.newAgent()
	s := a.Status()[0]
	if s.Held != h.Reason || s.Pending != commitC || s.HeldBy != reconcile.HoldPaused {
		t.Fatalf("restored status: held %q pending %q by %q", s.Held, s.Pending, s.HeldBy)
	}
}

// TestAgentSetWindowsHoldItsEnvironments: a set's windows are every
// member's; with them closed a new review environment is planned and
// held (fake.NewClock is a Friday morning, the window opens on Monday),
// and the fixed environment, which has none, deploys as before.
func TestAgentSetWindowsHoldItsEnvironments(t *testing.T) {
	f, pins := newSetFixture(t, 2, 0)
	ws, err := window.ParseAll([]string{"Mon 09:00-16:00 Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Sets[0].Windows = ws
	pins.set(pin("pr-1"))
	f.start()
	fake.Eventually(t, "review-pr-1 to finish a pass", func() bool {
		s, ok := f.statusOf("review-pr-1")
		return ok && s.LastPass != nil
	})
	fake.Eventually(t, "prod to deploy", func() bool { return f.deployed("prod") })
	s, _ := f.statusOf("review-pr-1")
	if s.HeldBy != reconcile.HoldWindow || s.Held != "waiting for the deploy window (opens Mon 09:00 CET)" {
		t.Fatalf("review-pr-1 status: held %q by %q", s.Held, s.HeldBy)
	}
	if p, _ := f.statusOf("prod"); p.Held != "" {
		t.Fatalf("prod has no windows, yet: held %q", p.Held)
	}
}
