package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// giteaStatuses is Gitea's POST /api/v1/repos/{owner}/{repo}/statuses/{sha}
// (token auth, JSON body), answering with code.
type giteaStatuses struct {
	mu    sync.Mutex
	code  int
	posts []string // "sha state context"
}

func (g *giteaStatuses) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct{ State, Context string }
	_ = json.NewDecoder(r.Body).Decode(&body)
	sha, ok := strings.CutPrefix(r.URL.Path, "/api/v1/repos/acme/infra/statuses/")
	if r.Method != http.MethodPost || !ok || r.Header.Get("Authorization") != "token forge-tok" {
		http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
		return
	}
	g.mu.Lock()
	g.posts = append(g.posts, sha+" "+body.State+" "+body.Context)
	code := g.code
	g.mu.Unlock()
	w.WriteHeader(code)
	_, _ = w.Write([]byte(`{"message":"overloaded"}`))
}

// TestApplyPostsItsResultToTheForge: `lockstep apply` posts the result of
// its pass to the forge; a forge that fails is a warning, and the apply
// still succeeds.
func TestApplyPostsItsResultToTheForge(t *testing.T) {
	for _, tt := range []struct {
		name  string
		code  int
		posts int
	}{{"forge up", http.StatusCreated, 1}, {"forge down", http.StatusServiceUnavailable, 2}} {
		t.Run(tt.name, func(t *testing.T) {
			api := &giteaStatuses{code: tt.code}
			srv := httptest.NewServer(api)
			defer srv.Close()
			tok := filepath.Join(t.TempDir(), "forge-token")
			if err := os.WriteFile(tok, []byte("forge-tok\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, testConfig+"\n[forge]\nkind = \"gitea\"\napi_url = \""+srv.URL+"/api/v1\"\ntoken_file = \""+tok+"\"\nhost = \"h1\"\n")
			fake := upToDate()
			res := fake.results["staging"]
			res.Plan = changes("staging", "staging", shaStaging)
			res.Record = &reconcile.PassRecord{Environment: "staging", Commit: shaStaging, Result: reconcile.ResultApplied}
			inv := run(t, fake, nil, "--config", cfg, "apply", "staging")
			if inv.code != exitOK {
				t.Fatalf("apply exit %d\n%s", inv.code, inv.stderr)
			}
			api.mu.Lock()
			posts := api.posts
			api.mu.Unlock()
			if len(posts) != tt.posts || posts[0] != shaStaging+" success lockstep/staging@h1" {
				t.Fatalf("posts %q", posts)
			}
			warned := strings.Contains(inv.stderr, "deploy status not posted to the forge")
			if warned != (tt.code != http.StatusCreated) || strings.Contains(inv.stderr, "forge-tok") {
				t.Errorf("stderr:\n%s", inv.stderr)
			}
		})
	}
}
