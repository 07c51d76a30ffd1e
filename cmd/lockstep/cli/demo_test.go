package cli

import (
	"bytes"
	"context"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
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
	safetyNet(t, cli, tmp, project)
	return code, out, project
}

// safetyNet removes, at the end of the test, anything left with project's
// name, so a failing run cannot leak.
func safetyNet(t *testing.T, cli *client.Client, tmp, project string) {
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

	// Each step: the agent's pass (from its history), what changed on the
	// engine (read back by label), the agent's status. The release and the
	// rollback recreate web only; the sync pass changes nothing.
	steps := regexp.MustCompile(`(?m)^\d+\. `).Split(out, -1)
	if len(steps) != 8 { // the preamble and 7 steps
		t.Fatalf("got %d steps, want 7:\n%s", len(steps)-1, out)
	}
	deploy, release, rollback, sync, cleanup := steps[3], steps[4], steps[5], steps[6], steps[7]
	web, worker := project+"-web-1", project+"-worker-1"
	img := func(spec string) string { return project + "/" + spec }
	for _, want := range []string{
		"(start) at ", "applied: 3 to create",
		"+ network " + project + "_default created",
		"+ " + web + " created (image " + img("web:v1") + ")",
		"+ " + worker + " created (image " + img("worker:v1") + ")",
	} {
		if !strings.Contains(deploy, want) {
			t.Errorf("deploy step lacks %q:\n%s", want, deploy)
		}
	}
	for name, step := range map[string]struct{ text, from, to string }{
		"release":  {release, "web:v1", "web:v2"},
		"rollback": {rollback, "web:v2", "web:v1"},
	} {
		for _, want := range []string{
			"(poll) at ", "applied: 1 to recreate",
			"~ " + web + " recreated (image " + img(step.from) + " -> " + img(step.to) + ")",
			"= " + worker + " untouched (container ",
		} {
			if !strings.Contains(step.text, want) {
				t.Errorf("%s step lacks %q:\n%s", name, want, step.text)
			}
		}
		if n := strings.Count(step.text, "applied:"); n != 1 {
			t.Errorf("%s step has %d applied passes, want 1:\n%s", name, n, step.text)
		}
	}
	// The worker is the very same container from the first deploy to the
	// end.
	ids := regexp.MustCompile(`= `+regexp.QuoteMeta(worker)+` untouched \(container ([0-9a-f]{12})\)`).FindAllStringSubmatch(out, -1)
	if len(ids) != 3 || ids[0][1] != ids[1][1] || ids[1][1] != ids[2][1] {
		t.Errorf("worker containers across release, rollback and sync: %v, want one and the same", ids)
	}
	for _, want := range []string{"(sync) at ", "nothing to do", "= " + web + " untouched", "= " + worker + " untouched"} {
		if !strings.Contains(sync, want) {
			t.Errorf("sync step lacks %q:\n%s", want, sync)
		}
	}
	if strings.Contains(sync, "created") || strings.Contains(sync, "recreated") || strings.Contains(sync, "removed") {
		t.Errorf("the sync pass changed something:\n%s", sync)
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
	if !strings.Contains(out, "lockstep agent --config ") {
		t.Errorf("--keep does not say how to run the agent on the stack:\n%s", out)
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
		if err := gitsource.RemoveReadOnlyTree(tmp); err != nil {
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

// cancelOn is the demo's stdout that cancels the run once the story gets
// to a given text: a Ctrl-C at a known point, without timing.
type cancelOn struct {
	bytes.Buffer
	text   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.text) {
		w.cancel()
	}
	return n, err
}

// TestDemoInterrupted stops the demo (as Ctrl-C does) while the agent is
// due to deploy the release: it exits 1, says it was interrupted, and
// still removes everything it made.
func TestDemoInterrupted(t *testing.T) {
	cli := harness.RequireDocker(t)
	tmp := t.TempDir()
	getenv := demoEnv(t, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	stdout := &cancelOn{text: "the agent's next poll sees the branch move", cancel: cancel}
	var stderr bytes.Buffer
	code := Run(ctx, []string{"demo"}, stdout, &stderr, getenv)
	out := stdout.String()
	t.Logf("lockstep demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	m := demoProjectRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("the demo did not say its project name")
	}
	project := m[1]
	safetyNet(t, cli, tmp, project)
	if code != exitFailure || !strings.Contains(stderr.String(), "demo interrupted") {
		t.Errorf("interrupted demo: exit %d, stderr %q; want 1 and \"demo interrupted\"", code, stderr.String())
	}
	if !strings.Contains(out, "Clean up") {
		t.Errorf("the interrupted demo did not clean up:\n%s", out)
	}
	if left := leftovers(t, cli, project); len(left) > 0 {
		t.Errorf("the interrupted demo left: %s", strings.Join(left, "; "))
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the interrupted demo left %s in its temp dir", e.Name())
	}
}

func TestEngineChanges(t *testing.T) {
	ctr := func(id, image string) demoContainer { return demoContainer{id: id, image: image} }
	tests := []struct {
		name          string
		before, after demoState
		want          []string
	}{
		{
			name:   "first deploy",
			before: demoState{},
			after: demoState{
				containers: map[string]demoContainer{"p-worker-1": ctr("b", "p/worker:v1"), "p-web-1": ctr("a", "p/web:v1")},
				networks:   map[string]string{"p_default": "n1"},
			},
			want: []string{"+ network p_default created", "+ p-web-1 created (image p/web:v1)", "+ p-worker-1 created (image p/worker:v1)"},
		},
		{
			name: "release recreates web only",
			before: demoState{
				containers: map[string]demoContainer{"p-web-1": ctr("a", "p/web:v1"), "p-worker-1": ctr("b0123456789abcdef", "p/worker:v1")},
				networks:   map[string]string{"p_default": "n1"},
			},
			after: demoState{
				containers: map[string]demoContainer{"p-web-1": ctr("c", "p/web:v2"), "p-worker-1": ctr("b0123456789abcdef", "p/worker:v1")},
				networks:   map[string]string{"p_default": "n1"},
			},
			want: []string{"~ p-web-1 recreated (image p/web:v1 -> p/web:v2)", "= p-worker-1 untouched (container b0123456789a)"},
		},
		{
			name:   "same image, new container; orphan and network removed",
			before: demoState{containers: map[string]demoContainer{"p-web-1": ctr("a", "p/web:v1"), "p-old-1": ctr("o", "p/old:v1")}, networks: map[string]string{"p_back": "n2"}},
			after:  demoState{containers: map[string]demoContainer{"p-web-1": ctr("d", "p/web:v1")}},
			want:   []string{"- network p_back removed", "- p-old-1 removed", "~ p-web-1 recreated (same image p/web:v1)"},
		},
		{name: "nothing at all", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := engineChanges(tt.before, tt.after); !slices.Equal(got, tt.want) {
				t.Errorf("engineChanges:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestPassLine(t *testing.T) {
	commit := "4d2e1aa9c0de0123456789abcdef0123456789ab"
	tests := []struct {
		rec  reconcile.PassRecord
		want string
	}{
		{
			reconcile.PassRecord{ID: "p1", Trigger: reconcile.TriggerStart, Commit: commit, Result: reconcile.ResultApplied, Plan: "3 to create", Duration: 1234 * time.Millisecond},
			"agent pass p1 (start) at 4d2e1aa9c0de: applied: 3 to create (1.23s)",
		},
		{
			reconcile.PassRecord{ID: "p2", Trigger: reconcile.TriggerPoll, Commit: commit, Result: reconcile.ResultNoop, Plan: "no changes"},
			"agent pass p2 (poll) at 4d2e1aa9c0de: the branch moved, the pin did not: nothing to do (0s)",
		},
		{
			reconcile.PassRecord{ID: "p3", Trigger: reconcile.TriggerSync, Commit: commit, Result: reconcile.ResultNoop, Plan: "no changes"},
			"agent pass p3 (sync) at 4d2e1aa9c0de: nothing to do (0s)",
		},
		{
			reconcile.PassRecord{ID: "p4", Trigger: reconcile.TriggerPoll, Result: reconcile.ResultFailed, Class: reconcile.ClassGit, Error: "fetch: connection refused"},
			"agent pass p4 (poll) before resolving the pin: failed (git error): fetch: connection refused (0s)",
		},
	}
	for _, tt := range tests {
		if got := passLine(tt.rec); got != tt.want {
			t.Errorf("passLine(%s):\n got %q\nwant %q", tt.rec.ID, got, tt.want)
		}
	}
}

func TestNewPasses(t *testing.T) {
	recs := []reconcile.PassRecord{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	ids := func(rs []reconcile.PassRecord) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct{ last, want string }{
		{"", "a,b,c"}, {"a", "b,c"}, {"c", ""}, {"trimmed-away", "a,b,c"},
	} {
		if got := ids(newPasses(recs, tt.last)); got != tt.want {
			t.Errorf("newPasses after %q = %q, want %q", tt.last, got, tt.want)
		}
	}
}
