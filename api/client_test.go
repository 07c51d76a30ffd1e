package api_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
)

// socketDir returns a short temporary directory: t.TempDir paths can get
// close to the 107-byte limit of a unix socket path.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lsapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// startUnix serves the API for agent on a fresh socket and stops it at the
// end of the test.
func startUnix(t *testing.T, agent api.Agent, path string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := api.ListenUnix(ctx, path)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- api.NewServer(agent, api.NewMetrics(agent), zerolog.Nop()).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func TestClientOverUnixSocket(t *testing.T) {
	// The parent directory does not exist yet: ListenUnix creates it.
	path := filepath.Join(socketDir(t), "run", "lockstep.sock")
	agent := newFakeAgent()
	startUnix(t, agent, path)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("socket directory: %v %v, want mode 0755", di.Mode(), err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := api.NewClient(path, "")

	envs, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 2 || envs[0].Name != "staging" || envs[0].Running != sha('a') || envs[1].LastError != "fetch: connection refused" {
		t.Errorf("Status: %+v", envs)
	}

	passes, err := c.History(ctx, "staging", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(passes) != 2 || passes[1].Commit != sha('a') {
		t.Errorf("History: %+v", passes)
	}
	if _, err := c.History(ctx, "staging", 0); err != nil {
		t.Errorf("History with the default limit: %v", err)
	}

	queued, err := c.Sync(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(queued, []string{"staging", "production"}) {
		t.Errorf("Sync all queued %v", queued)
	}
	queued, err = c.Sync(ctx, "production")
	if err != nil || !reflect.DeepEqual(queued, []string{"production"}) {
		t.Errorf("Sync production: %v %v", queued, err)
	}

	// Server errors come back with the server's message.
	_, err = c.History(ctx, "qa", 0)
	var se *api.ServerError
	if !errors.As(err, &se) || se.StatusCode != 404 || !se.NotFound() {
		t.Fatalf("History of an unknown env: %v, want a 404 ServerError", err)
	}
	if !strings.Contains(err.Error(), `unknown environment "qa": this agent runs staging and production`) {
		t.Errorf("error %q lacks the server's message", err)
	}
	if _, err := c.Sync(ctx, "qa"); !errors.As(err, &se) || se.StatusCode != 404 {
		t.Errorf("Sync of an unknown env: %v, want a 404 ServerError", err)
	}
}

func TestServeStopsAndRemovesTheSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "lockstep.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(newFakeAgent(), nil, zerolog.Nop()).ServeUnix(ctx, path) }()

	// Wait until it answers (no timing assumption: poll on the client's
	// own error kind).
	c := api.NewClient(path, "")
	for {
		_, err := c.Status(context.Background())
		if err == nil {
			break
		}
		var nr *api.NotRunningError
		if !errors.As(err, &nr) {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("ServeUnix returned before serving: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeUnix after cancel: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after shutdown: %v", err)
	}
}

func TestListenUnixExistingFile(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lockstep.sock")
		// A killed agent leaves its socket file behind.
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		_ = old.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("setup: stale socket missing: %v", err)
		}
		// A client sees no agent on it.
		_, err = api.NewClient(path, "").Status(context.Background())
		var nr *api.NotRunningError
		if !errors.As(err, &nr) {
			t.Fatalf("client on a stale socket: %v, want NotRunningError", err)
		}

		startUnix(t, newFakeAgent(), path)
		if _, err := api.NewClient(path, "").Status(context.Background()); err != nil {
			t.Errorf("client on the new socket: %v", err)
		}
	})

	t.Run("live socket is left alone", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lockstep.sock")
		startUnix(t, newFakeAgent(), path)
		_, err := api.ListenUnix(context.Background(), path)
		if err == nil || !strings.Contains(err.Error(), "already answers") {
			t.Fatalf("ListenUnix over a live socket: %v, want an 'already answers' error", err)
		}
		if _, err := api.NewClient(path, "").Status(context.Background()); err != nil {
			t.Errorf("the first server stopped answering: %v", err)
		}
	})

	t.Run("regular file is not removed", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lockstep.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := api.ListenUnix(context.Background(), path)
		if err == nil || !strings.Contains(err.Error(), "is not a socket") || !strings.Contains(err.Error(), path) {
			t.Fatalf("ListenUnix over a regular file: %v", err)
		}
		if data, err := os.ReadFile(path); err != nil || string(data) != "keep me" {
			t.Errorf("regular file changed: %q %v", data, err)
		}
	})

	t.Run("path too long", func(t *testing.T) {
		path := filepath.Join(socketDir(t), strings.Repeat("s", 120)+".sock")
		_, err := api.ListenUnix(context.Background(), path)
		if err == nil || !strings.Contains(err.Error(), "choose a shorter path") {
			t.Fatalf("ListenUnix with a long path: %v", err)
		}
	})
}

func TestNotRunningError(t *testing.T) {
	missing := filepath.Join(socketDir(t), "lockstep.sock")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	_ = ln.Close()

	cases := []struct {
		name     string
		client   *api.Client
		endpoint string
	}{
		{"socket file missing", api.NewClient(missing, ""), missing},
		{"nothing on the TCP address", api.NewClient("", closedAddr), closedAddr},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := c.client.Status(ctx)
			var nr *api.NotRunningError
			if !errors.As(err, &nr) {
				t.Fatalf("Status: %v (%T), want a NotRunningError", err, err)
			}
			want := "no lockstep agent is listening on " + c.endpoint + ": is the lockstep service running? (systemctl status lockstep)"
			if nr.Error() != want {
				t.Errorf("message %q, want %q", nr.Error(), want)
			}
		})
	}
}

func TestClientOverTCP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := api.ListenTCP(ctx, "127.0.0.1:0", zerolog.Nop())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- api.NewServer(newFakeAgent(), nil, zerolog.Nop()).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	envs, err := api.NewClient("", ln.Addr().String()).Status(ctx)
	if err != nil || len(envs) != 2 {
		t.Fatalf("Status over TCP: %v %v", envs, err)
	}
}
