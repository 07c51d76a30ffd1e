package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/rs/zerolog"
)

// guard bounds every wait on another goroutine so a broken Notifier fails
// the test instead of hanging it. It is never what a test asserts on.
const guard = 30 * time.Second

// logBuffer collects zerolog output written from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the decoded log lines whose message contains msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if s, _ := m["message"].(string); strings.Contains(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

type received struct {
	path, method, contentType, userAgent string
	body                                 []byte
}

// server is an httptest server that records every request and answers
// with the statuses of respond in turn (the last one repeats). A status of
// 0 hangs until the client gives up or the test ends.
type server struct {
	*httptest.Server
	reqs chan received

	mu      sync.Mutex
	respond []response
	count   int
}

type response struct {
	status     int
	retryAfter string
	body       string
}

func newServer(t *testing.T, respond ...response) *server {
	t.Helper()
	s := &server{reqs: make(chan received, 100), respond: respond}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		i := min(s.count, len(s.respond)-1)
		s.count++
		resp := response{status: http.StatusOK}
		if i >= 0 {
			resp = s.respond[i]
		}
		s.mu.Unlock()
		s.reqs <- received{r.URL.Path, r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), body}
		if resp.status == 0 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		if resp.retryAfter != "" {
			w.Header().Set("Retry-After", resp.retryAfter)
		}
		w.WriteHeader(resp.status)
		fmt.Fprint(w, resp.body)
	}))
	// Cleanups run last-in first-out: release hanging handlers, then close.
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) })
	return s
}

func (s *server) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// next waits for the next request the server receives.
func (s *server) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-s.reqs:
		return r
	case <-time.After(guard):
		t.Fatalf("no request reached the server within %s", guard)
		return received{}
	}
}

func urlFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// recordSleep returns a Sleep that does not wait and the delays it was
// asked for.
func recordSleep() (func(context.Context, time.Duration) error, func() []time.Duration) {
	var mu sync.Mutex
	var got []time.Duration
	return func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, d)
			return ctx.Err()
		}, func() []time.Duration {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}
}

func newNotifier(t *testing.T, targets []Target, opts Options) (*Notifier, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	opts.Log = zerolog.New(logs)
	if opts.Host == "" {
		opts.Host = "web-1"
	}
	if opts.Sleep == nil {
		opts.Sleep, _ = recordSleep()
	}
	n, err := New(targets, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n, logs
}

// run starts n.Run and stops it (waiting for it to return) at cleanup.
func run(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(guard):
			t.Errorf("Run did not return within %s of its context being cancelled", guard)
		}
	})
}

func exampleEvent() Event {
	return Event{
		Kind:        reconcile.EventRollback,
		Environment: "production",
		Project:     "shop",
		Commit:      "9fceb02d0ae598e95dc970b74767f19372d61af8",
		Previous:    "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5",
		Service:     "web",
		Reason:      "unhealthy: health check failed 3 times",
		Logs:        []string{"listening on :8080", "panic: connect to database: connection refused"},
		Host:        "web-1",
		Time:        time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

// The README shows BodyExample; it must be exactly what Event encodes to.
func TestBodyExampleIsTheEventEncoding(t *testing.T) {
	got, err := json.MarshalIndent(exampleEvent(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != BodyExample {
		t.Errorf("BodyExample is out of date; Event encodes to\n%s", got)
	}
}

func TestWebhookPostsTheEventAsJSON(t *testing.T) {
	srv := newServer(t)
	n, _ := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL+"/hook\n")}},
		Options{Version: "1.2.3"})
	run(t, n)

	n.Notify(exampleEvent())
	got := srv.next(t)
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(BodyExample)); err != nil {
		t.Fatal(err)
	}
	if string(got.body) != want.String() {
		t.Errorf("body:\n got %s\nwant %s", got.body, want.String())
	}
	if got.method != http.MethodPost || got.path != "/hook" {
		t.Errorf("request = %s %s, want POST /hook", got.method, got.path)
	}
	if got.contentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got.contentType)
	}
	if got.userAgent != "lockstep/1.2.3" {
		t.Errorf("User-Agent = %q, want lockstep/1.2.3", got.userAgent)
	}
}

