package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Variables demo-serve reads: the version baked into its image, and the
// config file its service mounts, if any.
const (
	EnvVersion = "VERSION"
	EnvConfig  = "DEMO_CONFIG"
)

// Greeting is the first line demo-serve answers with; the demo reads the
// version back from it.
func Greeting(version string) string { return "lockstep demo, version " + version }

// Handler answers every GET with the greeting of the version it runs and,
// when its service mounts a config file, that file's content. getenv is the
// container's environment.
func Handler(getenv func(string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "only GET", http.StatusMethodNotAllowed)
			return
		}
		version := getenv(EnvVersion)
		if version == "" {
			version = "(VERSION not set)"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, Greeting(version))
		if p := getenv(EnvConfig); p != "" {
			data, err := os.ReadFile(p)
			if err != nil {
				fmt.Fprintf(w, "config %s: %v\n", p, err)
				return
			}
			fmt.Fprintf(w, "config %s:\n%s", p, data)
		}
	})
}

// Serve runs Handler on addr until ctx is done, then shuts down, letting
// requests in flight finish for a moment. As PID 1 of its container it
// must stop on SIGTERM itself (the caller cancels ctx), or every `docker
// stop` would wait out its timeout.
func Serve(ctx context.Context, addr string, getenv func(string) string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo-serve: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Handler(getenv), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("demo-serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("demo-serve: shut down: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("demo-serve on %s: %w", addr, err)
	}
	return nil
}
