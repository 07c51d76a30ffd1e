package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(cfg, []byte("greeting=hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unhealthy := filepath.Join(dir, "unhealthy")
	mark := filepath.Join(dir, "marked-unhealthy")
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		env       map[string]string
		unhealthy string
		method    string
		path      string
		body      string
		wantCode  int
		wantBody  string
	}{
		{name: "healthy", path: "/healthz", unhealthy: unhealthy, wantCode: 200, wantBody: "ok"},
		{name: "unhealthy by env", env: map[string]string{"UNHEALTHY": "1"}, path: "/healthz", unhealthy: unhealthy, wantCode: 500},
		{name: "unhealthy by file", path: "/healthz", unhealthy: mark, wantCode: 500},
		{name: "version", env: map[string]string{"VERSION": "v2"}, path: "/version", wantCode: 200, wantBody: "v2"},
		{name: "config unset", path: "/config", wantCode: 404},
		{name: "config", env: map[string]string{"CONFIG_FILE": cfg}, path: "/config", wantCode: 200, wantBody: "greeting=hi\n"},
		{name: "config missing file", env: map[string]string{"CONFIG_FILE": filepath.Join(dir, "nope")}, path: "/config", wantCode: 500},
		{name: "data unset", path: "/data", wantCode: 404},
		{name: "data empty", env: map[string]string{"DATA_DIR": t.TempDir()}, path: "/data", wantCode: 200, wantBody: ""},
		{name: "data wrong method", env: map[string]string{"DATA_DIR": dir}, method: http.MethodDelete, path: "/data", wantCode: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{getenv: envOf(tc.env), unhealthyFile: tc.unhealthy}
			if a.unhealthyFile == "" {
				a.unhealthyFile = unhealthy
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			rec := httptest.NewRecorder()
			a.handler().ServeHTTP(rec, httptest.NewRequest(method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.wantCode {
				t.Fatalf("%s %s: status %d, want %d (body %q)", method, tc.path, rec.Code, tc.wantCode, rec.Body.String())
			}
			if tc.wantCode == 200 && rec.Body.String() != tc.wantBody {
				t.Fatalf("%s %s: body %q, want %q", method, tc.path, rec.Body.String(), tc.wantBody)
			}
		})
	}
}

func TestDataAppends(t *testing.T) {
	dir := t.TempDir()
	a := &app{getenv: envOf(map[string]string{"DATA_DIR": dir}), unhealthyFile: filepath.Join(dir, "x")}
	h := a.handler()
	for _, line := range []string{"one\n", "two\n"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/data", strings.NewReader(line)))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("POST /data: status %d: %s", rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/data", nil))
	if got := rec.Body.String(); got != "one\ntwo\n" {
		t.Fatalf("GET /data = %q, want both posted lines in order", got)
	}
}

// TestServeLifecycle runs the real serve subcommand: it must write the boot
// log, answer on $PORT and exit 0 when its context (SIGTERM) ends.
func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	ln := freePort(t)
	env := envOf(map[string]string{"PORT": ln, "DATA_DIR": dir, "VERSION": "v7"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"serve"}, env, io.Discard, &stderr) }()

	// The healthcheck subcommand is the probe the image uses; here it also
	// waits for the server to listen (bounded by the test's own deadline).
	for run(context.Background(), []string{"healthcheck"}, env, io.Discard, io.Discard) != 0 {
		select {
		case code := <-done:
			t.Fatalf("serve exited early with %d: %s", code, stderr.String())
		default:
		}
		waitALittle()
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"get", "http://127.0.0.1:" + ln + "/version"}, env, &out, io.Discard); code != 0 || out.String() != "v7" {
		t.Fatalf("get /version: code %d body %q", code, out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit code after SIGTERM = %d, want 0 (%s)", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "boot.log"))
	if err != nil || string(b) != "started v7\n" {
		t.Fatalf("boot.log = %q, %v; want one start line", b, err)
	}
}

func TestServeCrashAfter(t *testing.T) {
	env := envOf(map[string]string{"PORT": freePort(t), "CRASH_AFTER": "10ms"})
	if code := run(context.Background(), []string{"serve"}, env, io.Discard, io.Discard); code != 1 {
		t.Fatalf("serve with CRASH_AFTER exited %d, want 1", code)
	}
}

func TestOnce(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want int
	}{
		{nil, 0},
		{map[string]string{"EXIT_CODE": "3"}, 3},
		{map[string]string{"EXIT_CODE": "0", "SLEEP": "1ms"}, 0},
		{map[string]string{"EXIT_CODE": "x"}, 2},
		{map[string]string{"SLEEP": "soon"}, 2},
	}
	for _, tc := range tests {
		if got := run(context.Background(), []string{"once"}, envOf(tc.env), io.Discard, io.Discard); got != tc.want {
			t.Errorf("once with %v exited %d, want %d", tc.env, got, tc.want)
		}
	}
}

func TestGetFailsOnHTTPError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if code := run(context.Background(), []string{"get", srv.URL}, envOf(nil), io.Discard, io.Discard); code != 1 {
		t.Fatalf("get of a 404 exited %d, want 1", code)
	}
}

func TestLoopCounts(t *testing.T) {
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer okSrv.Close()
	badSrv := httptest.NewServer(http.NotFoundHandler())
	defer badSrv.Close()

	for _, tc := range []struct {
		url      string
		okZero   bool
		failZero bool
	}{
		{okSrv.URL, false, true},
		{badSrv.URL, true, false},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"loop", tc.url, "1ms"}, envOf(nil), &out, io.Discard) }()
		// Stop once the loop has reported at least one request.
		for !strings.Contains(out.String(), "ok=") {
			select {
			case <-done:
				t.Fatal("loop exited on its own")
			default:
			}
			waitALittle()
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("loop exit code %d", code)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		last := lines[len(lines)-1]
		if strings.HasPrefix(last, "ok=0 ") != tc.okZero || strings.HasSuffix(last, " failed=0") != tc.failZero {
			t.Fatalf("loop against %s: last report %q", tc.url, last)
		}
	}
}

// TestLoopNewConnections: by default the loop reuses its connection; with
// LOOP_CONNECTIONS=new it dials for every request.
func TestLoopNewConnections(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		perCall bool
	}{{nil, false}, {map[string]string{"LOOP_CONNECTIONS": "new"}, true}} {
		var mu sync.Mutex
		var conns, calls int
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			calls++
			mu.Unlock()
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				conns++
				mu.Unlock()
			}
		}
		srv.Start()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"loop", srv.URL, "1ms"}, envOf(tc.env), io.Discard, io.Discard) }()
		for {
			mu.Lock()
			n := calls
			mu.Unlock()
			if n >= 5 {
				break
			}
			waitALittle()
		}
		cancel()
		<-done
		srv.Close()
		mu.Lock()
		if got := conns >= calls; got != tc.perCall || conns < 1 {
			t.Errorf("env %v: %d connections for %d calls, want one per call: %v", tc.env, conns, calls, tc.perCall)
		}
		mu.Unlock()
	}
}
