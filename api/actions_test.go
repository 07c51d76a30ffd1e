package api_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
)

func TestRetryAndRollbackRoutes(t *testing.T) {
	cases := []struct {
		name        string
		method      string
		target      string
		body        string
		contentType string
		wantCode    int
		wantErr     string
		wantBody    string
		wantCalls   []string
	}{
		{name: "retry", method: "POST", target: "/v1/retry?env=production", wantCode: 202,
			wantBody: `{"environment":"production","queued":"retry"}`, wantCalls: []string{"retry/production"}},
		{name: "retry by form", method: "POST", target: "/v1/retry", body: "env=staging", contentType: "application/x-www-form-urlencoded",
			wantCode: 202, wantCalls: []string{"retry/staging"}},
		{name: "retry unknown env", method: "POST", target: "/v1/retry?env=qa", wantCode: 404, wantErr: `retry qa: unknown environment "qa"`},
		{name: "retry without env", method: "POST", target: "/v1/retry", wantCode: 400, wantErr: "retry: the env parameter is required"},
		{name: "retry GET", method: "GET", target: "/v1/retry?env=staging", wantCode: 405, wantErr: "use POST"},
		{name: "rollback", method: "POST", target: "/v1/rollback?env=production", wantCode: 202,
			wantBody: `{"environment":"production","queued":"rollback"}`, wantCalls: []string{"rollback/production"}},
		{name: "rollback with nothing to roll back to", method: "POST", target: "/v1/rollback?env=staging", wantCode: 409,
			wantErr: "rollback staging: environment staging has no healthy revision to roll back to"},
		{name: "rollback unknown env", method: "POST", target: "/v1/rollback?env=qa", wantCode: 404, wantErr: `unknown environment "qa"`},
		{name: "rollback without env", method: "POST", target: "/v1/rollback", wantCode: 400, wantErr: "rollback: the env parameter is required"},
		{name: "rollback body over the bound", method: "POST", target: "/v1/rollback", body: "env=" + strings.Repeat("x", 2<<20),
			contentType: "application/x-www-form-urlencoded", wantCode: 413, wantErr: "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			agent := newFakeAgent()
			agent.nothingToRollBack = map[string]bool{"staging": true}
			h := api.NewServer(agent, nil, zerolog.Nop()).Handler()
			rec := serve(t, h, c.method, c.target, strings.NewReader(c.body), c.contentType)
			if rec.Code != c.wantCode {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, c.wantCode, rec.Body.String())
			}
			if c.wantErr != "" {
				if msg := jsonError(t, rec); !strings.Contains(msg, c.wantErr) {
					t.Errorf("error %q, want it to contain %q", msg, c.wantErr)
				}
			}
			if c.wantBody != "" && strings.TrimSpace(rec.Body.String()) != c.wantBody {
				t.Errorf("body %s, want %s", rec.Body.String(), c.wantBody)
			}
			if got := agent.actionCalls(); !reflect.DeepEqual(got, c.wantCalls) {
				t.Errorf("agent calls %v, want %v", got, c.wantCalls)
			}
		})
	}
}

func TestClientRetryAndRollback(t *testing.T) {
	path := socketDir(t) + "/lockstep.sock"
	agent := newFakeAgent()
	agent.nothingToRollBack = map[string]bool{"staging": true}
	startUnix(t, agent, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := api.NewClient(path, "")

	if err := c.Retry(ctx, "production"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rollback(ctx, "production"); err != nil {
		t.Fatal(err)
	}
	if got := agent.actionCalls(); !reflect.DeepEqual(got, []string{"retry/production", "rollback/production"}) {
		t.Fatalf("agent calls %v", got)
	}
	var se *api.ServerError
	err := c.Rollback(ctx, "staging")
	if !errors.As(err, &se) || !se.Conflict() || se.NotFound() || !strings.HasPrefix(err.Error(), "rollback staging: lockstep agent: ") {
		t.Fatalf("rollback with nothing to roll back to: %v", err)
	}
	err = c.Retry(ctx, "qa")
	if !errors.As(err, &se) || !se.NotFound() || se.Conflict() {
		t.Fatalf("retry of an unknown environment: %v", err)
	}
}