// An event without host, time, or optional fields still carries host and
// time, and leaves the optional fields out.
func TestWebhookFillsHostAndTimeAndOmitsEmpty(t *testing.T) {
	srv := newServer(t)
	n, _ := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL)}},
		Options{Host: "edge-7"})
	run(t, n)

	n.Notify(Event{Kind: reconcile.EventRecovery, Environment: "staging", Commit: "abc"})
	got := srv.next(t)
	var m map[string]any
	if err := json.Unmarshal(got.body, &m); err != nil {
		t.Fatalf("body %s: %v", got.body, err)
	}
	if m["host"] != "edge-7" {
		t.Errorf("host = %v, want edge-7", m["host"])
	}
	ts, _ := m["time"].(string)
	if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || tm.IsZero() || !strings.HasSuffix(ts, "Z") {
		t.Errorf("time = %q, want a non-zero RFC 3339 UTC time", ts)
	}
	for _, k := range []string{"project", "previous", "service", "reason", "logs"} {
		if _, ok := m[k]; ok {
			t.Errorf("empty %q is in the body: %s", k, got.body)
		}
	}
	if got.userAgent != "lockstep" {
		t.Errorf("User-Agent = %q, want lockstep", got.userAgent)
	}
}

func TestSlackPostsAReadableSummary(t *testing.T) {
	srv := newServer(t)
	n, _ := newNotifier(t, []Target{{Kind: KindSlack, URLFile: urlFile(t, "  "+srv.URL+"/services/T/B/X  ")}},
		Options{})
	run(t, n)

	ev := exampleEvent()
	ev.Kind = reconcile.EventFailure
	n.Notify(ev)
	got := srv.next(t)
	var body map[string]string
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body %s: %v", got.body, err)
	}
	if len(body) != 1 {
		t.Errorf("body has keys other than text: %s", got.body)
	}
	text := body["text"]
	for _, want := range []string{
		"production", "9fceb02d0ae5", "web: unhealthy: health check failed 3 times",
		"rolled back to 4d2e1aa0c3b2", "```\nlistening on :8080\npanic: connect to database: connection refused\n```",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text does not contain %q:\n%s", want, text)
		}
	}
	if got.contentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got.contentType)
	}
}

// Each target gets exactly the events it asked for, in order.
func TestEventsFiltering(t *testing.T) {
	srv := newServer(t)
	n, _ := newNotifier(t, []Target{
		{Kind: KindWebhook, URLFile: urlFile(t, srv.URL+"/deploys"), Events: []reconcile.EventKind{reconcile.EventDeploy, reconcile.EventRollback}},
		{Kind: KindWebhook, URLFile: urlFile(t, srv.URL+"/default")}, // failure, rollback, recovery
	}, Options{})

	for _, kind := range []reconcile.EventKind{reconcile.EventFailure, reconcile.EventDeploy, reconcile.EventRecovery, reconcile.EventRollback} {
		n.Notify(Event{Kind: kind, Environment: "production", Commit: string(kind)})
	}
	run(t, n)

	got := map[string][]reconcile.EventKind{}
	// rollback is the last event and both targets want it: once both have
	// it, anything wrongly sent would already have arrived.
	for done := 0; done < 2; {
		r := srv.next(t)
		var ev Event
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatal(err)
		}
		got[r.path] = append(got[r.path], ev.Kind)
		if ev.Kind == reconcile.EventRollback {
			done++
		}
	}
	want := map[string][]reconcile.EventKind{
		"/deploys": {reconcile.EventDeploy, reconcile.EventRollback},
		"/default": {reconcile.EventFailure, reconcile.EventRecovery, reconcile.EventRollback},
	}
	for path, w := range want {
		if !slices.Equal(got[path], w) {
			t.Errorf("%s received %v, want %v", path, got[path], w)
		}
	}
}

