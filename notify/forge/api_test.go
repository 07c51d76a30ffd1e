package forge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The test servers below speak the forges' documented REST APIs (the parts
// lockstep uses): they check the method, path, auth header and JSON body
// fields the documentation requires, refuse what it refuses with the
// forge's own error body, and answer like the real API. They are stand-ins
// for GitHub and GitLab, which cannot be run here; Gitea is also tested
// against a real server in e2e.

const testToken = "tok-5ecret-abc"

// request is one request a test server accepted.
type request struct {
	Method, Path string // Path as sent, escapes kept
	Body         map[string]any
}

type apiRecorder struct {
	mu   sync.Mutex
	reqs []request
	// fail, when set, answers instead of the API (status, body) for the
	// next requests, one entry each.
	fail []func(w http.ResponseWriter)
}

func (a *apiRecorder) record(r request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = append(a.reqs, r)
}

func (a *apiRecorder) requests() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// injected answers with the next injected failure, if any.
func (a *apiRecorder) injected(w http.ResponseWriter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.fail) == 0 {
		return false
	}
	f := a.fail[0]
	a.fail = a.fail[1:]
	f(w)
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decodeBody(t *testing.T, r *http.Request) map[string]any {
	var m map[string]any
	if r.Body != nil && r.ContentLength != 0 {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q", r.Method, r.URL.Path, ct)
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
		}
	}
	return m
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// githubAPI is GitHub's REST API v3 for commit statuses
// (POST /repos/{owner}/{repo}/statuses/{sha}) and deployments
// (GET and POST /repos/{owner}/{repo}/deployments, POST
// /repos/{owner}/{repo}/deployments/{deployment_id}/statuses).
type githubAPI struct {
	apiRecorder
	t           *testing.T
	repo        string
	dmu         sync.Mutex
	deployments []map[string]any // as created, with "id"
}

func newGitHubAPI(t *testing.T, repo string) (*githubAPI, *httptest.Server) {
	g := &githubAPI{t: t, repo: repo}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *githubAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := g.t
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") == "" {
		t.Errorf("%s %s: Accept %q, X-GitHub-Api-Version %q", r.Method, r.URL.Path, r.Header.Get("Accept"), r.Header.Get("X-GitHub-Api-Version"))
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "lockstep") {
		t.Errorf("User-Agent %q: GitHub requires one", r.Header.Get("User-Agent"))
	}
	body := decodeBody(t, r)
	g.record(request{r.Method, r.URL.RequestURI(), body})
	if g.injected(w) {
		return
	}
	prefix := "/repos/" + g.repo + "/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		writeJSON(w, 404, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	switch {
	case r.Method == "POST" && strings.HasPrefix(rest, "statuses/"):
		g.status(w, strings.TrimPrefix(rest, "statuses/"), body)
	case r.Method == "GET" && rest == "deployments":
		g.list(w, r)
	case r.Method == "POST" && rest == "deployments":
		g.create(w, body)
	case r.Method == "POST" && strings.HasPrefix(rest, "deployments/") && strings.HasSuffix(rest, "/statuses"):
		g.deploymentStatus(w, strings.TrimSuffix(strings.TrimPrefix(rest, "deployments/"), "/statuses"), body)
	default:
		writeJSON(w, 404, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
	}
}

func validationFailed(w http.ResponseWriter, field, code string) {
	writeJSON(w, 422, map[string]any{"message": "Validation Failed",
		"errors":            []map[string]string{{"resource": "Status", "field": field, "code": code}},
		"documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status"})
}

func (g *githubAPI) status(w http.ResponseWriter, sha string, body map[string]any) {
	if len(sha) != 40 {
		writeJSON(w, 422, map[string]string{"message": "No commit found for SHA: " + sha})
		return
	}
	switch str(body, "state") {
	case "error", "failure", "pending", "success":
	default:
		validationFailed(w, "state", "custom")
		return
	}
	if len([]rune(str(body, "description"))) > 140 {
		validationFailed(w, "description", "custom")
		return
	}
	writeJSON(w, 201, map[string]any{"id": 1, "state": body["state"], "context": body["context"],
		"description": body["description"], "target_url": body["target_url"]})
}

func (g *githubAPI) list(w http.ResponseWriter, r *http.Request) {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	var out []map[string]any
	for i := len(g.deployments) - 1; i >= 0; i-- { // newest first
		d := g.deployments[i]
		if q := r.URL.Query().Get("sha"); q != "" && d["sha"] != q {
			continue
		}
		if q := r.URL.Query().Get("environment"); q != "" && d["environment"] != q {
			continue
		}
		out = append(out, d)
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, 200, out)
}

