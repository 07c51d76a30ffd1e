package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// exists says whether a GET of the API path answers 200.
func (g *gitea) exists(path string) bool {
	req, err := http.NewRequest("GET", g.url+"/api/v1"+path, nil)
	must(g.t, err)
	req.Header.Set("Authorization", "token "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// giteaStatus is one entry of Gitea's commit statuses with its link.
type giteaStatus struct {
	Status    string `json:"status"`
	Context   string `json:"context"`
	TargetURL string `json:"target_url"`
}

// TestForgeReviewEnvironmentOnGitea: the pipeline on a real Gitea. A pull
// request is opened; CI (here: the test) commits its pin file, naming the
// PR's head commit, to the set's glob on main; Gitea's signed push webhook
// nudges the agent (polling is practically off), which brings up the
// review environment on the real engine, and the PR's head commit gets the
// success status of that environment with the review app's URL as its
// link. The PR closes, the pin file is deleted, and the environment is
// torn down, volumes included as the set says.
func TestForgeReviewEnvironmentOnGitea(t *testing.T) {
	bin := giteaBinary(t)
	cli := harness.RequireDocker(t)
	g := startGitea(t, bin)

	f := &fixture{t: t, registry: harness.StartRegistry(t), images: map[string]string{}}
	set := harness.UniqueProject(t, "lsfrv")
	env := set + "-pr-1"
	f.project = env
	harness.CleanupProject(t, cli, env, f.registry)
	for _, im := range []struct{ repo, tag string }{{"web", "a"}, {"web", "b"}, {"db", "a"}} {
		f.images[im.repo+":"+im.tag] = harness.PushTestApp(t, f.registry, im.repo, im.tag,
			harness.ImageOptions{Env: []string{"VERSION=" + im.tag}})
	}
	g.api("POST", "/user/repos", map[string]any{"name": "app", "private": false, "default_branch": "main"}, nil)
	w := g.newWorkTree("app")
	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	w.commit("stack A", map[string]string{"compose.yaml": A.yaml()})
	w.git("push", "-q", w.url, "main")

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
timeout = "30s"
bake = "3s"
[webhook]
listen = %q
secret_file = %q
[forge]
kind = "gitea"
token_file = %q
host = "e2e-host"
[[environment_set]]
name = %q
pins = "environments/review/*.toml"
remove_volumes = true
url = "http://${LOCKSTEP_SLUG}.review.example.test"
`, f.stateDir, g.url+"/"+g.owner+"/app.git", f.socket, hookAddr, secretFile, tokenFile, set)
	must(t, os.WriteFile(f.config, []byte(cfg), 0o644))
	a := f.startAgent()
	g.api("POST", "/repos/"+g.owner+"/app/hooks", map[string]any{
		"type": "gitea", "active": true, "events": []string{"push"},
		"config": map[string]string{"url": "http://" + hookAddr + "/hooks/gitea", "content_type": "json", "secret": secret},
	}, nil)

	// The change under review: web b, on a branch, as a pull request.
	w.git("checkout", "-q", "-b", "feature")
	B := A
	B.WebImage = f.images["web:b"]
	head := w.commit("web b", map[string]string{"compose.yaml": B.yaml()})
	w.git("push", "-q", w.url, "feature")
	// Gitea records a pushed branch from a queue, after the push returns.
	eventually(t, 30*time.Second, "Gitea to know the pushed branch", func() bool { return g.exists("/repos/" + g.owner + "/app/branches/feature") })
	var pr struct {
		Number int `json:"number"`
	}
	g.api("POST", "/repos/"+g.owner+"/app/pulls", map[string]any{"head": "feature", "base": "main", "title": "web b"}, &pr)
	// CI opens the review environment: the PR's pin file on main.
	w.git("checkout", "-q", "main")
	pinFile := fmt.Sprintf("environments/review/pr-%d.toml", pr.Number)
	if pr.Number != 1 {
		t.Fatalf("the first pull request of a new repository is number %d, not 1", pr.Number)
	}
	w.commit("open review environment for PR 1", map[string]string{pinFile: fmt.Sprintf("commit = %q\n", head)})
	w.git("push", "-q", w.url, "main")

	statusCtx := "lockstep/" + env + "@e2e-host"
	var got []giteaStatus
	eventually(t, 2*time.Minute, "the review environment's success status on the PR's head commit", func() bool {
		got = nil
		g.api("GET", "/repos/"+g.owner+"/app/commits/"+head+"/statuses", nil, &got)
		return slices.ContainsFunc(got, func(s giteaStatus) bool { return s.Context == statusCtx && s.Status == "success" })
	})
	for _, s := range got {
		if s.Context == statusCtx && s.TargetURL != "http://pr-1.review.example.test" {
			t.Errorf("status %s links to %q, want the review app's URL", s.Status, s.TargetURL)
		}
	}
	ctx := context.Background()
	left, err := harness.ProjectLeftovers(ctx, cli, env)
	must(t, err)
	if len(left) == 0 {
		t.Fatalf("the review environment %s runs nothing on the engine", env)
	}

	// The PR closes: CI deletes its pin file; the environment goes.
	g.api("PATCH", fmt.Sprintf("/repos/%s/app/pulls/%d", g.owner, pr.Number), map[string]any{"state": "closed"}, nil)
	w.git("rm", "-q", pinFile)
	w.git("commit", "-q", "-m", "close review environment for PR 1")
	w.git("push", "-q", w.url, "main")
	eventually(t, 2*time.Minute, "the review environment torn down", func() bool {
		left, err := harness.ProjectLeftovers(ctx, cli, env)
		return err == nil && len(left) == 0
	})
	if a.healthz() != 200 {
		t.Errorf("the agent is not healthy after the teardown:\n%s", a.log())
	}
}
