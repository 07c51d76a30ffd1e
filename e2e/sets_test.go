package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// statusAll is `lockstep status --json`: every entry, by name (a set's
// pin file that does not run is under its pin file's path).
func (f *fixture) statusAll() (map[string]reconcile.EnvStatus, bool) {
	f.t.Helper()
	r := f.lockstep("status", "--json")
	if r.code != 0 {
		return nil, false
	}
	var out struct {
		Environments []reconcile.EnvStatus `json:"environments"`
	}
	if json.Unmarshal([]byte(r.stdout), &out) != nil {
		return nil, false
	}
	m := map[string]reconcile.EnvStatus{}
	for _, e := range out.Environments {
		key := e.Name
		if e.NotDeployed != "" {
			key = e.PinFile
		}
		m[key] = e
	}
	return m, true
}

func runningAt(st map[string]reconcile.EnvStatus, env, commit string) bool {
	e, ok := st[env]
	return ok && e.Running == commit && e.LastPass != nil && e.LastPass.Result != reconcile.ResultFailed
}

// TestAgentReviewEnvironments: a set with a glob beside a fixed
// environment. Two pin files bring up two review environments side by
// side on the real engine; deleting one tears it down (containers,
// network and, as the set says remove_volumes, its named volume), with
// the agent killed -9 in the middle of that teardown and restarted, and
// leaves the other and the fixed environment untouched, volume included.
func TestAgentReviewEnvironments(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	set := harness.UniqueProject(t, "rv")
	pr1, pr2 := set+"-pr-1", set+"-pr-2"
	for _, p := range []string{pr1, pr2} {
		harness.CleanupProject(t, cli, p, "")
	}
	f.writeConfig(fmt.Sprintf(`
[[environment_set]]
name = %q
pins = "environments/review/*.toml"
max = 2
remove_volumes = true
url = "https://${LOCKSTEP_SLUG}.review.example.com"
`, set))
	s := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	rel := f.git.Commit(t, "release", map[string]string{"compose.yaml": s.yaml()})
	f.pin(rel)
	f.git.Commit(t, "open two review environments", map[string]string{
		"environments/review/pr-1.toml": fmt.Sprintf("commit = %q\n", rel),
		"environments/review/PR 2.toml": fmt.Sprintf("commit = %q\n", rel),
	})

	a := f.startAgent("--log-level", "debug")
	var st map[string]reconcile.EnvStatus
	eventually(t, 2*time.Minute, "the fixed and both review environments to run", func() bool {
		var ok bool
		st, ok = f.statusAll()
		return ok && runningAt(st, "e2e", rel) && runningAt(st, pr1, rel) && runningAt(st, pr2, rel)
	})
	if e := st[pr2]; e.Set != set || e.URL != "https://pr-2.review.example.com" || e.PinFile != "environments/review/PR 2.toml" || e.Project != pr2 {
		t.Errorf("status of %s: %+v", pr2, e)
	}
	fixedBefore, pr2Before := world(t, cli, f.project), world(t, cli, pr2)
	if len(fixedBefore) != 2 || len(pr2Before) != 2 || len(world(t, cli, pr1)) != 2 {
		t.Fatalf("containers: fixed %v, %s %v", ids(fixedBefore), pr2, ids(pr2Before))
	}
	for _, v := range []string{f.project + "_dbdata", pr1 + "_dbdata", pr2 + "_dbdata"} {
		if !volumeExists(t, cli, v) {
			t.Fatalf("volume %s missing", v)
		}
	}

	// CI closes pr-1: the agent starts its teardown and is killed -9 at
	// its first container removal.
	mark := a.lineCount()
	f.git.Remove(t, "close pr-1", "environments/review/pr-1.toml")
	a.waitLine(mark, time.Minute, "the teardown's first container removal", func(m map[string]any) bool {
		return m["message"] == "engine" && m["env"] == pr1 && m["engine_call"] == "remove"
	})
	a.signal(syscall.SIGKILL)
	a.wait(30 * time.Second)

	a = f.startAgent()
	eventually(t, 2*time.Minute, pr1+" to be torn down after the restart", func() bool {
		st, ok := f.statusAll()
		_, running := st[pr1]
		return ok && !running && runningAt(st, pr2, rel) && runningAt(st, "e2e", rel)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, err := harness.ProjectLeftovers(ctx, cli, pr1)
	if err != nil || len(left) != 0 {
		t.Fatalf("%s left after its teardown: %v %v", pr1, left, err)
	}
	sameWorld(t, fixedBefore, world(t, cli, f.project))
	sameWorld(t, pr2Before, world(t, cli, pr2))
	for _, v := range []string{f.project + "_dbdata", pr2 + "_dbdata"} {
		if !volumeExists(t, cli, v) {
			t.Errorf("volume %s was removed with %s", v, pr1)
		}
	}

	r := f.lockstep("history", pr1, "--json")
	var passes []reconcile.PassRecord
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &passes) != nil || len(passes) == 0 {
		t.Fatalf("history of %s: %s", pr1, r)
	}
	last := passes[len(passes)-1]
	if last.Result != reconcile.ResultRemoved || last.Trigger != reconcile.TriggerStart || !strings.Contains(last.Plan, "to remove") {
		t.Errorf("the teardown after the restart: %+v", last)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(60 * time.Second); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
}
