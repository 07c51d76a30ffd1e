// Command testapp is the application lockstep's integration tests deploy.
// It is a static binary packed alone into an image (no shell, no libc), so
// everything a test needs from inside a container is a subcommand here:
// an HTTP service with switchable health, its own healthcheck probe, a
// one-shot job, and small HTTP clients to run from another container.
//
// It owns nothing but its own process; it must never depend on anything
// outside the standard library, so the image stays one file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: app serve | healthcheck | once | get URL | loop URL INTERVAL`

// run is the whole program as a function of its inputs, so tests call it
// in-process. ctx is cancelled on SIGTERM/SIGINT.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, getenv, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv, stderr)
	case "once":
		return once(ctx, getenv, stderr)
	case "get":
		if len(args) != 2 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		return get(ctx, args[1], stdout, stderr)
	case "loop":
		if len(args) != 3 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		interval, err := time.ParseDuration(args[2])
		if err != nil || interval <= 0 {
			fmt.Fprintf(stderr, "loop: INTERVAL %q: want a positive Go duration like 100ms\n", args[2])
			return 2
		}
		return loop(ctx, loopClient(getenv), args[1], interval, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown subcommand %q\n%s\n", args[0], usage)
		return 2
	}
}

func port(getenv func(string) string) string {
	if p := getenv("PORT"); p != "" {
		return p
	}
	return "8080"
}

// app holds what the HTTP handlers read. unhealthyFile is a field so tests
// do not have to touch the real /tmp/unhealthy.
type app struct {
	getenv        func(string) string
	unhealthyFile string
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if a.getenv("UNHEALTHY") == "1" {
			http.Error(w, "unhealthy: UNHEALTHY=1", http.StatusInternalServerError)
			return
		}
		if _, err := os.Stat(a.unhealthyFile); err == nil {
			http.Error(w, "unhealthy: "+a.unhealthyFile+" exists", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, a.getenv("VERSION"))
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		path := a.getenv("CONFIG_FILE")
		if path == "" {
			http.Error(w, "CONFIG_FILE is not set", http.StatusNotFound)
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) {
		dir := a.getenv("DATA_DIR")
		if dir == "" {
			http.Error(w, "DATA_DIR is not set", http.StatusNotFound)
			return
		}
		path := filepath.Join(dir, "data.txt")
		switch r.Method {
		case http.MethodGet:
			b, err := os.ReadFile(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Write(b)
		case http.MethodPost:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := appendFile(path, body); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	return mux
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	a := &app{getenv: getenv, unhealthyFile: "/tmp/unhealthy"}
	if dir := getenv("DATA_DIR"); dir != "" {
		// The boot log lets tests count starts across recreates: it lives
		// in the volume, so it survives the container.
		if err := appendFile(filepath.Join(dir, "boot.log"), []byte("started "+getenv("VERSION")+"\n")); err != nil {
			fmt.Fprintf(stderr, "serve: write boot log: %v\n", err)
			return 1
		}
	}
	var crash <-chan time.Time
	if s := getenv("CRASH_AFTER"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintf(stderr, "serve: CRASH_AFTER=%q: want a Go duration like 2s\n", s)
			return 2
		}
		crash = time.After(d)
	}
	srv := &http.Server{
		Addr:              ":" + port(getenv),
		Handler:           a.handler(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "serve: %v\n", err)
		return 1
	case <-crash:
		fmt.Fprintln(stderr, "serve: CRASH_AFTER elapsed, exiting 1")
		return 1
	case <-ctx.Done():
		// SIGTERM: stop promptly; a short grace lets in-flight requests of a
		// zero-downtime test finish.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return 0
	}
}

func healthcheck(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	code, _, err := fetch(ctx, "http://127.0.0.1:"+port(getenv)+"/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	if code != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: status %d\n", code)
		return 1
	}
	return 0
}

func once(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	code := 0
	if s := getenv("EXIT_CODE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 255 {
			fmt.Fprintf(stderr, "once: EXIT_CODE=%q: want an integer 0-255\n", s)
			return 2
		}
		code = n
	}
	if s := getenv("SLEEP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintf(stderr, "once: SLEEP=%q: want a Go duration like 2s\n", s)
			return 2
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return 143 // what a shell reports for SIGTERM
		}
	}
	return code
}

func get(ctx context.Context, url string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	code, body, err := fetch(ctx, url)
	if err != nil {
		fmt.Fprintf(stderr, "get: %v\n", err)
		return 1
	}
	stdout.Write(body)
	if code < 200 || code > 299 {
		fmt.Fprintf(stderr, "get %s: status %d\n", url, code)
		return 1
	}
	return 0
}

// loopClient is the loop's HTTP client: Go's default, which keeps a
// connection to the server it reached and reuses it, or, with
// LOOP_CONNECTIONS=new, one that dials (and resolves the name) for every
// request, as many separate clients would: a zero-downtime test then sees
// every moment a name resolves to a server that no longer answers.
func loopClient(getenv func(string) string) *http.Client {
	if getenv("LOOP_CONNECTIONS") != "new" {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// loop hits url every interval until ctx ends and reports how many
// requests succeeded and failed, once a second and at the end, so a
// zero-downtime test can read the last line of the container's log.
func loop(ctx context.Context, client *http.Client, url string, interval time.Duration, stdout, stderr io.Writer) int {
	var ok, failed int
	tick := time.NewTicker(interval)
	defer tick.Stop()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, _, err := fetchWith(rctx, client, url)
		cancel()
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(stdout, "ok=%d failed=%d\n", ok, failed)
			return 0
		case err != nil:
			failed++
			fmt.Fprintf(stderr, "loop: %v\n", err)
		case code < 200 || code > 299:
			failed++
			fmt.Fprintf(stderr, "loop: status %d\n", code)
		default:
			ok++
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				fmt.Fprintf(stdout, "ok=%d failed=%d\n", ok, failed)
				return 0
			case <-report.C:
				fmt.Fprintf(stdout, "ok=%d failed=%d\n", ok, failed)
			case <-tick.C:
				break wait
			}
		}
	}
}

func fetch(ctx context.Context, url string) (int, []byte, error) {
	return fetchWith(ctx, http.DefaultClient, url)
}

func fetchWith(ctx context.Context, client *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read body of %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}
