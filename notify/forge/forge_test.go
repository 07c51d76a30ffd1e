package forge

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

const (
	commitA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
	commitB = "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5"
)

// syncBuffer is a log sink tests read while Run writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newReporter makes a Reporter for kind at api with a token file, no
// waiting between attempts, and its log in the returned buffer.
func newReporter(t *testing.T, kind, api, repo string, opts Options) (*Reporter, *syncBuffer) {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts.Log = zerolog.New(logs)
	if opts.Sleep == nil {
		opts.Sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	}
	r, err := New(Settings{Kind: kind, APIURL: api, TokenFile: tok, Repository: repo,
		Context: "lockstep/{environment}@{host}", Host: "web-1", Deployments: kind == KindGitHub}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

// sendAll posts what Report queued, the way Run does, and fails on none.
func sendAll(t *testing.T, r *Reporter) {
	t.Helper()
	for {
		select {
		case s := <-r.queue:
			if err := r.Send(context.Background(), s); err != nil {
				t.Fatalf("send %+v: %v", s, err)
			}
		default:
			return
		}
	}
}

func TestGitHubStatusesAndDeployments(t *testing.T) {
	api, srv := newGitHubAPI(t, "acme/app")
	r, _ := newReporter(t, KindGitHub, srv.URL, "acme/app", Options{Environment: func(name string) EnvInfo {
		if name == "review-pr-7" {
			return EnvInfo{URL: "https://pr-7.review.example.com", Review: true}
		}
		return EnvInfo{}
	}})
	r.Started("review-pr-7", commitA)
	r.Passed(reconcile.PassRecord{Environment: "review-pr-7", Commit: commitA, Result: reconcile.ResultApplied})
	r.TornDown("review-pr-7", commitA)
	r.Started("production", commitB)
	sendAll(t, r)
	// A teardown that does not know the commit retires the environment's
	// newest deployment.
	r.TornDown("production", "")
	sendAll(t, r)

	var got []string
	for _, q := range api.requests() {
		line := q.Method + " " + q.Path + " " + str(q.Body, "state")
		got = append(got, strings.TrimSpace(line))
	}
	want := []string{
		"POST /repos/acme/app/statuses/" + commitA + " pending",
		"GET /repos/acme/app/deployments?environment=review-pr-7&per_page=1&sha=" + commitA,
		"POST /repos/acme/app/deployments",
		"POST /repos/acme/app/deployments/100/statuses in_progress",
		"POST /repos/acme/app/statuses/" + commitA + " success",
		"POST /repos/acme/app/deployments/100/statuses success",
		"POST /repos/acme/app/deployments/100/statuses inactive", // no commit status: it has no such state
		"POST /repos/acme/app/statuses/" + commitB + " pending",
		"GET /repos/acme/app/deployments?environment=production&per_page=1&sha=" + commitB,
		"POST /repos/acme/app/deployments",
		"POST /repos/acme/app/deployments/101/statuses in_progress",
		"GET /repos/acme/app/deployments?environment=production&per_page=1",
		"POST /repos/acme/app/deployments/101/statuses inactive",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	reqs := api.requests()
	st := reqs[0].Body
	if st["context"] != "lockstep/review-pr-7@web-1" || st["target_url"] != "https://pr-7.review.example.com" ||
		st["description"] != "deploying to review-pr-7 on web-1" {
		t.Errorf("commit status body: %v", st)
	}
	if d := reqs[2].Body; d["ref"] != commitA || d["environment"] != "review-pr-7" ||
		d["transient_environment"] != true || d["production_environment"] != false {
		t.Errorf("review deployment body: %v", d)
	}
	if d := reqs[5].Body; d["environment_url"] != "https://pr-7.review.example.com" || d["auto_inactive"] != true {
		t.Errorf("deployment status body: %v", d)
	}
	if d := reqs[9].Body; d["transient_environment"] != false || d["production_environment"] != true {
		t.Errorf("production deployment body: %v", d)
	}
	if _, ok := reqs[7].Body["target_url"]; ok {
		t.Errorf("a fixed environment without URL sent target_url: %v", reqs[7].Body)
	}
}

// TestGitHubDeploymentFoundAfterRestart: a new agent finds the deployment
// its predecessor created instead of creating another.
func TestGitHubDeploymentFoundAfterRestart(t *testing.T) {
	api, srv := newGitHubAPI(t, "acme/app")
	first, _ := newReporter(t, KindGitHub, srv.URL, "acme/app", Options{})
	first.Started("staging", commitA)
	sendAll(t, first)
	second, _ := newReporter(t, KindGitHub, srv.URL, "acme/app", Options{})
	second.Passed(reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultApplied})
	sendAll(t, second)
	creates := 0
	for _, q := range api.requests() {
		if q.Method == "POST" && q.Path == "/repos/acme/app/deployments" {
			creates++
		}
	}
	last := api.requests()[len(api.requests())-1]
	if creates != 1 || last.Path != "/repos/acme/app/deployments/100/statuses" || str(last.Body, "state") != "success" {
		t.Fatalf("%d deployments created; last request %+v", creates, last)
	}
}

func TestGitLabStatuses(t *testing.T) {
	api, srv := newGitLabAPI(t, "acme/platform/app")
	r, _ := newReporter(t, KindGitLab, srv.URL+"/api/v4", "acme/platform/app", Options{})
	r.Started("staging", commitA)
	r.Passed(reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultRolledBack,
		Service: "web", Error: "unhealthy: health check failed 3 times", RolledBackTo: commitB})
	sendAll(t, r)
	reqs := api.requests()
	if len(reqs) != 3 {
		t.Fatalf("requests: %+v", reqs)
	}
	path := "/api/v4/projects/acme%2Fplatform%2Fapp/statuses/"
	for i, want := range []struct{ sha, state, desc string }{
		{commitA, "running", "deploying to staging on web-1"},
		{commitA, "failed", "rolled back to 4d2e1aa0c3b2: web failed the health gate on staging on web-1: unhealthy: health check failed 3 times"},
		{commitB, "success", "running again on staging on web-1 (rolled back from 9fceb02d0ae5)"},
	} {
		q := reqs[i]
		if q.Path != path+want.sha || str(q.Body, "state") != want.state || str(q.Body, "name") != "lockstep/staging@web-1" || str(q.Body, "description") != want.desc {
			t.Errorf("request %d: %s %v\nwant %s%s %s %q", i, q.Path, q.Body, path, want.sha, want.state, want.desc)
		}
	}
}

// TestGitLabSameTransitionIsDone: GitLab refuses a status already in the
// state posted (a retry whose first attempt went through); that is done,
// not an error.
func TestGitLabSameTransitionIsDone(t *testing.T) {
	_, srv := newGitLabAPI(t, "acme/app")
	r, _ := newReporter(t, KindGitLab, srv.URL+"/api/v4", "acme/app", Options{})
	s := Status{Environment: "staging", Commit: commitA, State: StateSuccess, Description: "deployed"}
	for range 2 {
		if err := r.Send(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGiteaStatuses(t *testing.T) {
	for _, kind := range []string{KindGitea, KindForgejo} {
		api, srv := newGiteaAPI(t, "me/app")
		r, _ := newReporter(t, kind, srv.URL+"/api/v1", "me/app", Options{})
		r.Passed(reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultFailed,
			Class: reconcile.ClassEngine, Error: "pull web: registry unreachable\nmore"})
		r.TornDown("staging", commitA) // commit statuses have no inactive: nothing sent
		sendAll(t, r)
		reqs := api.requests()
		if len(reqs) != 1 {
			t.Fatalf("%s requests: %+v", kind, reqs)
		}
		b := reqs[0].Body
		if reqs[0].Path != "/api/v1/repos/me/app/statuses/"+commitA || b["state"] != "error" || b["context"] != "lockstep/staging@web-1" ||
			b["description"] != "failed on staging on web-1: pull web: registry unreachable" {
			t.Errorf("%s: %s %v", kind, reqs[0].Path, b)
		}
	}
}

// TestAPIErrorNamesWhatFailedNotTheToken: a refusal names the forge, the
// repository, the commit and the HTTP status with the forge's message, is
// not retried, and never holds the token even when the forge echoes it.
func TestAPIErrorNamesWhatFailedNotTheToken(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	api.fail = []func(http.ResponseWriter){func(w http.ResponseWriter) {
		writeJSON(w, 403, map[string]string{"message": "user does not have permission (token " + testToken + ")"})
	}}
	r, logs := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{})
	err := r.Send(context.Background(), Status{Environment: "staging", Commit: commitA, State: StateSuccess})
	if err == nil {
		t.Fatal("no error")
	}
	want := "gitea me/app@9fceb02d0ae5: HTTP 403 Forbidden: user does not have permission (token REDACTED)"
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	if n := len(api.requests()); n != 1 {
		t.Errorf("a 403 was tried %d times", n)
	}
	r.post(context.Background(), Status{Environment: "staging", Commit: commitB, State: StateSuccess})
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("token logged: %s", logs)
	}
}

// TestBadTokenIsReported: GitHub's answer to a wrong token.
func TestBadTokenIsReported(t *testing.T) {
	_, srv := newGitHubAPI(t, "acme/app")
	r, _ := newReporter(t, KindGitHub, srv.URL, "acme/app", Options{})
	r.client.(*githubClient).api.token = "wrong"
	err := r.Send(context.Background(), Status{Environment: "staging", Commit: commitA, State: StateSuccess})
	if err == nil || err.Error() != "github acme/app@9fceb02d0ae5: HTTP 401 Unauthorized: Bad credentials" {
		t.Fatalf("error: %v", err)
	}
}

func TestRetriesWithBackoffThenSucceeds(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	unavailable := func(w http.ResponseWriter) { writeJSON(w, 503, map[string]string{"message": "try later"}) }
	api.fail = []func(http.ResponseWriter){unavailable, unavailable}
	var delays []time.Duration
	r, logs := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{
		Backoff: reconcile.Backoff{Rand: func(n time.Duration) time.Duration { return n - 1 }},
		Sleep:   func(ctx context.Context, d time.Duration) error { delays = append(delays, d); return nil },
	})
	if err := r.Send(context.Background(), Status{Environment: "staging", Commit: commitA, State: StateSuccess}); err != nil {
		t.Fatal(err)
	}
	if len(api.requests()) != 3 || len(delays) != 2 || delays[0] >= delays[1] || delays[1] > DefaultBackoffMax {
		t.Fatalf("%d requests, delays %v", len(api.requests()), delays)
	}
	if !strings.Contains(logs.String(), "retrying") || !strings.Contains(logs.String(), "HTTP 503") {
		t.Errorf("retries not logged: %s", logs)
	}
}

