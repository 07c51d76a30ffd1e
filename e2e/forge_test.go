package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// giteaCached is where .ci/forge/build.sh keeps the binary.
const giteaCached = "/var/cache/gitea-test/gitea-1.27.3"

// giteaBinary is the Gitea server to test against: $LOCKSTEP_GITEA, else
// the one .ci/forge/build.sh cached. Without either the test is skipped,
// loudly, except under CI=true where it fails.
func giteaBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("LOCKSTEP_GITEA")
	if bin == "" {
		if _, err := os.Stat(giteaCached); err == nil {
			bin = giteaCached
		}
	}
	if bin == "" {
		msg := "no Gitea: set LOCKSTEP_GITEA or run `bash .ci/forge/build.sh` (builds it once, ~9 minutes)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	return bin
}

// gitea is a throw-away Gitea started by .ci/forge/start.sh.
type gitea struct {
	t                 *testing.T
	url, token, owner string
}

// startGitea starts a fresh Gitea; it is stopped and its directory removed
// when the test ends.
func startGitea(t *testing.T, bin string) *gitea {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", ".ci", "forge", "start.sh"))
	// Gitea keeps its own git config (in its data dir) and writes to it:
	// the tests' GIT_CONFIG_GLOBAL=/dev/null would break its git calls.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GIT_CONFIG_") })
	cmd.Env = append(env, "GITEA_BIN="+bin, "TMPDIR="+os.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start Gitea: %v\n%s", err, stderr.String())
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	pid, _ := strconv.Atoi(vars["GITEA_PID"])
	dir := vars["GITEA_DIR"]
	t.Cleanup(func() {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			waitGone(pid, 10*time.Second)
		}
		if strings.Contains(dir, "gitea-test.") {
			_ = os.RemoveAll(dir)
		}
	})
	if vars["GITEA_URL"] == "" || vars["GITEA_TOKEN"] == "" || pid == 0 {
		t.Fatalf("start.sh printed %q", out)
	}
	return &gitea{t: t, url: vars["GITEA_URL"], token: vars["GITEA_TOKEN"], owner: vars["GITEA_USER"]}
}

// waitGone waits until process pid has exited (it is not our child: start.sh
// started it), at most timeout, then kills it.
func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// api calls Gitea's API and decodes a 2xx answer into out.
func (g *gitea) api(method, path string, body, out any) {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.url+"/api/v1"+path, rd)
	must(g.t, err)
	req.Header.Set("Authorization", "token "+g.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(g.t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		g.t.Fatalf("gitea %s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		must(g.t, json.Unmarshal(data, out))
	}
}

// commitStatus is one entry of GET .../commits/{sha}/statuses.
type commitStatus struct {
	Status      string `json:"status"`
	Context     string `json:"context"`
	Description string `json:"description"`
}

func (g *gitea) statuses(repo, sha string) []commitStatus {
	var out []commitStatus
	g.api("GET", "/repos/"+g.owner+"/"+repo+"/commits/"+sha+"/statuses", nil, &out)
	return out
}

// workTree is a clone the test commits in and pushes to Gitea over HTTP
// with the token.
type workTree struct {
	t        *testing.T
	dir, url string
}

func (g *gitea) newWorkTree(repo string) *workTree {
	w := &workTree{t: g.t, dir: g.t.TempDir()}
	w.url = strings.Replace(g.url, "http://", "http://"+g.owner+":"+g.token+"@", 1) + "/" + g.owner + "/" + repo + ".git"
	w.git("init", "-q", "-b", "main")
	return w
}

func (w *workTree) git(args ...string) string {
	w.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The push URL holds the token: never print it.
		w.t.Fatalf("git %s: %v\n%s", args[0], err, strings.ReplaceAll(string(out), w.url, "<gitea>"))
	}
	return strings.TrimSpace(string(out))
}

