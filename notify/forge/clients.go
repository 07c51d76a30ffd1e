package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// client posts one Status to one forge, one attempt.
type client interface {
	post(ctx context.Context, s Status, statusContext string) error
}

var (
	_ client = (*githubClient)(nil)
	_ client = (*gitlabClient)(nil)
	_ client = (*giteaClient)(nil)
)

// Response bodies read: enough for an id or an error message.
const (
	maxBody     = 64 << 10
	maxErrorMsg = 200
)

// APIError is a forge's refusal of a request.
type APIError struct {
	Forge      string // github, gitlab, gitea, forgejo
	Repository string
	Commit     string // short
	Status     int    // HTTP status
	Message    string // the forge's message, trimmed
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s@%s: HTTP %d %s", e.Forge, e.Repository, e.Commit, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Retryable: the forge is overloaded or failing, not refusing.
func (e *APIError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// retryable reports whether another attempt may succeed: network errors
// and timeouts, 5xx and 429.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	return !errors.Is(err, context.Canceled)
}

// apiClient is what the three clients share: base URL, token, bounded
// reads, errors that never hold the token.
type apiClient struct {
	http      *http.Client
	base      string
	token     string
	repo      string
	kind      string
	userAgent string
}

// do sends body (JSON, nil for none) and decodes a 2xx answer into out
// (nil: ignored). auth sets the kind's credential header.
func (a *apiClient) do(ctx context.Context, method, path, commit string, body, out any, auth func(h http.Header)) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", a.kind, a.repo, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: build request: %w", a.kind, a.repo, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", a.userAgent)
	auth(req.Header)
	resp, err := a.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL; the token is never in it, but keep lines short
		}
		return fmt.Errorf("%s %s@%s: %s %s: %s", a.kind, a.repo, reconcile.Short(commit), method, a.base+path, a.redact(err.Error()))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &APIError{Forge: a.kind, Repository: a.repo, Commit: reconcile.Short(commit),
			Status: resp.StatusCode, Message: a.redact(errorMessage(data))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s@%s: read answer of %s %s: %w", a.kind, a.repo, reconcile.Short(commit), method, path, err)
		}
	}
	return nil
}

// redact removes the token from s, in case a forge echoes it.
func (a *apiClient) redact(s string) string {
	if a.token == "" {
		return s
	}
	return strings.ReplaceAll(s, a.token, "REDACTED")
}

// errorMessage is the forge's message in an error body ({"message": ...}
// on all three, GitLab also {"error": ...}), else the body's start, on one
// line.
func errorMessage(body []byte) string {
	var m struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &m) == nil {
		switch v := m.Message.(type) {
		case string:
			msg = v
		case nil:
			msg = m.Error
		default:
			b, _ := json.Marshal(v) // GitLab: {"message": {"field": ["..."]}}
			msg = string(b)
		}
	} else {
		msg = string(body)
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if r := []rune(msg); len(r) > maxErrorMsg {
		msg = string(r[:maxErrorMsg]) + "…"
	}
	return msg
}

// githubClient posts commit statuses and, with deployments, keeps one
// deployment per environment and commit.
type githubClient struct {
	api         *apiClient
	deployments bool

	mu  sync.Mutex
	ids map[string]int64 // environment + commit -> deployment id
}

func (g *githubClient) auth(h http.Header) {
	h.Set("Authorization", "Bearer "+g.api.token)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
}

func (g *githubClient) post(ctx context.Context, s Status, statusContext string) error {
	if s.State != StateInactive {
		body := map[string]string{"state": string(s.State), "context": statusContext, "description": s.Description}
		if s.URL != "" {
			body["target_url"] = s.URL
		}
		if err := g.api.do(ctx, http.MethodPost, "/repos/"+g.api.repo+"/statuses/"+s.Commit, s.Commit, body, nil, g.auth); err != nil {
			return err
		}
	}
	if !g.deployments {
		return nil
	}
	return g.deploymentStatus(ctx, s)
}