func TestGivesUpAfterTheLastAttempt(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	for range 10 {
		api.fail = append(api.fail, func(w http.ResponseWriter) { w.WriteHeader(502) })
	}
	r, _ := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{Attempts: 3})
	err := r.Send(context.Background(), Status{Environment: "staging", Commit: commitA, State: StateSuccess})
	if err == nil || !strings.Contains(err.Error(), "HTTP 502") || len(api.requests()) != 3 {
		t.Fatalf("err %v after %d requests", err, len(api.requests()))
	}
}

// TestReportNeverBlocks: with the forge stuck and the queue full, Report
// returns at once and drops with an error log.
func TestReportNeverBlocks(t *testing.T) {
	r, logs := newReporter(t, KindGitea, "http://127.0.0.1:1/api/v1", "me/app", Options{QueueSize: 2})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5 {
			r.Report(Status{Environment: "staging", Commit: strings.Repeat(string(rune('a'+i)), 40), State: StateSuccess})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Report blocked")
	}
	if n := strings.Count(logs.String(), "queue full"); n != 3 {
		t.Errorf("%d drops logged, want 3:\n%s", n, logs)
	}
}

// TestRepeatedStatusIsNotPostedAgain: the same state of the same commit
// (a drift repair, a failure retried by the agent) is posted once.
func TestRepeatedStatusIsNotPostedAgain(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	r, _ := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{})
	rec := reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultApplied}
	r.Passed(rec)
	r.Passed(rec)
	r.Passed(reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultNoop})
	sendAll(t, r)
	if n := len(api.requests()); n != 1 {
		t.Fatalf("%d posts", n)
	}
}

