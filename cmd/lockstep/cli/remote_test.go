package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/agent"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// remoteAgent stands in for the agent behind the API, for the CLI's remote
// commands: production failed its gate on shaStaging and rolled back.
type remoteAgent struct {
	mu    sync.Mutex
	calls []string
}

func (a *remoteAgent) Status() []reconcile.EnvStatus {
	return []reconcile.EnvStatus{{
		Name: "production", Project: "prod", Pinned: shaStaging, Running: shaProd, LastHealthy: shaProd,
		Quarantined: []string{shaStaging}, Rollbacks: 1, GateFailures: 1,
		LastFailure: "verify production at 4d2e1aa0c3b2: health gate: service web (container prod-web-1): healthcheck reports unhealthy; rolled back to 9fceb02d0ae5",
		LastPass:    &reconcile.PassRecord{Trigger: "poll", Result: reconcile.ResultRolledBack, Start: time.Now()},
	}, {Name: "staging", Project: "staging", Pinned: shaStaging, Running: shaStaging}}
}

func (a *remoteAgent) History(env string, limit int) ([]reconcile.PassRecord, error) {
	if env != "production" {
		return nil, &agent.UnknownEnvironmentError{Name: env, Known: []string{"production", "staging"}}
	}
	return []reconcile.PassRecord{
		{ID: "p1", Trigger: "start", Commit: shaProd, Result: reconcile.ResultNoop, Start: time.Unix(1_700_000_000, 0)},
		{ID: "p2", Trigger: "poll", Commit: shaStaging, Result: reconcile.ResultRolledBack, RolledBackTo: shaProd, Service: "web",
			Class: reconcile.ClassHealth, Error: "health gate: service web: healthcheck reports unhealthy",
			Logs: []string{"listening on :8080", "panic: no database"}, Start: time.Unix(1_700_000_100, 0)},
	}, nil
}

func (a *remoteAgent) Sync(env string, trigger reconcile.Trigger) error { return nil }
func (a *remoteAgent) Ready() bool                                      { return true }

func (a *remoteAgent) Retry(env string) error { return a.act("retry", env) }

func (a *remoteAgent) Rollback(env string) error {
	if env == "staging" {
		return &pass.NothingToRollBackError{Environment: env, Pinned: shaStaging}
	}
	return a.act("rollback", env)
}

func (a *remoteAgent) act(what, env string) error {
	if env != "production" && env != "staging" {
		return &agent.UnknownEnvironmentError{Name: env, Known: []string{"production", "staging"}}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, what+" "+env)
	return nil
}

// serveRemote serves agent's API on a socket and returns a config naming it.
func serveRemote(t *testing.T, agent api.Agent) string {
	t.Helper()
	return serveRemoteWith(t, api.NewServer(agent, nil, zerolog.Nop()))
}

// serveRemoteWith is serveRemote with the server made by the test.
func serveRemoteWith(t *testing.T, srv *api.Server) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lsremote")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := api.ListenUnix(ctx, sock)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return writeConfig(t, testConfig+fmt.Sprintf("\n[api]\nsocket = %q\n", sock))
}

