package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// engineCallsPerFlip is how many mutating engine calls one flip between the
// two crash-test releases makes: web (pull_policy: always) is pulled,
// created under a temporary name, the old one stopped and renamed aside,
// the new one renamed and started, the old one removed; worker the same
// without the pull.
const engineCallsPerFlip = 13

// TestAgentCrashSafety kills the agent with SIGKILL at many moments of an
// apply, spread over every kind of engine call, restarts it and checks that
// each trial converges with no duplicate or leftover container and no volume
// data lost.
func TestAgentCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash trials take a few minutes; skipped with -short")
	}
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	releases := make([]string, 2)
	for i, tag := range []string{"a", "b"} {
		s := stackA(f)
		s.WebImage = f.images["web:"+tag]
		s.Extra = "    pull_policy: always\n"
		releases[i] = f.git.Commit(t, "release "+tag, map[string]string{
			"compose.yaml":      s.yaml(),
			"worker/config.txt": "threads = " + tag + "\n",
		})
	}
	f.pin(releases[0])
	a := f.startAgent()
	f.converged(releases[0], 90*time.Second)
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
	bootLog := volumeFile(t, cli, f.project+"_dbdata", "boot.log")
	dbID := world(t, cli, f.project)["db"].ID

	const trials = 20
	killedAt := map[string]int{}
	for trial := 0; trial < trials; trial++ {
		target := releases[(trial+1)%2]
		f.pin(target)
		n := 1 + trial%engineCallsPerFlip
		a := f.startAgent("--log-level", "debug")
		var op string
		mark := 0
		for i := 0; i < n; i++ {
			mark = a.waitLine(mark, 90*time.Second, fmt.Sprintf("engine call %d of trial %d", i+1, trial), func(m map[string]any) bool {
				if m["message"] == "engine" {
					op, _ = m["engine_call"].(string)
					return true
				}
				return false
			})
		}
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond) // land inside the call, not only between calls
		a.signal(syscall.SIGKILL)
		a.wait(30 * time.Second)
		killedAt[op]++

		a = f.startAgent()
		f.converged(target, 2*time.Minute)
		w := world(t, cli, f.project) // fails on a duplicate container
		if len(w) != 3 {
			t.Fatalf("trial %d (killed after %s): services %v", trial, op, ids(w))
		}
		for svc, b := range w {
			if b.State != "running" || b.Name != f.project+"-"+svc+"-1" {
				t.Fatalf("trial %d (killed after %s): %s is %s named %s", trial, op, svc, b.State, b.Name)
			}
		}
		if w["db"].ID != dbID {
			t.Fatalf("trial %d: db was recreated although it never changed", trial)
		}
		if got := volumeFile(t, cli, f.project+"_dbdata", "boot.log"); got != bootLog {
			t.Fatalf("trial %d: db volume data changed: %q, was %q", trial, got, bootLog)
		}
		if !volumeExists(t, cli, f.project+"_workerdata") {
			t.Fatalf("trial %d: worker's volume is gone", trial)
		}
		if a.healthz() != http.StatusOK {
			t.Fatalf("trial %d: agent not healthy after convergence", trial)
		}
		a.signal(syscall.SIGTERM)
		if code := a.wait(60 * time.Second); code != 0 {
			t.Fatalf("trial %d: SIGTERM exit code %d", trial, code)
		}
	}
	var spread []string
	for op, n := range killedAt {
		spread = append(spread, fmt.Sprintf("%s=%d", op, n))
	}
	t.Logf("killed after: %s", strings.Join(spread, " "))
	for _, op := range []string{"pull", "create-container", "stop", "remove", "rename", "start"} {
		if killedAt[op] == 0 {
			t.Errorf("no trial killed the agent during %s", op)
		}
	}
}