// deploymentStatus moves the deployment of s's environment and commit to
// s's state, creating the deployment first unless it is being retired.
func (g *githubClient) deploymentStatus(ctx context.Context, s Status) error {
	id, err := g.deployment(ctx, s, s.State != StateInactive)
	if err != nil || id == 0 {
		return err
	}
	state := string(s.State)
	if s.State == StatePending {
		state = "in_progress"
	}
	body := map[string]any{"state": state, "description": s.Description, "auto_inactive": true}
	if s.URL != "" {
		body["environment_url"] = s.URL
	}
	path := "/repos/" + g.api.repo + "/deployments/" + strconv.FormatInt(id, 10) + "/statuses"
	return g.api.do(ctx, http.MethodPost, path, s.Commit, body, nil, g.auth)
}

// deployment returns the id of the deployment of s's environment at
// s.Commit: remembered, else looked up (the agent restarted), else
// created when create is set (0 when not found and not created).
func (g *githubClient) deployment(ctx context.Context, s Status, create bool) (int64, error) {
	k := s.Environment + "\x00" + s.Commit
	g.mu.Lock()
	id := g.ids[k]
	g.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	var found []struct {
		ID int64 `json:"id"`
	}
	q := url.Values{"environment": {s.Environment}, "per_page": {"1"}}
	if s.Commit != "" {
		q.Set("sha", s.Commit)
	}
	if err := g.api.do(ctx, http.MethodGet, "/repos/"+g.api.repo+"/deployments?"+q.Encode(), s.Commit, nil, &found, g.auth); err != nil {
		return 0, err
	}
	if len(found) > 0 {
		id = found[0].ID
	} else if create {
		var made struct {
			ID      int64  `json:"id"`
			Message string `json:"message"`
		}
		body := map[string]any{
			"ref": s.Commit, "environment": s.Environment, "auto_merge": false,
			"required_contexts": []string{}, "description": "lockstep: " + s.Environment,
			"transient_environment": s.Review, "production_environment": s.Environment == "production",
		}
		if err := g.api.do(ctx, http.MethodPost, "/repos/"+g.api.repo+"/deployments", s.Commit, body, &made, g.auth); err != nil {
			return 0, err
		}
		if made.ID == 0 {
			// 202: GitHub merged the default branch into the ref instead.
			return 0, &APIError{Forge: g.api.kind, Repository: g.api.repo, Commit: reconcile.Short(s.Commit),
				Status: http.StatusAccepted, Message: "no deployment created: " + made.Message}
		}
		id = made.ID
	}
	if id != 0 && s.Commit != "" {
		g.mu.Lock()
		g.ids[k] = id
		g.mu.Unlock()
	}
	return id, nil
}

// gitlabClient posts GitLab commit statuses ("external jobs").
type gitlabClient struct{ api *apiClient }

func (g *gitlabClient) auth(h http.Header) { h.Set("PRIVATE-TOKEN", g.api.token) }

// gitlabState maps a state to GitLab's: an apply that started is a job
// that runs; GitLab has no "error" apart from failed.
func gitlabState(s State) string {
	switch s {
	case StatePending:
		return "running"
	case StateSuccess:
		return "success"
	}
	return "failed"
}

func (g *gitlabClient) post(ctx context.Context, s Status, statusContext string) error {
	if s.State == StateInactive {
		return nil // commit statuses have no retired state
	}
	body := map[string]string{"state": gitlabState(s.State), "name": statusContext, "description": s.Description}
	if s.URL != "" {
		body["target_url"] = s.URL
	}
	path := "/projects/" + url.PathEscape(g.api.repo) + "/statuses/" + s.Commit
	err := g.api.do(ctx, http.MethodPost, path, s.Commit, body, nil, g.auth)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Message, "Cannot transition status") {
		// The status is already in this state (a retry whose first
		// attempt went through): GitLab refuses the same transition twice.
		return nil
	}
	return err
}

// giteaClient posts Gitea and Forgejo commit statuses.
type giteaClient struct{ api *apiClient }

func (g *giteaClient) auth(h http.Header) { h.Set("Authorization", "token "+g.api.token) }

func (g *giteaClient) post(ctx context.Context, s Status, statusContext string) error {
	if s.State == StateInactive {
		return nil // commit statuses have no retired state
	}
	body := map[string]string{"state": string(s.State), "context": statusContext, "description": s.Description}
	if s.URL != "" {
		body["target_url"] = s.URL
	}
	return g.api.do(ctx, http.MethodPost, "/repos/"+g.api.repo+"/statuses/"+s.Commit, s.Commit, body, nil, g.auth)
}