func (g *githubAPI) create(w http.ResponseWriter, body map[string]any) {
	if str(body, "ref") == "" {
		validationFailed(w, "ref", "missing_field")
		return
	}
	if _, ok := body["required_contexts"].([]any); !ok {
		g.t.Errorf("deployment without required_contexts: GitHub would wait for every status check")
	}
	if body["auto_merge"] != false {
		g.t.Errorf("deployment auto_merge = %v: GitHub would merge the default branch into the ref", body["auto_merge"])
	}
	g.dmu.Lock()
	defer g.dmu.Unlock()
	d := map[string]any{"id": float64(100 + len(g.deployments)), "sha": body["ref"], "ref": body["ref"],
		"environment": body["environment"], "transient_environment": body["transient_environment"],
		"production_environment": body["production_environment"]}
	g.deployments = append(g.deployments, d)
	writeJSON(w, 201, d)
}

func (g *githubAPI) deploymentStatus(w http.ResponseWriter, id string, body map[string]any) {
	n, _ := strconv.Atoi(id)
	g.dmu.Lock()
	found := slices.ContainsFunc(g.deployments, func(d map[string]any) bool { return d["id"] == float64(n) })
	g.dmu.Unlock()
	if !found {
		writeJSON(w, 404, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	switch str(body, "state") {
	case "error", "failure", "inactive", "in_progress", "queued", "pending", "success":
	default:
		validationFailed(w, "state", "invalid")
		return
	}
	writeJSON(w, 201, map[string]any{"id": 1, "state": body["state"], "environment_url": body["environment_url"]})
}

// gitlabAPI is GitLab's REST API v4 for commit statuses:
// POST /projects/:id/statuses/:sha, :id the URL-encoded project path.
type gitlabAPI struct {
	apiRecorder
	t       *testing.T
	project string // group/sub/name
	smu     sync.Mutex
	last    map[string]string // sha + name -> state
}

func newGitLabAPI(t *testing.T, project string) (*gitlabAPI, *httptest.Server) {
	g := &gitlabAPI{t: t, project: project, last: map[string]string{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *gitlabAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("PRIVATE-TOKEN") != testToken {
		writeJSON(w, 401, map[string]string{"message": "401 Unauthorized"})
		return
	}
	body := decodeBody(g.t, r)
	g.record(request{r.Method, r.URL.RequestURI(), body})
	if g.injected(w) {
		return
	}
	prefix := "/api/v4/projects/" + strings.ReplaceAll(g.project, "/", "%2F") + "/statuses/"
	sha, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if r.Method != "POST" || !ok {
		writeJSON(w, 404, map[string]string{"message": "404 Project Not Found"})
		return
	}
	state := str(body, "state")
	switch state {
	case "pending", "running", "success", "failed", "canceled":
	default:
		writeJSON(w, 400, map[string]string{"error": "state does not have a valid value"})
		return
	}
	name := str(body, "name")
	if name == "" {
		name = "default"
	}
	g.smu.Lock()
	prev := g.last[sha+name]
	if prev == state {
		g.smu.Unlock()
		verb := map[string]string{"running": "run", "success": "succeed", "failed": "drop", "pending": "enqueue", "canceled": "cancel"}[state]
		writeJSON(w, 400, map[string]string{"message": fmt.Sprintf("Cannot transition status via :%s from :%s", verb, prev)})
		return
	}
	g.last[sha+name] = state
	g.smu.Unlock()
	writeJSON(w, 201, map[string]any{"id": 93, "sha": sha, "status": state, "name": name,
		"target_url": body["target_url"], "description": body["description"]})
}

// giteaAPI is Gitea's (and Forgejo's) API v1 for commit statuses:
// POST /api/v1/repos/{owner}/{repo}/statuses/{sha}.
type giteaAPI struct {
	apiRecorder
	t    *testing.T
	repo string
}

func newGiteaAPI(t *testing.T, repo string) (*giteaAPI, *httptest.Server) {
	g := &giteaAPI{t: t, repo: repo}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *giteaAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "token "+testToken {
		writeJSON(w, 401, map[string]any{"message": "token is required", "url": "http://gitea/api/swagger"})
		return
	}
	body := decodeBody(g.t, r)
	g.record(request{r.Method, r.URL.RequestURI(), body})
	if g.injected(w) {
		return
	}
	sha, ok := strings.CutPrefix(r.URL.Path, "/api/v1/repos/"+g.repo+"/statuses/")
	if r.Method != "POST" || !ok {
		writeJSON(w, 404, map[string]any{"errors": []string{}, "message": "not found", "url": "http://gitea/api/swagger"})
		return
	}
	switch str(body, "state") {
	case "pending", "success", "error", "failure", "warning":
	default:
		writeJSON(w, 422, map[string]any{"message": "[State]: invalid commit status state", "url": "http://gitea/api/swagger"})
		return
	}
	writeJSON(w, 201, map[string]any{"id": 1, "status": body["state"], "context": body["context"], "sha": sha,
		"target_url": body["target_url"], "description": body["description"]})
}
