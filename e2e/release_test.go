package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/moby/moby/client"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// stack is the test infrastructure repo: web (healthcheck, published port),
// worker (bind-mounts a config file from the repo, a named volume), db
// (named volume, healthcheck), on a user network.
type stack struct {
	WebImage, WorkerImage, DBImage string
	WithWorker                     bool
	Extra                          string // appended to web's service block
	WorkerEnv                      string // extra lines under worker's environment
	Services                       string // extra service blocks, appended after db
}

func (s stack) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `services:
  web:
    image: %s
    ports: ["127.0.0.1::8080"]
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
    depends_on:
      db:
        condition: service_healthy
    networks: [backend]
%s`, s.WebImage, s.Extra)
	if s.WithWorker {
		fmt.Fprintf(&b, `  worker:
    image: %s
    environment:
      CONFIG_FILE: /etc/worker/config.txt
%s    volumes:
      - ./worker/config.txt:/etc/worker/config.txt:ro
      - workerdata:/data
    networks: [backend]
`, s.WorkerImage, s.WorkerEnv)
	}
	fmt.Fprintf(&b, `  db:
    image: %s
    environment:
      DATA_DIR: /data
    volumes:
      - dbdata:/data
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
    networks: [backend]
%snetworks:
  backend: {}
volumes:
  dbdata: {}
`, s.DBImage, s.Services)
	if s.WithWorker {
		b.WriteString("  workerdata: {}\n")
	}
	return b.String()
}

// fixture is one end-to-end world: registry, git server, config, project.
type fixture struct {
	t        *testing.T
	git      *gitserver.Server
	registry string
	project  string
	stateDir string
	config   string
	socket   string // the agent's API socket
	home     string // HOME of the lockstep processes
	images   map[string]string
	// pollInterval and agentExtra tune the agent's config (writeConfig).
	pollInterval string
	agentExtra   string
	agentEnv     []string // extra environment of the agent process
	proxy        *switchProxy
}

func newFixture(t *testing.T) *fixture {
	cli := harness.RequireDocker(t)
	f := &fixture{t: t, registry: harness.StartRegistry(t), images: map[string]string{}}
	f.project = harness.UniqueProject(t, "lse2e")
	harness.CleanupProject(t, cli, f.project, f.registry)
	for _, im := range []struct{ repo, tag string }{{"web", "a"}, {"web", "b"}, {"worker", "a"}, {"db", "a"}} {
		f.images[im.repo+":"+im.tag] = harness.PushTestApp(t, f.registry, im.repo, im.tag,
			harness.ImageOptions{Env: []string{"VERSION=" + im.tag}})
	}
	f.setupGitAndConfig()
	return f
}

// newConfigFixture is a fixture without Docker, registry or images: a git
// server, a state dir and a config, for tests of what lockstep decides
// before it touches the engine (config errors, validate).
func newConfigFixture(t *testing.T) *fixture {
	f := &fixture{t: t, images: map[string]string{}}
	f.project = harness.UniqueProject(t, "lse2e")
	f.setupGitAndConfig()
	return f
}

func (f *fixture) setupGitAndConfig() {
	t := f.t
	f.git = gitserver.Start(t, gitserver.Options{})
	f.stateDir = t.TempDir()
	etc := t.TempDir()
	f.config = filepath.Join(etc, "lockstep.toml")
	f.socket = filepath.Join(etc, "lockstep.sock")
	f.home = t.TempDir()
	f.pollInterval = "1s"
	f.writeConfig("")
}