// TestRunFlushesOnShutdown: what is queued when the agent stops is still
// posted, within Flush; a forge that hangs does not hold the shutdown.
func TestRunFlushesOnShutdown(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	r, _ := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{})
	r.Report(Status{Environment: "staging", Commit: commitA, State: StatePending})
	r.Report(Status{Environment: "staging", Commit: commitA, State: StateSuccess})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	if n := len(api.requests()); n != 2 {
		t.Fatalf("%d of 2 queued statuses posted on shutdown", n)
	}

	release := make(chan struct{})
	hang := httptestHanging(t, release)
	r2, logs := newReporter(t, KindGitea, hang, "me/app", Options{Flush: 200 * time.Millisecond})
	r2.Report(Status{Environment: "staging", Commit: commitA, State: StateSuccess})
	r2.Report(Status{Environment: "staging", Commit: commitB, State: StateSuccess})
	start := time.Now()
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	r2.Run(ctx2)
	close(release)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s with Flush 200ms", took)
	}
	if !strings.Contains(logs.String(), "dropped") && !strings.Contains(logs.String(), "not posted") {
		t.Errorf("lost statuses not logged: %s", logs)
	}
}

// httptestHanging is a server that answers nothing until release closes.
func httptestHanging(t *testing.T, release chan struct{}) string {
	_, srv := newGiteaAPI(t, "x/y")
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	return srv.URL
}

