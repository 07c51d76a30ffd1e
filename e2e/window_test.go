package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// windowAround is a deploy window that is closed now and opens at the
// first minute boundary at least lead from now (windows have minute
// granularity), in Europe/Berlin so that the binary's own time zone data
// is used; and the instant it opens.
func windowAround(t *testing.T, lead time.Duration) (string, time.Time) {
	t.Helper()
	berlin, err := time.LoadLocation("Europe/Berlin")
	must(t, err)
	opens := time.Now().Add(lead).Truncate(time.Minute).Add(time.Minute).In(berlin)
	closes := opens.Add(10 * time.Minute)
	return fmt.Sprintf("daily %s-%s Europe/Berlin", opens.Format("15:04"), closes.Format("15:04")), opens
}

// TestDeployWindowHoldsRepairsThenApplies: a new release pinned with a
// deploy window that is closed is held by the agent: `lockstep plan` shows
// it pending with the reason, the status and a notification say so (once),
// a container removed by hand is put back (as the running release has it)
// while the release waits, and the agent applies the release when the
// window opens, on its own timer (the drift interval is an hour, the
// branch does not move).
func TestDeployWindowHoldsRepairsThenApplies(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	n := newNotifications(t)
	urlFile := filepath.Join(t.TempDir(), "notify-url")
	must(t, os.WriteFile(urlFile, []byte(n.url+"\n"), 0o600))
	f.agentExtra = fmt.Sprintf(`
[health]
timeout = "20s"
bake = "2s"

[[notify]]
kind = "webhook"
url_file = %q
events = ["held", "deploy"]
`, urlFile)
	f.writeConfig("")
	cfg, err := os.ReadFile(f.config)
	must(t, err)
	must(t, os.WriteFile(f.config, []byte(strings.Replace(string(cfg), `drift_interval = "10s"`, `drift_interval = "1h"`, 1)), 0o644))

	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	shaA := f.release("stack A", map[string]string{"compose.yaml": A.yaml()})
	f.apply()
	checkRuns(t, world(t, cli, f.project), shaA, "after release A")

	agent := f.startAgent("--log-level", "debug")
	from := agent.waitLine(0, time.Minute, "the first pass", passFinished("start", "noop"))

	// Release B, pinned with a window that opens in 50 s to 110 s.
	win, opens := windowAround(t, 50*time.Second)
	B := stack{WebImage: f.images["web:b"], DBImage: f.images["db:a"]}
	shaB := f.git.Commit(t, "stack B", map[string]string{"compose.yaml": B.yaml()})
	f.git.Commit(t, "pin e2e to "+shaB[:12]+" in its window", map[string]string{
		"environments/e2e.toml": fmt.Sprintf("commit = %q\nwindows = [%q]\n", shaB, win),
	})
	reason := "waiting for the deploy window (opens " + opens.Format("Mon 15:04 MST") + ")"
	from = agent.waitLine(from, time.Minute, "the held pass of the new head", func(m map[string]any) bool {
		return passFinished("poll", "noop")(m) && m["pending"] == shaB && m["held"] == reason
	})
	if st := f.status(); st.Held != reason || st.Pending != shaB || st.HeldBy != reconcile.HoldWindow || st.Running != shaA {
		t.Fatalf("status while held: held %q pending %s by %q running %s", st.Held, short12(st.Pending), st.HeldBy, short12(st.Running))
	}

	// The plan shows the release pending, with the reason, and plans what runs.
	r := f.lockstep("plan", "--json", "e2e")
	var plans []struct {
		Commit string          `json:"commit"`
		Held   *reconcile.Hold `json:"held"`
		Plan   *reconcile.Plan `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &plans); err != nil || r.code != 0 || len(plans) != 1 {
		t.Fatalf("plan --json: %v\n%s", err, r)
	}
	if p := plans[0]; p.Held == nil || p.Held.Commit != shaB || p.Held.Reason != reason || p.Commit != shaA || p.Plan == nil || !p.Plan.Empty() {
		t.Fatalf("plan while held: %s", r.stdout)
	}
	if r := f.lockstep("plan", "e2e"); r.code != 0 || !strings.Contains(r.stdout, "pending: release "+shaB[:12]+" "+reason) {
		t.Fatalf("plan text while held lacks the pending line:\n%s", r)
	}

	// A container removed by hand is put back while the release waits:
	// the running release's web, not the pending one's.
	before := world(t, cli, f.project)
	removeByHand(t, before["web"].ID)
	if r := f.lockstep("sync", "e2e"); r.code != 0 {
		t.Fatalf("sync: %s", r)
	}
	from = agent.waitLine(from, 2*time.Minute, "the repair while held", func(m map[string]any) bool {
		return passFinished("sync", "applied")(m) && m["commit"] == shaA && m["pending"] == shaB
	})
	repaired := world(t, cli, f.project)
	checkRuns(t, repaired, shaA, "after the repair while held")
	if repaired["web"].ID == before["web"].ID || repaired["db"].ID != before["db"].ID {
		t.Fatalf("repair: web recreated %v, db kept %v", repaired["web"].ID != before["web"].ID, repaired["db"].ID == before["db"].ID)
	}
	if time.Until(opens) < 5*time.Second {
		t.Fatalf("the held steps took until %s, too close to the window opening at %s for the test to tell the timer's pass", time.Now().Format(time.TimeOnly), opens.Format(time.TimeOnly))
	}

	// The window opens: the agent's own timer runs the pass that applies B.
	agent.waitLine(from, time.Until(opens)+2*time.Minute, "the pass at the window's opening", func(m map[string]any) bool {
		return passFinished("window", "applied")(m) && m["commit"] == shaB
	})
	if now := time.Now(); now.Before(opens) {
		t.Fatalf("release applied at %s, before its window opened at %s", now.Format(time.TimeOnly), opens.Format(time.TimeOnly))
	}
	// Only web changes in B: db keeps its container (and the label of
	// the release that made it).
	after := world(t, cli, f.project)
	if w := after["web"]; w.Labels["lockstep.commit"] != shaB || w.State != "running" || after["db"].ID != repaired["db"].ID || after["db"].State != "running" {
		t.Fatalf("after the window opened: %s (db kept: %v)", commits(after), after["db"].ID == repaired["db"].ID)
	}
	if st := f.status(); st.Held != "" || st.Pending != "" || st.Running != shaB {
		t.Fatalf("status after the window opened: held %q pending %q running %s", st.Held, st.Pending, short12(st.Running))
	}
	eventually(t, 30*time.Second, "the deploy notification of B", func() bool { return n.find("deploy", shaB) != nil })
	n.mu.Lock()
	held := 0
	for _, ev := range n.events {
		if ev["event"] == "held" {
			held++
			if ev["commit"] != shaB || ev["reason"] != reason || ev["previous"] != shaA {
				t.Errorf("held notification: %v", ev)
			}
		}
	}
	n.mu.Unlock()
	if held != 1 {
		t.Errorf("%d held notifications, want one for the held release (the repair pass held it for the same reason)", held)
	}
	var sawHeld bool
	for _, rec := range f.history() {
		sawHeld = sawHeld || (rec.Held != nil && rec.Held.Commit == shaB)
	}
	if !sawHeld {
		t.Error("the history records no held pass")
	}
}

// passFinished matches the agent's "pass finished" line of a pass with
// trigger and result.
func passFinished(trigger, result string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["message"] == "pass finished" && m["trigger"] == trigger && m["result"] == result
	}
}