func (f *fixture) writeConfig(extra string) {
	f.t.Helper()
	cfg := fmt.Sprintf(`state_dir = %q

[repo]
url = %q
branch = "main"
poll_interval = %q
timeout = "10s"

[api]
socket = %q

[agent]
drift_interval = "10s"
shutdown_grace = "30s"
%s
[[environment]]
name = "e2e"
project = %q
%s`, f.stateDir, f.gitURL(), f.pollInterval, f.socket, f.agentExtra, f.project, extra)
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// gitURL is where lockstep reaches the repository: through the fixture's
// switchable proxy when one is set up, else the git server directly.
func (f *fixture) gitURL() string {
	if f.proxy != nil {
		return f.proxy.url(f.git.URL)
	}
	return f.git.URL
}

// release commits the compose files (and extra files), then a second commit
// that pins the e2e environment to the first; it returns the pinned SHA.
func (f *fixture) release(msg string, files map[string]string) string {
	f.t.Helper()
	sha := f.git.Commit(f.t, msg, files)
	f.pin(sha)
	return sha
}

func (f *fixture) pin(sha string) {
	f.t.Helper()
	f.git.Commit(f.t, "pin e2e to "+sha[:12], map[string]string{
		"environments/e2e.toml": fmt.Sprintf("commit = %q\n", sha),
	})
}

func (f *fixture) lockstep(args ...string) result {
	f.t.Helper()
	return lockstep(f.t, append([]string{"--config", f.config}, args...)...)
}

func (f *fixture) apply() result {
	f.t.Helper()
	r := f.lockstep("apply", "e2e")
	if r.code != 0 {
		f.t.Fatalf("apply failed: %s", r)
	}
	return r
}

// plan runs `lockstep plan --json` and returns the environment's plan.
func (f *fixture) plan() *reconcile.Plan {
	f.t.Helper()
	r := f.lockstep("plan", "--json", "e2e")
	if r.code != 0 {
		f.t.Fatalf("plan failed: %s", r)
	}
	var out []struct {
		Plan  *reconcile.Plan `json:"plan"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 || out[0].Plan == nil {
		f.t.Fatalf("plan --json: cannot read %q: %v", r.stdout, err)
	}
	return out[0].Plan
}

// changes returns the plan's container actions (pulls, networks and volumes
// left out) as "kind service" strings, and the images it pulls.
func changes(p *reconcile.Plan) (acts []reconcile.Action, pulls []string) {
	for _, a := range p.Actions {
		switch a.Kind {
		case reconcile.ActPull:
			pulls = append(pulls, a.Image)
		case reconcile.ActCreateNetwork, reconcile.ActCreateVolume:
		default:
			acts = append(acts, a)
		}
	}
	return acts, pulls
}

// recreated returns the services whose container ID changed.
func recreated(before, after map[string]box) []string {
	var out []string
	for _, svc := range sortedKeys(ids(after)) {
		if b, ok := before[svc]; !ok || b.ID != after[svc].ID {
			out = append(out, svc)
		}
	}
	return out
}

func TestReleaseLoop(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	A := stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
	shaA := f.release("stack A", map[string]string{
		"compose.yaml":      A.yaml(),
		"worker/config.txt": "threads = 1\n",
		// The rest of a monorepo: what no compose file uses.
		"app/src/main.go": "package main\n",
		"docs/README.md":  "docs\n",
	})

	// 1. Fresh host: apply brings the whole stack up, labelled as compose does.
	f.apply()
	w1 := world(t, cli, f.project)
	if got := sortedKeys(ids(w1)); strings.Join(got, ",") != "db,web,worker" {
		t.Fatalf("services after first apply: %v", got)
	}
	releaseA := filepath.Join(f.stateDir, "releases", shaA)
	// The release holds what compose uses, as git has it, and nothing else.
	releaseFiles := map[string]string{}
	err := filepath.WalkDir(releaseA, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(releaseA, p)
		releaseFiles[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(releaseFiles) != 2 || releaseFiles["compose.yaml"] != A.yaml() || releaseFiles["worker/config.txt"] != "threads = 1\n" {
		t.Errorf("release A holds %v, want compose.yaml and worker/config.txt as committed", sortedKeys(releaseFiles))
	}
	for svc, b := range w1 {
		if b.State != "running" {
			t.Errorf("%s is %s, want running", svc, b.State)
		}
		want := map[string]string{
			"com.docker.compose.project":              f.project,
			"com.docker.compose.service":              svc,
			"com.docker.compose.container-number":     "1",
			"com.docker.compose.oneoff":               "False",
			"com.docker.compose.project.working_dir":  releaseA,
			"com.docker.compose.project.config_files": filepath.Join(releaseA, "compose.yaml"),
			"lockstep.environment":                    "e2e",
			"lockstep.commit":                         shaA,
		}
		for k, v := range want {
			if b.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", svc, k, b.Labels[k], v)
			}
		}
		for _, k := range []string{"com.docker.compose.config-hash", "com.docker.compose.version", "lockstep.hash"} {
			if b.Labels[k] == "" {
				t.Errorf("%s: label %s missing", svc, k)
			}
		}
		if !strings.HasPrefix(b.Labels["com.docker.compose.image"], "sha256:") {
			t.Errorf("%s: label com.docker.compose.image = %q, want the image ID", svc, b.Labels["com.docker.compose.image"])
		}
		if want := fmt.Sprintf("%s-%s-1", f.project, svc); b.Name != want {
			t.Errorf("container name %s, want %s", b.Name, want)
		}
	}
	if got := w1["web"].Labels["com.docker.compose.depends_on"]; got != "db:service_healthy:false" {
		t.Errorf("web depends_on label = %q", got)
	}
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, w1["web"], "8080")+"/version"); got != "a" {
		t.Errorf("web serves version %q, want a", got)
	}
	composePS(t, f.project, releaseA)
	bootLog := volumeFile(t, cli, f.project+"_dbdata", "boot.log")

	// 2. Again: an empty plan, nothing recreated.
	if p := f.plan(); !p.Empty() {
		t.Fatalf("second plan is not empty: %+v", p.Actions)
	}
	r := f.lockstep("plan", "--exit-code", "e2e")
	if r.code != 0 {
		t.Fatalf("plan --exit-code on a converged host: %s", r)
	}
	f.apply()
	sameWorld(t, w1, world(t, cli, f.project))

	// 3. Release B: only web's image tag changes; exactly web is recreated.
	B := A
	B.WebImage = f.images["web:b"]
	f.release("web b", map[string]string{"compose.yaml": B.yaml()})
	if r := f.lockstep("plan", "--exit-code", "e2e"); r.code != 2 {
		t.Fatalf("plan --exit-code with a pending release: want exit 2, got %s", r)
	}
	acts, pulls := changes(f.plan())
	wantReason := "image " + f.images["web:a"] + " -> " + f.images["web:b"]
	if len(acts) != 1 || acts[0].Kind != reconcile.ActRecreate || acts[0].Service != "web" ||
		strings.Join(acts[0].Reasons, ";") != wantReason {
		t.Fatalf("plan for B: want one recreate of web because %q, got %+v", wantReason, acts)
	}
	if strings.Join(pulls, ",") != f.images["web:b"] {
		t.Fatalf("plan for B pulls %v, want only %s", pulls, f.images["web:b"])
	}
	f.apply()
	w3 := world(t, cli, f.project)
	if got := recreated(w1, w3); strings.Join(got, ",") != "web" {
		t.Fatalf("release B recreated %v, want only web", got)
	}
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, w3["web"], "8080")+"/version"); got != "b" {
		t.Errorf("web serves version %q after B, want b", got)
	}
	if got := volumeFile(t, cli, f.project+"_dbdata", "boot.log"); got != bootLog {
		t.Errorf("db volume changed: %q, was %q", got, bootLog)
	}

	// 4. Release C: only the worker's mounted config file changes.
	shaC := f.release("worker config", map[string]string{"worker/config.txt": "threads = 8\n"})
	acts, _ = changes(f.plan())
	if len(acts) != 1 || acts[0].Service != "worker" ||
		strings.Join(acts[0].Reasons, ";") != "file worker/config.txt changed" {
		t.Fatalf("plan for C: want one recreate of worker naming the file, got %+v", acts)
	}
	f.apply()
	w4 := world(t, cli, f.project)
	if got := recreated(w3, w4); strings.Join(got, ",") != "worker" {
		t.Fatalf("release C recreated %v, want only worker", got)
	}
	if got := readFile(t, mountSource(t, w4["worker"], "/etc/worker/config.txt")); got != "threads = 8\n" {
		t.Errorf("worker sees %q, want the new config", got)
	}
	if !strings.Contains(mountSource(t, w4["worker"], "/etc/worker/config.txt"), shaC) {
		t.Errorf("worker mounts %s, want a path in the release of %s", mountSource(t, w4["worker"], "/etc/worker/config.txt"), shaC)
	}
	if _, err := os.Stat(releaseA); err != nil {
		t.Errorf("release A is still used by db but is gone: %v", err)
	}

	// 5. Revert to A: the host matches the first deploy again.
	f.pin(shaA)
	f.apply()
	w5 := world(t, cli, f.project)
	if got := recreated(w4, w5); strings.Join(got, ",") != "web,worker" {
		t.Errorf("revert recreated %v, want web and worker", got)
	}
	if w5["db"].ID != w1["db"].ID {
		t.Errorf("db was recreated by the revert")
	}
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, w5["web"], "8080")+"/version"); got != "a" {
		t.Errorf("web serves %q after revert, want a", got)
	}
	if got := readFile(t, mountSource(t, w5["worker"], "/etc/worker/config.txt")); got != "threads = 1\n" {
		t.Errorf("worker sees %q after revert", got)
	}
	for svc, b := range w5 {
		if b.Labels["lockstep.hash"] != w1[svc].Labels["lockstep.hash"] {
			t.Errorf("%s hash after revert %s differs from the first deploy's %s", svc, b.Labels["lockstep.hash"], w1[svc].Labels["lockstep.hash"])
		}
	}
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after revert not empty: %+v", p.Actions)
	}

	// 6. worker removed from the compose file: its container goes, its volume stays.
	D := A
	D.WithWorker = false
	f.release("drop worker", map[string]string{"compose.yaml": D.yaml()})
	acts, _ = changes(f.plan())
	if len(acts) != 1 || acts[0].Kind != reconcile.ActRemove || acts[0].Service != "worker" {
		t.Fatalf("plan after dropping worker: %+v", acts)
	}
	f.apply()
	w6 := world(t, cli, f.project)
	if _, ok := w6["worker"]; ok {
		t.Errorf("worker still has a container")
	}
	if !volumeExists(t, cli, f.project+"_workerdata") {
		t.Errorf("worker's named volume was removed")
	}
	sameWorld(t, map[string]box{"web": w5["web"], "db": w5["db"]}, w6)

	// 7. Drift: db removed by hand shows in the plan and comes back on apply.
	removeByHand(t, w6["db"].ID)
	acts, _ = changes(f.plan())
	if len(acts) != 1 || acts[0].Kind != reconcile.ActCreate || acts[0].Service != "db" ||
		!acts[0].Drift || strings.Join(acts[0].Reasons, ";") != "container missing" {
		t.Fatalf("plan after db was removed by hand: %+v", acts)
	}
	f.apply()
	w7 := world(t, cli, f.project)
	if w7["db"].State != "running" || w7["web"].ID != w6["web"].ID {
		t.Errorf("drift repair: db %s, web recreated %v", w7["db"].State, w7["web"].ID != w6["web"].ID)
	}
	if got := volumeFile(t, cli, f.project+"_dbdata", "boot.log"); !strings.HasPrefix(got, bootLog) || got == bootLog {
		t.Errorf("db volume after drift repair: %q, want the old log plus a new start", got)
	}
}

// removeByHand plays the operator who runs `docker rm -f`.
func removeByHand(t *testing.T, id string) {
	t.Helper()
	cli := harness.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
}

// composePS checks that the compose CLI, when the machine has one, sees the
// project lockstep deployed: it finds containers by compose's own labels.
func composePS(t *testing.T, project, dir string) {
	t.Helper()
	var cmd []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = []string{"docker", "compose"}
	} else if exec.Command("docker-compose", "version").Run() == nil {
		cmd = []string{"docker-compose"}
	} else {
		t.Logf("no Docker Compose CLI on this machine: skipping the `docker compose ps` check")
		return
	}
	c := exec.Command(cmd[0], append(cmd[1:], "-p", project, "ps")...)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%v -p %s ps: %v\n%s", cmd, project, err, out)
	}
	for _, svc := range []string{"web", "worker", "db"} {
		if name := project + "-" + svc + "-1"; !strings.Contains(string(out), name) {
			t.Errorf("%v ps does not list %s:\n%s", cmd, name, out)
		}
	}
}
