package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/composecli"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// composeCLI returns the argv of the Docker Compose CLI the takeover tests
// run for real (composecli.Version, installed by .ci/compose.sh).
func composeCLI(t *testing.T) []string {
	t.Helper()
	return composecli.Require(t, nil, "this test deploys with the real Compose first")
}

// composeUp runs `docker compose -p project up -d --wait` in dir, the way a
// `git pull && docker compose up -d` cron job deploys.
func composeUp(t *testing.T, argv []string, dir, project string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:len(argv):len(argv)], "-p", project, "up", "-d", "--wait")...)
	cmd.Dir = dir
	// Only what finds the engine and the plugin: Compose interpolates from
	// its environment, and the cron job it stands for has none of the
	// test's.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range []string{"DOCKER_HOST", "DOCKER_CONFIG"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, out.String())
	}
}

// TestAdoptComposeProject: a project Docker Compose deployed from a
// directory on the host (the compose files and a config file beside them)
// is moved to lockstep under the same project name. The first plan shows
// the takeover before anything happens: web and db, equal, are adopted;
// worker, which binds ./worker/config.txt from the host directory, is
// recreated because that bind moves into the immutable release, and says
// so. Apply then restarts nothing else (same container IDs, same
// StartedAt), records the adoption, and the next plan is empty.
func TestAdoptComposeProject(t *testing.T) {
	compose := composeCLI(t)
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	files := map[string]string{
		"compose.yaml": stack{
			WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true,
		}.yaml(),
		"worker/config.txt": "mode=adopted\n",
	}
	// The host directory Compose ran from, as a cron job left it.
	hostDir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(hostDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	composeUp(t, compose, hostDir, f.project)
	before := world(t, cli, f.project)
	if len(before) != 3 {
		t.Fatalf("compose deployed %v", ids(before))
	}

	// The same files, now in git, pinned.
	f.release("the compose directory, moved to git", files)
	p := f.plan()
	var got []string
	for _, a := range p.Actions {
		if a.Kind == reconcile.ActPull {
			continue
		}
		target := a.Service
		if target == "" {
			target = a.Network + a.Volume
		}
		got = append(got, string(a.Kind)+" "+target+": "+strings.Join(a.Reasons, "; "))
		if a.Drift {
			t.Errorf("a takeover is not drift: %+v", a)
		}
		if (a.Kind == reconcile.ActAdopt || a.Kind == reconcile.ActRecreate) && !a.Adopt {
			t.Errorf("%s %s is not marked as an adoption", a.Kind, a.Service)
		}
	}
	bindFrom := filepath.Join(hostDir, "worker", "config.txt")
	want := []string{
		"adopt " + f.project + "_backend: adopt: created by Docker Compose with the same configuration, kept",
		"adopt " + f.project + "_dbdata: adopt: created by Docker Compose, kept (its data is never touched)",
		"adopt " + f.project + "_workerdata: adopt: created by Docker Compose, kept (its data is never touched)",
		"adopt db: adopt: configuration equal, kept",
		"adopt web: adopt: configuration equal, kept",
		"recreate worker: adopt: bind source moves from " + bindFrom + " to the immutable release",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("first plan of a Compose project:\n got %q\nwant %q\n(warnings %q)", got, want, p.Warnings)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("the takeover plan warns: %q", p.Warnings)
	}
	text := f.lockstep("plan", "e2e").stdout
	for _, line := range []string{
		"  = adopt web (" + f.project + "-web-1)\n      adopt: configuration equal, kept\n",
		"  ~ recreate worker (" + f.project + "-worker-1) [stop-first, adopt]\n      adopt: bind source moves from " + bindFrom + " to the immutable release\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("plan text lacks %q:\n%s", line, text)
		}
	}
	if after := world(t, cli, f.project); !slices.Equal(sortedKeys(ids(after)), sortedKeys(ids(before))) || recreated(before, after) != nil {
		t.Fatalf("lockstep plan changed something: %v -> %v", ids(before), ids(after))
	}

	out := f.apply()
	if !strings.Contains(out.stdout, "adopted") {
		t.Errorf("apply does not say it adopted:\n%s", out)
	}
	after := world(t, cli, f.project)
	if r := recreated(before, after); !slices.Equal(r, []string{"worker"}) {
		t.Fatalf("recreated %v, want only worker", r)
	}
	sameWorld(t, map[string]box{"web": before["web"], "db": before["db"]}, map[string]box{"web": after["web"], "db": after["db"]})
	if src := mountSource(t, after["worker"], "/etc/worker/config.txt"); !strings.HasPrefix(src, f.stateDir) {
		t.Errorf("worker still binds %s, not the release", src)
	}
	if p := f.plan(); !p.Empty() || len(p.Warnings) != 0 {
		t.Fatalf("the plan after the takeover: %+v, warnings %q", p.Actions, p.Warnings)
	}
	// The CLI's history asks the agent; no agent runs here, so read the
	// record the pass wrote.
	history := readFile(t, filepath.Join(f.stateDir, "environments", "e2e", "history.json"))
	if !strings.Contains(history, `"plan": "5 to adopt, 1 to recreate"`) || !strings.Contains(history, `"adopted": 5`) {
		t.Errorf("history does not say the pass adopted:\n%s", history)
	}
}