func TestStatusesOfPassRecords(t *testing.T) {
	r := &Reporter{host: "web-1"}
	tests := []struct {
		name string
		rec  reconcile.PassRecord
		want []string // state commit description
	}{
		{"applied", reconcile.PassRecord{Result: reconcile.ResultApplied, Commit: commitA},
			[]string{"success 9fceb02d0ae5 deployed to prod on web-1"}},
		{"noop", reconcile.PassRecord{Result: reconcile.ResultNoop, Commit: commitA}, nil},
		{"paused", reconcile.PassRecord{Result: reconcile.ResultPaused, Commit: commitA}, nil},
		{"git failure", reconcile.PassRecord{Result: reconcile.ResultFailed, Class: reconcile.ClassGit, Commit: commitA, Error: "fetch: timeout"}, nil},
		{"no commit", reconcile.PassRecord{Result: reconcile.ResultFailed, Class: reconcile.ClassPermanent, Error: "bad pin"}, nil},
		{"load failure", reconcile.PassRecord{Result: reconcile.ResultFailed, Class: reconcile.ClassPermanent, Commit: commitA, Error: "load prod: compose.yaml: services.web.image: required"},
			[]string{"error 9fceb02d0ae5 failed on prod on web-1: load prod: compose.yaml: services.web.image: required"}},
		{"gate, no rollback", reconcile.PassRecord{Result: reconcile.ResultFailed, Class: reconcile.ClassHealth, Commit: commitA, Service: "web", Error: "unhealthy"},
			[]string{"failure 9fceb02d0ae5 not rolled back: web failed the health gate on prod on web-1: unhealthy"}},
		{"rolled back", reconcile.PassRecord{Result: reconcile.ResultRolledBack, Commit: commitA, Service: "web", Error: "exited 1", RolledBackTo: commitB},
			[]string{"failure 9fceb02d0ae5 rolled back to 4d2e1aa0c3b2: web failed the health gate on prod on web-1: exited 1",
				"success 4d2e1aa0c3b2 running again on prod on web-1 (rolled back from 9fceb02d0ae5)"}},
		{"lockstep rollback", reconcile.PassRecord{Result: reconcile.ResultRolledBack, Trigger: reconcile.TriggerRollback, Commit: commitA, RolledBackTo: commitB},
			[]string{"failure 9fceb02d0ae5 held back by lockstep rollback on prod on web-1: 4d2e1aa0c3b2 runs instead",
				"success 4d2e1aa0c3b2 running again on prod on web-1 (rolled back from 9fceb02d0ae5)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rec.Environment = "prod"
			var got []string
			for _, s := range r.Statuses(tt.rec) {
				got = append(got, string(s.State)+" "+reconcile.Short(s.Commit)+" "+s.Description)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDescriptionFitsGitHub(t *testing.T) {
	d := trimDescription(strings.Repeat("é", 300) + "\nsecond line")
	if n := len([]rune(d)); n != maxDescription || !strings.HasSuffix(d, "…") {
		t.Errorf("%d runes: %q", n, d)
	}
}

func TestNewRefusesAMissingOrEmptyToken(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	for _, f := range []string{filepath.Join(dir, "missing"), empty} {
		_, err := New(Settings{Kind: KindGitea, APIURL: "http://x/api/v1", TokenFile: f, Repository: "a/b", Context: "c/{environment}", Host: "h"}, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), "token_file: ") {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// A nil Reporter ([forge] not configured) does nothing, safely.
func TestNilReporter(t *testing.T) {
	var r *Reporter
	r.Started("a", commitA)
	r.Passed(reconcile.PassRecord{Environment: "a", Commit: commitA, Result: reconcile.ResultApplied})
	r.TornDown("a", commitA)
	r.Run(context.Background())
	if err := r.Send(context.Background(), Status{}); err != nil {
		t.Fatal(err)
	}
}

// TestLostStatusIsTriedAgain: a status the forge never took is forgotten,
// so the next pass that reports the same state posts it again.
func TestLostStatusIsTriedAgain(t *testing.T) {
	api, srv := newGiteaAPI(t, "me/app")
	api.fail = []func(http.ResponseWriter){func(w http.ResponseWriter) { w.WriteHeader(500) }}
	r, _ := newReporter(t, KindGitea, srv.URL+"/api/v1", "me/app", Options{Attempts: 1})
	rec := reconcile.PassRecord{Environment: "staging", Commit: commitA, Result: reconcile.ResultApplied}
	r.Passed(rec)
	r.post(context.Background(), <-r.queue)
	r.Passed(rec)
	sendAll(t, r)
	if n := len(api.requests()); n != 2 {
		t.Fatalf("%d posts, want the lost one and its retry", n)
	}
}