// commit writes files and commits them, returning the commit.
func (w *workTree) commit(msg string, files map[string]string) string {
	for p, content := range files {
		full := filepath.Join(w.dir, p)
		must(w.t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(w.t, os.WriteFile(full, []byte(content), 0o644))
	}
	w.git("add", "-A")
	w.git("commit", "-q", "-m", msg)
	return w.git("rev-parse", "HEAD")
}

// release commits the compose file, pins the e2e environment to that
// commit in a second commit, pushes both and returns the pinned commit.
func (w *workTree) release(msg, compose string) string {
	sha := w.commit(msg, map[string]string{"compose.yaml": compose})
	w.commit("pin e2e to "+sha[:12], map[string]string{"environments/e2e.toml": fmt.Sprintf("commit = %q\n", sha)})
	w.git("push", "-q", w.url, "main")
	return sha
}

// TestForgeStatusesOnGitea: the agent watches a repository on a real
// Gitea; a push webhook (polling is practically off) makes it deploy a new
// release on the real engine, and the commit deployed gets the pending and
// then success status `lockstep/e2e@<host>` on Gitea. A release that fails
// its health gate gets failure, and the commit rolled back to success again.
func TestForgeStatusesOnGitea(t *testing.T) {
	bin := giteaBinary(t)
	cli := harness.RequireDocker(t)
	g := startGitea(t, bin)

	f := &fixture{t: t, registry: harness.StartRegistry(t), images: map[string]string{}}
	f.project = harness.UniqueProject(t, "lsforge")
	harness.CleanupProject(t, cli, f.project, f.registry)
	for _, im := range []struct{ repo, tag string }{{"web", "a"}, {"web", "b"}, {"db", "a"}} {
		f.images[im.repo+":"+im.tag] = harness.PushTestApp(t, f.registry, im.repo, im.tag,
			harness.ImageOptions{Env: []string{"VERSION=" + im.tag}})
	}
	g.api("POST", "/user/repos", map[string]any{"name": "app", "private": false, "default_branch": "main"}, nil)
	w := g.newWorkTree("app")
	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	shaA := w.release("stack A", A.yaml())

	etc := t.TempDir()
	f.stateDir, f.home = t.TempDir(), t.TempDir()
	f.config, f.socket = filepath.Join(etc, "lockstep.toml"), filepath.Join(etc, "lockstep.sock")
	tokenFile, secretFile := filepath.Join(etc, "forge-token"), filepath.Join(etc, "webhook-secret")
	secret := "gitea-hook-secret"
	must(t, os.WriteFile(tokenFile, []byte(g.token+"\n"), 0o600))
	must(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	hookAddr := freePort(t)
	cfg := fmt.Sprintf(`state_dir = %q
[repo]
url = %q
poll_interval = "1h"
timeout = "10s"
[api]
socket = %q
[agent]
drift_interval = "1h"
shutdown_grace = "30s"
[health]
timeout = "20s"
bake = "3s"
[webhook]
listen = %q
secret_file = %q
[forge]
kind = "gitea"
token_file = %q
host = "e2e-host"
[[environment]]
name = "e2e"
project = %q
`, f.stateDir, g.url+"/"+g.owner+"/app.git", f.socket, hookAddr, secretFile, tokenFile, f.project)
	must(t, os.WriteFile(f.config, []byte(cfg), 0o644))

	a := f.startAgent()
	f.converged(shaA, 90*time.Second)
	const statusCtx = "lockstep/e2e@e2e-host"
	waitStatus(t, g, "app", shaA, statusCtx, "success")

	g.api("POST", "/repos/"+g.owner+"/app/hooks", map[string]any{
		"type": "gitea", "active": true, "events": []string{"push"},
		"config": map[string]string{"url": "http://" + hookAddr + "/hooks/gitea", "content_type": "json", "secret": secret},
	}, nil)
	B := A
	B.WebImage = f.images["web:b"]
	start := time.Now()
	shaB := w.release("web b", B.yaml())
	f.converged(shaB, 90*time.Second)
	t.Logf("push to converged (through the Gitea webhook): %s", time.Since(start).Round(time.Millisecond))
	byWebhook := slices.ContainsFunc(f.history(), func(p reconcile.PassRecord) bool {
		return p.Commit == shaB && p.Result == reconcile.ResultApplied && p.Trigger == reconcile.TriggerWebhook
	})
	if !byWebhook {
		t.Fatalf("the release was not deployed by a webhook pass: %+v", f.history())
	}
	got := waitStatus(t, g, "app", shaB, statusCtx, "success")
	states := []string{}
	for _, s := range got {
		if s.Context == statusCtx {
			states = append(states, s.Status)
		}
	}
	if !slices.Contains(states, "pending") {
		t.Errorf("no pending status before the success on %s: %v", shaB[:12], states)
	}
	for _, s := range got {
		if s.Context == statusCtx && s.Status == "success" && s.Description != "deployed to e2e on e2e-host" {
			t.Errorf("success description %q", s.Description)
		}
	}

	// A release that fails its health gate: failure on it, naming the
	// service and the commit rolled back to, and success again on that one.
	C := B
	C.Extra = "    environment:\n      UNHEALTHY: \"1\"\n"
	shaC := w.release("web b, unhealthy", C.yaml())
	f.waitPass(shaC, reconcile.ResultRolledBack, 2*time.Minute)
	failed := waitStatus(t, g, "app", shaC, statusCtx, "failure")
	if i := slices.IndexFunc(failed, func(s commitStatus) bool { return s.Status == "failure" }); i < 0 ||
		!strings.HasPrefix(failed[i].Description, "rolled back to "+shaB[:12]+": web failed the health gate on e2e on e2e-host") {
		t.Errorf("failure status: %+v", failed)
	}
	eventually(t, 30*time.Second, "success again on the commit rolled back to", func() bool {
		return slices.ContainsFunc(g.statuses("app", shaB), func(s commitStatus) bool {
			return s.Status == "success" && strings.HasPrefix(s.Description, "running again on e2e on e2e-host")
		})
	})
	if strings.Contains(a.log(), g.token) {
		t.Error("the agent logged the forge token")
	}
}

// waitStatus waits until sha has a status with context in state on Gitea
// and returns the commit's statuses then.
func waitStatus(t *testing.T, g *gitea, repo, sha, statusCtx, state string) []commitStatus {
	t.Helper()
	var got []commitStatus
	eventually(t, 30*time.Second, fmt.Sprintf("status %s %s on %s", statusCtx, state, sha[:12]), func() bool {
		got = g.statuses(repo, sha)
		return slices.ContainsFunc(got, func(s commitStatus) bool { return s.Context == statusCtx && s.Status == state })
	})
	return got
}
