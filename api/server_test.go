package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

func serve(t *testing.T, h http.Handler, method, target string, body io.Reader, contentType string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// jsonError returns the "error" of a JSON error answer, failing if the
// answer is not one.
func jsonError(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (body %q)", ct, rec.Body.String())
	}
	var e api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", rec.Body.String(), err)
	}
	return e.Error
}

func TestRoutes(t *testing.T) {
	cases := []struct {
		name        string
		method      string
		target      string
		body        string
		contentType string
		syncErr     error
		wantCode    int
		wantErr     string // substring of the JSON error; "" when the answer is not an error
		wantSyncs   []string
		check       func(t *testing.T, body []byte)
	}{
		{name: "status", method: "GET", target: "/v1/status", wantCode: 200, check: func(t *testing.T, body []byte) {
			var r api.StatusResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Environments) != 2 || r.Environments[0].Running != sha('a') || r.Environments[1].LastError == "" {
				t.Errorf("status %+v", r)
			}
		}},
		{name: "status HEAD", method: "HEAD", target: "/v1/status", wantCode: 200},
		{name: "status POST", method: "POST", target: "/v1/status", wantCode: 405, wantErr: "use GET"},
		{name: "history", method: "GET", target: "/v1/history?env=staging&limit=2", wantCode: 200, check: func(t *testing.T, body []byte) {
			var r api.HistoryResponse
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Environment != "staging" || len(r.Passes) != 2 || r.Passes[0].ID != "p3" {
				t.Errorf("history %+v", r)
			}
		}},
		{name: "history of an environment without passes is an empty list", method: "GET", target: "/v1/history?env=production", wantCode: 200, check: func(t *testing.T, body []byte) {
			if !strings.Contains(string(body), `"passes":[]`) {
				t.Errorf("body %s, want passes []", body)
			}
		}},
		{name: "history unknown env", method: "GET", target: "/v1/history?env=qa", wantCode: 404, wantErr: `unknown environment "qa"`},
		{name: "history without env", method: "GET", target: "/v1/history", wantCode: 400, wantErr: "env query parameter is required"},
		{name: "history limit not a number", method: "GET", target: "/v1/history?env=staging&limit=ten", wantCode: 400, wantErr: `got "ten"`},
		{name: "history limit zero", method: "GET", target: "/v1/history?env=staging&limit=0", wantCode: 400, wantErr: "limit"},
		{name: "history limit too large", method: "GET", target: "/v1/history?env=staging&limit=1001", wantCode: 400, wantErr: "1 to 1000"},
		{name: "sync one", method: "POST", target: "/v1/sync?env=production", wantCode: 202, wantSyncs: []string{"production/sync"}, check: func(t *testing.T, body []byte) {
			if strings.TrimSpace(string(body)) != `{"queued":["production"]}` {
				t.Errorf("body %s", body)
			}
		}},
		{name: "sync one by form", method: "POST", target: "/v1/sync", body: "env=staging", contentType: "application/x-www-form-urlencoded", wantCode: 202, wantSyncs: []string{"staging/sync"}},
		{name: "sync all", method: "POST", target: "/v1/sync", wantCode: 202, wantSyncs: []string{"staging/sync", "production/sync"}, check: func(t *testing.T, body []byte) {
			if strings.TrimSpace(string(body)) != `{"queued":["staging","production"]}` {
				t.Errorf("body %s", body)
			}
		}},
		{name: "sync unknown env", method: "POST", target: "/v1/sync?env=qa", wantCode: 404, wantErr: `unknown environment "qa"`},
		{name: "sync agent failure", method: "POST", target: "/v1/sync?env=staging", syncErr: errWedged, wantCode: 500, wantErr: "sync staging: the agent is shutting down"},
		{name: "sync GET", method: "GET", target: "/v1/sync", wantCode: 405, wantErr: "use POST"},
		{name: "sync body over the bound", method: "POST", target: "/v1/sync", body: "env=" + strings.Repeat("x", 2<<20), contentType: "application/x-www-form-urlencoded", wantCode: 413, wantErr: "too large"},
		{name: "unknown path", method: "GET", target: "/v2/status", wantCode: 404, wantErr: "no such endpoint /v2/status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			agent := newFakeAgent()
			agent.syncErr = c.syncErr
			h := api.NewServer(agent, nil, zerolog.Nop()).Handler()
			rec := serve(t, h, c.method, c.target, strings.NewReader(c.body), c.contentType)
			if rec.Code != c.wantCode {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, c.wantCode, rec.Body.String())
			}
			if c.wantErr != "" {
				if msg := jsonError(t, rec); !strings.Contains(msg, c.wantErr) {
					t.Errorf("error %q, want it to contain %q", msg, c.wantErr)
				}
			} else if c.method != "HEAD" && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
			if got := agent.syncCalls(); !reflect.DeepEqual(got, c.wantSyncs) {
				t.Errorf("Sync calls %v, want %v", got, c.wantSyncs)
			}
			if c.check != nil {
				c.check(t, rec.Body.Bytes())
			}
		})
	}
}

