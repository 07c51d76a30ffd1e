package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// startLockstep starts the real binary with args as lockstep does (same
// environment), without waiting for it; wait returns its result.
func (f *fixture) startLockstep(ctx context.Context, args ...string) (wait func() result) {
	f.t.Helper()
	cmd := exec.CommandContext(ctx, lockstepBin, append([]string{"--config", f.config}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.t.TempDir(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start lockstep %v: %v", args, err)
	}
	return func() result {
		err := cmd.Wait()
		res := result{stdout: out.String(), stderr: errb.String()}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			res.code = ee.ExitCode()
		case err != nil:
			res.code, res.stderr = -1, res.stderr+"\n(wait: "+err.Error()+")"
		}
		return res
	}
}

// applyJSON is what `lockstep apply --json` printed for the environment.
func applyJSON(t *testing.T, r result) (plan *reconcile.Plan, applied *reconcile.ApplyResult) {
	t.Helper()
	var out []struct {
		Plan    *reconcile.Plan        `json:"plan"`
		Applied *reconcile.ApplyResult `json:"applied"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("apply --json: cannot read its output: %v\n%s", err, r)
	}
	return out[0].Plan, out[0].Applied
}

// TestTwoAppliesAtOnce starts two `lockstep apply` processes at the same
// instant on one config and state dir, on a fresh host: the stack's db
// must pass its healthcheck before web starts, and the gate bakes, so the
// first apply takes seconds. One applies; the other says it waits for the
// first (by pid and command), then finds nothing left to do. Both exit 0,
// no engine error ("removal of container ... already in progress"), one
// container per service, and the next plan is empty.
func TestTwoAppliesAtOnce(t *testing.T) {
	f := cliHealthFixture(t)
	cli := harness.RequireDocker(t)
	sha := f.release("stack A", map[string]string{"compose.yaml": stackA(f).yaml(), "worker/config.txt": "threads = 1\n"})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitA := f.startLockstep(ctx, "apply", "--json", "e2e")
	waitB := f.startLockstep(ctx, "apply", "--json", "e2e")
	rs := []result{waitA(), waitB()}

	applier, waiter := -1, -1
	for i, r := range rs {
		if r.code != 0 {
			t.Fatalf("apply %d: want exit 0 (the second waits, then applies what is left): %s", i, r)
		}
		for _, bad := range []string{"already in progress", "Conflict", "is already in use"} {
			if strings.Contains(r.stderr, bad) {
				t.Errorf("apply %d hit the engine's race (%q): %s", i, bad, r)
			}
		}
		plan, applied := applyJSON(t, r)
		switch {
		case applied != nil && applied.Created > 0:
			applier = i
		case plan != nil && plan.Empty() && applied == nil:
			waiter = i
		}
	}
	if applier < 0 || waiter < 0 {
		t.Fatalf("want one apply that created the stack and one that found nothing to do:\n%s\n%s", rs[0], rs[1])
	}
	// It said what it waited for, naming the other process.
	msg := "waiting for the apply of e2e by pid "
	if !strings.Contains(rs[waiter].stderr, msg) || !strings.Contains(rs[waiter].stderr, "(lockstep --config ") {
		t.Errorf("the apply that waited did not say for whom (%q, the other's command line): %s", msg, rs[waiter])
	}
	if strings.Contains(rs[applier].stderr, msg) {
		t.Errorf("the apply that ran first says it waited: %s", rs[applier])
	}

	w := world(t, cli, f.project) // fails on two containers of one service
	checkRuns(t, w, sha, "after two applies at once")
	if len(w) != 3 {
		t.Errorf("want web, worker and db, got %s", commits(w))
	}
	if p := f.plan(); !p.Empty() {
		t.Errorf("after two applies at once the plan is not empty: %+v", p.Actions)
	}
	f.checkStateRecord("history.json", map[string]string{"trigger": "cli", "result": "applied"})
	f.checkStateRecord("history.json", map[string]string{"trigger": "cli", "result": "noop"})
	if _, err := os.Stat(filepath.Join(f.stateDir, "environments", "e2e", "apply.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the apply lock outlived both applies: %v", err)
	}
}

// TestAgentAndCLIApplyAtOnce starts the agent (whose first pass deploys a
// fresh host) and a `lockstep apply` at the same instant: whichever takes
// the environment's lock first applies, the other says it waits for it,
// then finds nothing to do. No duplicate container, the next plan is
// empty, and the agent's status is clean.
func TestAgentAndCLIApplyAtOnce(t *testing.T) {
	f := cliHealthFixture(t)
	cli := harness.RequireDocker(t)
	sha := f.release("stack A", map[string]string{"compose.yaml": stackA(f).yaml(), "worker/config.txt": "threads = 1\n"})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a := f.startAgent("--log-level", "debug") // a no-op pass finishes at debug
	waitCLI := f.startLockstep(ctx, "apply", "--json", "e2e")
	r := waitCLI()
	if r.code != 0 {
		t.Fatalf("lockstep apply beside the agent: want exit 0: %s", r)
	}
	var agentPass map[string]any
	a.waitLine(0, 3*time.Minute, "the agent's first pass", func(m map[string]any) bool {
		if m["message"] == "pass finished" && m["trigger"] == "start" {
			agentPass = m
			return true
		}
		return false
	})
	_, applied := applyJSON(t, r)
	cliApplied := applied != nil && applied.Created > 0
	agentApplied := agentPass["result"] == string(reconcile.ResultApplied)
	const waiting = "waiting for the apply of e2e by pid "
	cliWaited, agentWaited := strings.Contains(r.stderr, waiting), strings.Contains(a.log(), waiting)
	if cliApplied == agentApplied || cliWaited == agentWaited || cliApplied == cliWaited {
		t.Fatalf("want one of them to apply and the other to wait for it: cli applied %v waited %v, agent applied %v waited %v\n%s\n--- agent\n%s",
			cliApplied, cliWaited, agentApplied, agentWaited, r, a.log())
	}
	for _, bad := range []string{"already in progress", "Conflict"} {
		if strings.Contains(r.stderr, bad) || strings.Contains(a.log(), bad) {
			t.Errorf("the engine's race (%q):\n%s\n--- agent\n%s", bad, r, a.log())
		}
	}
	w := world(t, cli, f.project)
	checkRuns(t, w, sha, "after the agent and the CLI applied at once")
	if p := f.plan(); !p.Empty() {
		t.Errorf("the plan is not empty: %+v", p.Actions)
	}
	if s := f.status(); s.LastError != "" || s.Running != sha {
		t.Errorf("agent status: running %s, error %q", short12(s.Running), s.LastError)
	}
}