func TestRetryAndRollbackCommands(t *testing.T) {
	agent := &remoteAgent{}
	cfg := serveRemote(t, agent)

	got := run(t, nil, nil, "--config", cfg, "rollback", "production")
	if got.code != exitOK || !strings.Contains(got.stdout, "rollback queued for production") {
		t.Fatalf("rollback: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
	got = run(t, nil, nil, "retry", "production", "--json", "--config", cfg)
	var resp api.QueuedResponse
	if got.code != exitOK || json.Unmarshal([]byte(got.stdout), &resp) != nil || resp.Environment != "production" || resp.Queued != "retry" {
		t.Fatalf("retry --json: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
	if strings.Join(agent.calls, ",") != "rollback production,retry production" {
		t.Fatalf("agent calls %q", agent.calls)
	}

	got = run(t, nil, nil, "--config", cfg, "rollback", "staging")
	if got.code != exitFailure || !strings.Contains(got.stderr, "no healthy revision to roll back to") || !strings.Contains(got.stderr, "HTTP 409") {
		t.Fatalf("rollback with nothing to roll back to: exit %d\n%s", got.code, got.stderr)
	}
	// An environment the config does not name is a usage error (issue 10:
	// it was exit 1, with the agent's 404); TestUnknownEnvironmentIsAUsageErrorInEveryCommand
	// has the agent's own 404.
	got = run(t, nil, nil, "--config", cfg, "retry", "qa")
	if got.code != exitUsage || !strings.Contains(got.stderr, `unknown environment "qa"`) {
		t.Fatalf("retry of an unknown environment: exit %d\n%s", got.code, got.stderr)
	}
	for _, args := range [][]string{{"retry"}, {"rollback", "a", "b"}} {
		if got := run(t, nil, nil, append([]string{"--config", cfg}, args...)...); got.code != exitUsage {
			t.Errorf("%q: exit %d, want usage error", args, got.code)
		}
	}
	if got := run(t, nil, nil, "help", "rollback"); got.code != exitOK || !strings.Contains(got.stdout, "emergency brake") {
		t.Errorf("help rollback: %s", got.stdout)
	}
}

func TestStatusAndHistoryShowTheQuarantineAndTheFailingService(t *testing.T) {
	cfg := serveRemote(t, &remoteAgent{})
	got := run(t, nil, nil, "--config", cfg, "status")
	if got.code != exitOK {
		t.Fatalf("status: exit %d %s", got.code, got.stderr)
	}
	lines := strings.Split(got.stdout, "\n")
	if !strings.Contains(lines[0], "QUARANTINED") || !strings.Contains(lines[1], shaStaging[:12]) || !strings.Contains(lines[1], "rolled-back") {
		t.Fatalf("status table:\n%s", got.stdout)
	}
	if !strings.Contains(got.stdout, "production: last failure: verify production at 4d2e1aa0c3b2: health gate: service web") {
		t.Fatalf("status lacks the last failure:\n%s", got.stdout)
	}

	got = run(t, nil, nil, "--config", cfg, "history", "production")
	if got.code != exitOK || !strings.Contains(got.stdout, "SERVICE") || !strings.Contains(got.stdout, "rolled-back to "+shaProd[:12]+"  web") ||
		!strings.Contains(got.stdout, "last log lines of web (pass p2, commit "+shaStaging[:12]+"):\n  | listening on :8080\n  | panic: no database\n") {
		t.Fatalf("history:\n%s%s", got.stdout, got.stderr)
	}
}

func TestUnknownEnvironmentIsAUsageErrorInEveryCommand(t *testing.T) {
	running := serveRemote(t, &remoteAgent{})
	// No agent behind this one: the config is enough to know.
	stopped := writeConfig(t, testConfig+fmt.Sprintf("\n[api]\nsocket = %q\n", filepath.Join(t.TempDir(), "none.sock")))
	for _, cfg := range []string{running, stopped} {
		for _, cmd := range []string{"history", "sync", "retry", "rollback", "plan", "apply", "validate"} {
			for _, env := range []string{"../../etc", "qa"} {
				got := run(t, nil, nil, "--config", cfg, cmd, env)
				if got.code != exitUsage || !strings.Contains(got.stderr, fmt.Sprintf("unknown environment %q in %s; known: production, staging", env, cfg)) {
					t.Errorf("%s %s (agent running: %v): exit %d, want %d\n%s", cmd, env, cfg == running, got.code, exitUsage, got.stderr)
				}
			}
		}
	}
	// The config names it but the agent does not (it runs an older
	// config): the agent's 404 is a usage error too.
	got := run(t, nil, nil, "--config", running, "history", "staging")
	if got.code != exitUsage || !strings.Contains(got.stderr, `no environment named "staging"`) || !strings.Contains(got.stderr, "HTTP 404") {
		t.Errorf("history of an environment the agent does not know: exit %d\n%s", got.code, got.stderr)
	}
}