func TestDeliveryRetries(t *testing.T) {
	tests := []struct {
		name         string
		respond      []response
		wantRequests int
		wantDelays   []time.Duration
		wantLog      string // message of the final log line
	}{
		{
			name:         "500 then success",
			respond:      []response{{status: 500}, {status: 502}, {status: 200}},
			wantRequests: 3,
			wantDelays:   []time.Duration{time.Second, 2 * time.Second},
			wantLog:      "notification delivered",
		},
		{
			name:         "400 is not retried",
			respond:      []response{{status: 400, body: "invalid_payload"}},
			wantRequests: 1,
			wantLog:      "the endpoint refused it",
		},
		{
			name:         "404 is not retried",
			respond:      []response{{status: 404, body: "no_service"}},
			wantRequests: 1,
			wantLog:      "the endpoint refused it",
		},
		{
			name:         "redirect is not followed",
			respond:      []response{{status: 302}},
			wantRequests: 1,
			wantLog:      "the endpoint refused it",
		},
		{
			name:         "429 honours a short Retry-After",
			respond:      []response{{status: 429, retryAfter: "3"}, {status: 204}},
			wantRequests: 2,
			wantDelays:   []time.Duration{3 * time.Second},
			wantLog:      "notification delivered",
		},
		{
			name:         "a long Retry-After falls back to backoff",
			respond:      []response{{status: 503, retryAfter: "3600"}, {status: 200}},
			wantRequests: 2,
			wantDelays:   []time.Duration{time.Second},
			wantLog:      "notification delivered",
		},
		{
			name:         "gives up after the attempts",
			respond:      []response{{status: 500}},
			wantRequests: 5,
			wantDelays:   []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second},
			wantLog:      "giving up after the last attempt",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.respond...)
			sleep, delays := recordSleep()
			n, logs := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL)}},
				Options{Sleep: sleep})
			n.deliver(context.Background(), n.targets[0], exampleEvent())

			if got := srv.requests(); got != tt.wantRequests {
				t.Errorf("requests = %d, want %d", got, tt.wantRequests)
			}
			if got := delays(); !slices.Equal(got, tt.wantDelays) {
				t.Errorf("delays = %v, want %v", got, tt.wantDelays)
			}
			final := logs.lines(t, tt.wantLog)
			if len(final) != 1 {
				t.Fatalf("want one %q log line, got %d; logs:\n%s", tt.wantLog, len(final), logs)
			}
			if got := final[0]["attempt"]; got != float64(tt.wantRequests) {
				t.Errorf("final log attempt = %v, want %d", got, tt.wantRequests)
			}
		})
	}
}

func TestTimeoutOnHangingServer(t *testing.T) {
	srv := newServer(t, response{status: 0})
	n, logs := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL)}},
		Options{Timeout: 50 * time.Millisecond, Attempts: 2})
	n.deliver(context.Background(), n.targets[0], exampleEvent())

	if got := srv.requests(); got != 2 {
		t.Errorf("requests = %d, want 2 (one per attempt)", got)
	}
	final := logs.lines(t, "giving up")
	if len(final) != 1 {
		t.Fatalf("want one giving-up log line; logs:\n%s", logs)
	}
	if e, _ := final[0]["error"].(string); !strings.Contains(e, "deadline exceeded") && !strings.Contains(e, "Timeout") {
		t.Errorf("error %q does not say it timed out", e)
	}
}

// Notify never waits: with the worker stuck on a hanging endpoint and the
// queue full, further events are dropped and logged.
func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	srv := newServer(t, response{status: 0})
	n, logs := newNotifier(t, []Target{{Kind: KindSlack, URLFile: urlFile(t, srv.URL)}},
		Options{QueueSize: 2, Timeout: time.Hour, Flush: time.Millisecond})
	run(t, n)

	n.Notify(exampleEvent())
	srv.next(t) // the worker is now stuck in that delivery
	for range 5 {
		n.Notify(exampleEvent())
	}
	dropped := logs.lines(t, "queue full")
	if len(dropped) != 3 {
		t.Fatalf("dropped = %d, want 3 (5 events, queue of 2); logs:\n%s", len(dropped), logs)
	}
	if got := dropped[0]["level"]; got != "error" {
		t.Errorf("drop logged at %v, want error", got)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	srv := newServer(t, response{status: 0})
	n, logs := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL)}},
		Options{Timeout: time.Hour, Flush: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	n.Notify(exampleEvent())
	n.Notify(exampleEvent()) // stays queued behind the hanging delivery
	srv.next(t)
	cancel()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("Run did not return within %s of cancel, with a hanging endpoint", guard)
	}
	if len(logs.lines(t, "agent shutting down")) != 1 {
		t.Errorf("the aborted delivery was not logged; logs:\n%s", logs)
	}
	if len(logs.lines(t, "shutdown flush time is over")) != 1 {
		t.Errorf("the event left in the queue was not logged as dropped; logs:\n%s", logs)
	}
}

// Events queued when the agent stops are still delivered.
func TestRunFlushesQueuedEventsOnShutdown(t *testing.T) {
	srv := newServer(t)
	n, logs := newNotifier(t, []Target{{Kind: KindWebhook, URLFile: urlFile(t, srv.URL)}}, Options{})
	n.Notify(exampleEvent())
	n.Notify(exampleEvent())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Run(ctx)
	if got := srv.requests(); got != 2 {
		t.Errorf("requests = %d, want 2; logs:\n%s", got, logs)
	}
}

