package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// pingServer is a Docker engine API on a unix socket, as far as Connect
// and InspectContainer need one: /_ping fails with 503 until up is set,
// and one container, c1, can be inspected.
type pingServer struct {
	path     string
	up       atomic.Bool
	connects atomic.Int64 // HEAD /_ping: Connect sends one per attempt
	srv      *httptest.Server
}

// newPingServer returns a server for a socket in a fresh directory; it
// listens only once listen is called, so the socket file is missing until then.
func newPingServer(t *testing.T) *pingServer {
	return &pingServer{path: filepath.Join(t.TempDir(), "docker.sock")}
}

func (s *pingServer) host() string { return "unix://" + s.path }

func (s *pingServer) listen(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(s.srv.Close)
}

func (s *pingServer) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_ping":
		if r.Method == http.MethodHead {
			s.connects.Add(1)
		}
		if !s.up.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"message":"the engine is starting"}`))
			return
		}
		w.Header().Set("Api-Version", "1.47")
		w.Write([]byte("OK"))
	case strings.HasSuffix(r.URL.Path, "/containers/c1/json"):
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"Id":"c1","Name":"/p-web-1","State":{"Status":"running"},"Config":{"Labels":{"com.docker.compose.service":"web"}}}`))
	default:
		http.NotFound(w, r)
	}
}

func shortContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOnDemandRetriesAFailedConnect: a failed connect is returned, not
// kept: with no socket yet, then with an engine that answers the ping with
// an error, each call tries again; once the ping succeeds the client is
// kept and later calls connect no more. After Close calls fail.
func TestOnDemandRetriesAFailedConnect(t *testing.T) {
	ctx := shortContext(t)
	s := newPingServer(t)
	o := NewOnDemand(s.host(), zerolog.Nop())

	for i := range 2 {
		_, err := o.InspectContainer(ctx, "c1")
		if err == nil || !strings.Contains(err.Error(), "cannot reach the Docker engine at "+s.host()) {
			t.Fatalf("call %d with no socket: %v, want the unreachable error", i, err)
		}
	}

	s.listen(t)
	for i := range 2 {
		_, err := o.InspectContainer(ctx, "c1")
		if err == nil || !strings.Contains(err.Error(), "the engine is starting") {
			t.Fatalf("call %d while the ping fails: %v, want the engine's error", i, err)
		}
	}
	if n := s.connects.Load(); n != 2 {
		t.Fatalf("%d connects for 2 calls while the ping fails, want 2: a failure was kept", n)
	}

	s.up.Store(true)
	for i := range 3 {
		c, err := o.InspectContainer(ctx, "c1")
		if err != nil || c.ID != "c1" || c.Service != "web" {
			t.Fatalf("call %d with the engine up: %+v, %v", i, c, err)
		}
	}
	if n := s.connects.Load(); n != 3 {
		t.Fatalf("%d connects in all, want 3: the client is not kept once connected", n)
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.InspectContainer(ctx, "c1"); !errors.Is(err, errClosed) {
		t.Fatalf("call after Close: %v, want errClosed", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestOnDemandConcurrentCalls (run with -race): calls from many goroutines
// while the engine is down each try, none is handed another's failure, and
// once it is up they share one connect.
func TestOnDemandConcurrentCalls(t *testing.T) {
	ctx := shortContext(t)
	s := newPingServer(t)
	s.listen(t)
	o := NewOnDemand(s.host(), zerolog.Nop())
	t.Cleanup(func() { o.Close() })

	const n = 16
	calls := func() []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = o.InspectContainer(ctx, "c1")
			})
		}
		wg.Wait()
		return errs
	}
	for i, err := range calls() {
		if err == nil {
			t.Fatalf("call %d succeeded while the ping fails", i)
		}
	}
	if got := s.connects.Load(); got != n {
		t.Fatalf("%d connects for %d concurrent calls while down, want one each", got, n)
	}
	s.up.Store(true)
	for i, err := range calls() {
		if err != nil {
			t.Fatalf("call %d with the engine up: %v", i, err)
		}
	}
	if got := s.connects.Load(); got != n+1 {
		t.Fatalf("%d connects once up, want 1", got-n)
	}
}

// TestLoggerFromContext: the Engine logs through a logger attached to the
// context and through its own otherwise, including when zerolog.Ctx would
// answer with DefaultContextLogger. A disabled logger attached on purpose
// is honoured.
func TestLoggerFromContext(t *testing.T) {
	var own, pass, dflt bytes.Buffer
	e := New(nil, zerolog.New(&own))
	passLog := zerolog.New(&pass).With().Str("pass", "p1").Logger()

	prev := zerolog.DefaultContextLogger
	t.Cleanup(func() { zerolog.DefaultContextLogger = prev })
	defaultLog := zerolog.New(&dflt)

	tests := []struct {
		name         string
		ctx          func() context.Context
		setDefault   bool
		want         *bytes.Buffer // nil: nothing written anywhere
		wantAttached bool
	}{
		{"none", context.Background, false, &own, false},
		{"none, with a DefaultContextLogger", context.Background, true, &own, false},
		{"attached", func() context.Context { return passLog.WithContext(context.Background()) }, false, &pass, true},
		{"attached, with a DefaultContextLogger", func() context.Context { return passLog.WithContext(context.Background()) }, true, &pass, true},
		{"disabled on purpose", func() context.Context {
			return zerolog.Nop().WithContext(passLog.WithContext(context.Background()))
		}, false, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			own.Reset()
			pass.Reset()
			dflt.Reset()
			zerolog.DefaultContextLogger = nil
			if tc.setDefault {
				zerolog.DefaultContextLogger = &defaultLog
			}
			ctx := tc.ctx()
			if _, ok := attachedLogger(ctx); ok != tc.wantAttached {
				t.Fatalf("attachedLogger says attached = %v, want %v", ok, tc.wantAttached)
			}
			e.call(ctx, "start", "c1")
			for _, b := range []*bytes.Buffer{&own, &pass, &dflt} {
				if wrote := b.Len() > 0; wrote != (b == tc.want) {
					t.Errorf("own %q, pass %q, default %q", own.String(), pass.String(), dflt.String())
					break
				}
			}
			if tc.want == &pass && !strings.Contains(pass.String(), `"pass":"p1"`) {
				t.Errorf("line lacks the pass's fields: %s", pass.String())
			}
		})
	}
}
