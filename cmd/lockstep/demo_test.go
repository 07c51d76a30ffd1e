package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestMain lets this test binary stand in for lockstep inside the demo's
// containers: the demo packs the running executable, which under `go test`
// is this binary, and starts it as `<bin> demo-serve`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "demo-serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// demoEnv isolates a demo run: its files go under tmp, and any git it runs
// reads no host config.
func demoEnv(t *testing.T, tmp string) func(string) string {
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	return func(k string) string {
		if k == "TMPDIR" {
			return tmp
		}
		return os.Getenv(k)
	}
}

var demoProjectRE = regexp.MustCompile(`named (lockstep-demo-[0-9a-f]{8})`)

// runDemo runs `lockstep demo args...` in-process and returns its exit
// code, stdout and project name. Whatever the outcome, a cleanup removes
// anything left with the project's name, so a failing run cannot leak.
func runDemo(t *testing.T, cli *client.Client, tmp string, args ...string) (int, string, string) {
	t.Helper()
	getenv := demoEnv(t, tmp)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	code := Run(ctx, append([]string{"demo"}, args...), &stdout, &stderr, getenv)
	out := stdout.String()
	t.Logf("lockstep demo %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, stderr.String())
	m := demoProjectRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the demo did not say its project name")
	}
	project := m[1]
	t.Cleanup(func() {
		s := &demoStory{out: io.Discard, docker: cli, project: project, dir: filepath.Join(tmp, "unused")}
		for _, spec := range []string{"web:v1", "web:v2", "worker:v1"} {
			s.images = append(s.images, project+"/"+spec)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, err := range s.cleanup(ctx) {
			t.Errorf("safety-net cleanup of %s: %v", project, err)
		}
	})
	return code, out, project
}

// leftovers lists what the engine still holds of project: containers,
// networks and volumes by label, images by name or demo label.
func leftovers(t *testing.T, cli *client.Client, project string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	left, err := harness.ProjectLeftovers(ctx, cli, project)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []client.Filters{
		make(client.Filters).Add("reference", project+"/*"),
		make(client.Filters).Add("label", demo.LabelDemo+"="+project),
	} {
		imgs, err := cli.ImageList(ctx, client.ImageListOptions{All: true, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs.Items {
			left = append(left, "image "+img.ID+" "+strings.Join(img.RepoTags, ","))
		}
	}
	return left
}

// TestDemo runs the whole demo against the real engine, as a user would,
// and checks the story it tells and that it leaves nothing behind.
func TestDemo(t *testing.T) {
	cli := harness.RequireDocker(t)
	tmp := t.TempDir()
	code, out, project := runDemo(t, cli, tmp)
	if code != exitOK {
		t.Fatalf("lockstep demo exited %d, want 0", code)
	}

	// The web service answered v1, then v2, then v1 again.
	var versions []string
	for _, m := range regexp.MustCompile(`GET http://127\.0\.0\.1:\d+/ -> lockstep demo, version (\S+)`).FindAllStringSubmatch(out, -1) {
		versions = append(versions, m[1])
	}
	if strings.Join(versions, " ") != "v1 v2 v1" {
		t.Errorf("web answered versions %v, want v1 v2 v1", versions)
	}

	// Each step's plan: the release and the rollback recreate web only,
	// and the last pass changes nothing.
	steps := regexp.MustCompile(`(?m)^\d+\. `).Split(out, -1)
	if len(steps) != 8 { // the preamble and 7 steps
		t.Fatalf("got %d steps, want 7:\n%s", len(steps)-1, out)
	}
	deploy, release, rollback, noop, cleanup := steps[3], steps[4], steps[5], steps[6], steps[7]
	for _, want := range []string{"+ create web (" + project + "-web-1)", "+ create worker (" + project + "-worker-1)", "+ network " + project + "_default"} {
		if !strings.Contains(deploy, want) {
			t.Errorf("deploy step lacks %q:\n%s", want, deploy)
		}
	}
	for name, step := range map[string]string{"release": release, "rollback": rollback} {
		if !strings.Contains(step, "~ recreate web ("+project+"-web-1)") || !strings.Contains(step, "1 change: 1 to recreate") {
			t.Errorf("%s step does not recreate exactly web:\n%s", name, step)
		}
		if strings.Contains(step, "worker (") {
			t.Errorf("%s step touches the worker:\n%s", name, step)
		}
	}
	if !strings.Contains(release, "image "+project+"/web:v1 -> "+project+"/web:v2") {
		t.Errorf("release step does not give the image change as the reason:\n%s", release)
	}
	if !strings.Contains(noop, "no changes") {
		t.Errorf("the last pass is not a no-op:\n%s", noop)
	}
	if !strings.Contains(cleanup, "removed 2 containers, 1 network, 3 image tags") {
		t.Errorf("cleanup step:\n%s", cleanup)
	}
	if !strings.Contains(out, "Took ") {
		t.Error("no timings at the end")
	}

	if left := leftovers(t, cli, project); len(left) > 0 {
		t.Errorf("the demo left: %s", strings.Join(left, "; "))
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the demo left %s in its temp dir", e.Name())
	}
}

// TestDemoKeep checks that --keep leaves the stack answering and says how
// to remove it; the test's own cleanup then removes it.
func TestDemoKeep(t *testing.T) {
	cli := harness.RequireDocker(t)
	tmp := t.TempDir()
	code, out, project := runDemo(t, cli, tmp, "--keep")
	if code != exitOK {
		t.Fatalf("lockstep demo --keep exited %d, want 0", code)
	}
	if strings.Contains(out, "Clean up") {
		t.Errorf("--keep cleaned up:\n%s", out)
	}
	if !strings.Contains(out, "docker compose -p "+project+" down") {
		t.Errorf("--keep does not say how to remove the stack:\n%s", out)
	}
	m := regexp.MustCompile(`curl (http://127\.0\.0\.1:\d+/)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--keep does not say where web answers:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	line, err := getFirstLine(ctx, &http.Client{Timeout: 10 * time.Second}, m[1])
	if err != nil || line != demo.Greeting("v1") {
		t.Errorf("web after --keep: %q, %v; want %q", line, err, demo.Greeting("v1"))
	}
	left := leftovers(t, cli, project)
	if len(left) == 0 {
		t.Error("--keep left nothing running")
	}
	// The config the demo printed works with the ordinary commands.
	cfg := regexp.MustCompile(`lockstep plan --config (\S+)`).FindStringSubmatch(out)
	if cfg == nil {
		t.Fatalf("--keep does not name its config:\n%s", out)
	}
	var stdout, stderr bytes.Buffer
	if code := Run(ctx, []string{"plan", "--config", cfg[1], "--exit-code"}, &stdout, &stderr, demoEnv(t, tmp)); code != exitOK {
		t.Errorf("lockstep plan on the kept demo exited %d (want 0: nothing pending)\n%s%s", code, stdout.String(), stderr.String())
	}
	// The demo's directory holds read-only release dirs; t.TempDir's own
	// removal would fail on them.
	t.Cleanup(func() {
		if err := removeTree(tmp); err != nil {
			t.Errorf("remove %s: %v", tmp, err)
		}
	})
}

func TestDemoNeedsGit(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"demo"}, &stdout, &stderr, func(string) string { return "" })
	if code != exitFailure || !strings.Contains(stderr.String(), "demo needs git on this host") {
		t.Errorf("demo without git: exit %d, stderr %q; want 1 and a message saying git is needed", code, stderr.String())
	}
}

func TestDemoCommandLine(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"demo", "extra"}, exitUsage, "", `demo takes no arguments, got "extra"`},
		{[]string{"demo", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"demo", "--log-level", "loud"}, exitUsage, "", `--log-level "loud"`},
		{[]string{"demo", "--help"}, exitOK, "Usage: lockstep demo [--keep]", ""},
		{[]string{"help", "demo"}, exitOK, "Usage: lockstep demo [--keep]", ""},
		{[]string{"help"}, exitOK, "the whole story offline", ""},
		{[]string{"demo-serve", "extra"}, exitUsage, "", `demo-serve takes no arguments`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tt.args, &stdout, &stderr, func(string) string { return "" })
			if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}