func TestNilNotifierIgnoresEvents(t *testing.T) {
	var n *Notifier
	n.Notify(exampleEvent()) // must not panic: no [[notify]] configured
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-url")
	const secret = "hunter2"
	tests := []struct {
		name      string
		target    Target
		content   string // written to the url file unless target.URLFile is set
		want      string
		namesFile bool // the problem is the file or its content
	}{
		{name: "missing file", target: Target{Kind: KindSlack, URLFile: missing}, want: missing, namesFile: true},
		{name: "empty file", target: Target{Kind: KindSlack}, content: " \n\t", want: "is empty", namesFile: true},
		{name: "no url_file", target: Target{Kind: KindSlack, URLFile: "-"}, want: "url_file is required"},
		{name: "bad kind", target: Target{Kind: "email"}, content: "https://x", want: `kind must be "webhook" or "slack"`},
		{name: "bad event", target: Target{Kind: KindWebhook, Events: []reconcile.EventKind{"failure", "oops"}}, content: "https://x", want: `event "oops" is unknown`},
		{name: "not http", target: Target{Kind: KindWebhook}, content: "ftp://u:" + secret + "@h/" + secret, want: "must hold an http:// or https:// URL", namesFile: true},
		{name: "no host", target: Target{Kind: KindWebhook}, content: "https:///" + secret, want: "must hold an http:// or https:// URL", namesFile: true},
		{name: "unparsable", target: Target{Kind: KindWebhook}, content: "https://u:" + secret + "@[::1/x", want: "does not hold a valid URL", namesFile: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			switch target.URLFile {
			case "":
				target.URLFile = urlFile(t, tt.content)
			case "-":
				target.URLFile = ""
			}
			_, err := New([]Target{target}, Options{Log: zerolog.Nop()})
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the URL's secret", err)
			}
			if tt.namesFile && !strings.Contains(err.Error(), target.URLFile) {
				t.Errorf("error %q does not name the file %s", err, target.URLFile)
			}
		})
	}
}

// New reports every bad target at once.
func TestNewReportsEveryTarget(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	_, err := New([]Target{{Kind: KindSlack, URLFile: a}, {Kind: KindWebhook, URLFile: b}}, Options{})
	if err == nil || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Errorf("error %v does not name both files", err)
	}
}

// No part of a URL that may hold a secret appears in any log line, whatever
// goes wrong: refusals echoing the request, server errors, redirects,
// timeouts, connection failures.
func TestNoSecretInLogs(t *testing.T) {
	const (
		user, pass = "deploybot", "s3cr3tpw"
		path       = "/services/T0001/B0002/XsecretTOKENx"
		query      = "token=hunter2hunter2"
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	secrets := []string{pass, basic, "XsecretTOKENx", "hunter2hunter2", path, query}

	release := make(chan struct{})
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Query().Get("case") {
		case "redirect":
			w.Header().Set("Location", r.URL.String()+"&again=1")
			w.WriteHeader(http.StatusFound)
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		case "hang":
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
		// Some endpoints echo the request in their error body.
		fmt.Fprintf(w, "bad request to %s %s", r.URL.String(), r.Header.Get("Authorization"))
	}))
	t.Cleanup(echo.Close)
	t.Cleanup(func() { close(release) })
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, c := range []struct{ base, kase string }{
		{echo.URL, "400"}, {echo.URL, "500"}, {echo.URL, "redirect"}, {echo.URL, "hang"}, {closedURL, "refused"},
	} {
		t.Run(c.kase, func(t *testing.T) {
			raw := strings.Replace(c.base, "http://", "http://"+user+":"+pass+"@", 1) + path + "?" + query + "&case=" + c.kase
			for _, kind := range []string{KindWebhook, KindSlack} {
				n, logs := newNotifier(t, []Target{{Kind: kind, URLFile: urlFile(t, raw)}},
					Options{Attempts: 2, Timeout: 100 * time.Millisecond})
				n.deliver(context.Background(), n.targets[0], exampleEvent())
				out := logs.String()
				if !strings.Contains(out, "not delivered") {
					t.Fatalf("%s: delivery did not fail as set up; logs:\n%s", kind, out)
				}
				host := strings.TrimPrefix(c.base, "http://")
				if !strings.Contains(out, `"target":"`+kind+" "+host+`"`) {
					t.Errorf("%s: logs do not name the target as kind and host; logs:\n%s", kind, out)
				}
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("%s: logs hold %q:\n%s", kind, s, out)
					}
				}
			}
		})
	}
}