func TestHistoryDefaultLimit(t *testing.T) {
	agent := newFakeAgent()
	h := api.NewServer(agent, nil, zerolog.Nop()).Handler()
	if rec := serve(t, h, "GET", "/v1/history?env=staging", nil, ""); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if !reflect.DeepEqual(agent.limits, []int{api.DefaultHistoryLimit}) {
		t.Errorf("History asked for limits %v, want [%d]", agent.limits, api.DefaultHistoryLimit)
	}
}

func TestStatusWithoutEnvironmentsIsAnEmptyList(t *testing.T) {
	agent := newFakeAgent()
	agent.envs = nil
	rec := serve(t, api.NewServer(agent, nil, zerolog.Nop()).Handler(), "GET", "/v1/status", nil, "")
	if got := strings.TrimSpace(rec.Body.String()); got != `{"environments":[]}` {
		t.Errorf("body %s, want an empty list", got)
	}
}

// TestStatusCarriesTheStateDirSize: with a measure set, the status answer
// has the state dir's size; a measure that fails leaves it out, and the
// status is answered all the same.
func TestStatusCarriesTheStateDirSize(t *testing.T) {
	agent := newFakeAgent()
	srv := api.NewServer(agent, nil, zerolog.Nop())
	srv.DiskUsage = func(context.Context) (gitsource.DiskUsage, error) {
		return gitsource.DiskUsage{GitBytes: 1 << 20, ReleasesBytes: 3 << 20, Releases: 2, OtherBytes: 4096}, nil
	}
	rec := serve(t, srv.Handler(), "GET", "/v1/status", nil, "")
	if !strings.Contains(rec.Body.String(), `"state_dir":{"git_bytes":1048576,"releases_bytes":3145728,"releases":2,"other_bytes":4096}`) {
		t.Errorf("body %s lacks the state dir", rec.Body.String())
	}
	srv.DiskUsage = func(context.Context) (gitsource.DiskUsage, error) {
		return gitsource.DiskUsage{}, errors.New("walk: permission denied")
	}
	rec = serve(t, srv.Handler(), "GET", "/v1/status", nil, "")
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "state_dir") {
		t.Errorf("failed measure: %d %s, want 200 without state_dir", rec.Code, rec.Body.String())
	}
}

func TestHealthz(t *testing.T) {
	agent := newFakeAgent()
	h := api.NewServer(agent, nil, zerolog.Nop()).Handler()

	rec := serve(t, h, "GET", "/healthz", nil, "")
	if rec.Code != http.StatusServiceUnavailable || strings.TrimSpace(rec.Body.String()) != "starting" {
		t.Errorf("before the first pass: %d %q, want 503 starting", rec.Code, rec.Body.String())
	}
	agent.readyVal.Store(true)
	rec = serve(t, h, "GET", "/healthz", nil, "")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("after the first pass: %d %q, want 200 ok", rec.Code, rec.Body.String())
	}
	if rec := serve(t, h, "DELETE", "/healthz", nil, ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /healthz: %d, want 405", rec.Code)
	}
}

func TestMetricsRoute(t *testing.T) {
	agent := newFakeAgent()
	if rec := serve(t, api.NewServer(agent, nil, zerolog.Nop()).Handler(), "GET", "/metrics", nil, ""); rec.Code != http.StatusNotFound {
		t.Errorf("/metrics without Metrics: %d, want 404", rec.Code)
	}
	h := api.NewServer(agent, api.NewMetrics(agent), zerolog.Nop()).Handler()
	rec := serve(t, h, "GET", "/metrics", nil, "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "# TYPE lockstep_passes_total counter") {
		t.Errorf("/metrics: %d\n%s", rec.Code, rec.Body.String())
	}
	if rec := serve(t, h, "POST", "/metrics", nil, ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", rec.Code)
	}
}
