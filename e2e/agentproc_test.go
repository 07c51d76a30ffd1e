package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// agentProc is the real `lockstep agent` running as a daemon process.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	socket string
	done   chan struct{}
	code   int

	mu    sync.Mutex
	lines []string      // every log line so far
	seen  chan struct{} // closed and replaced on each new line
}

// startAgent starts the agent on the fixture's config; it is killed at the
// end of the test if still running.
func (f *fixture) startAgent(args ...string) *agentProc {
	f.t.Helper()
	cmd := exec.Command(lockstepBin, append([]string{"agent", "--config", f.config, "--log-format", "json"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
	}
	cmd.Env = append(cmd.Env, f.agentEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	a := &agentProc{t: f.t, cmd: cmd, socket: f.socket, done: make(chan struct{}), seen: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			close(a.seen)
			a.seen = make(chan struct{})
			a.mu.Unlock()
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			a.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				a.code = -int(ws.Signal())
			}
		}
		close(a.done)
	}()
	f.t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			cmd.Process.Kill()
			<-a.done
		}
		if f.t.Failed() {
			f.t.Logf("agent log:\n%s", a.log())
		}
	})
	return a
}

func (a *agentProc) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines, "\n")
}

// waitLine waits until a log line from index `from` on satisfies match, and
// returns the index after it.
func (a *agentProc) waitLine(from int, timeout time.Duration, what string, match func(map[string]any) bool) int {
	a.t.Helper()
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		lines, seen := a.lines, a.seen
		a.mu.Unlock()
		for i := from; i < len(lines); i++ {
			var m map[string]any
			if json.Unmarshal([]byte(lines[i]), &m) == nil && match(m) {
				return i + 1
			}
		}
		from = len(lines)
		select {
		case <-seen:
		case <-a.done:
			a.t.Fatalf("agent exited (code %d) while waiting for %s", a.code, what)
		case <-deadline:
			a.t.Fatalf("no %s in the agent log within %s", what, timeout)
		}
	}
}

// lineCount is how many log lines the agent has written.
func (a *agentProc) lineCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lines)
}

// signal sends sig and, for SIGKILL/SIGTERM, waits for the process to end.
func (a *agentProc) signal(sig syscall.Signal) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the agent to exit and returns its exit code (negative:
// killed by that signal).
func (a *agentProc) wait(timeout time.Duration) int {
	a.t.Helper()
	select {
	case <-a.done:
		return a.code
	case <-time.After(timeout):
		a.t.Fatalf("agent still running after %s", timeout)
		return 0
	}
}

// http is a client for the agent's API on its unix socket.
func (a *agentProc) http() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.socket)
		}},
	}
}

// healthz returns the status code of GET /healthz (0 when nothing answers).
func (a *agentProc) healthz() int {
	resp, err := a.http().Get("http://lockstep/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// status runs `lockstep status --json` and returns the environment's entry.
func (f *fixture) status() reconcile.EnvStatus {
	f.t.Helper()
	r := f.lockstep("status", "--json")
	if r.code != 0 {
		f.t.Fatalf("status: %s", r)
	}
	var out struct {
		Environments []reconcile.EnvStatus `json:"environments"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Environments) != 1 {
		f.t.Fatalf("status --json: cannot read %q: %v", r.stdout, err)
	}
	return out.Environments[0]
}

// history runs `lockstep history e2e --json`.
func (f *fixture) history() []reconcile.PassRecord {
	f.t.Helper()
	r := f.lockstep("history", "e2e", "--json")
	if r.code != 0 {
		f.t.Fatalf("history: %s", r)
	}
	var out []reconcile.PassRecord
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		f.t.Fatalf("history --json: cannot read %q: %v", r.stdout, err)
	}
	return out
}

// converged waits until the agent reports commit as pinned and running,
// with its last pass successful.
func (f *fixture) converged(commit string, timeout time.Duration) {
	f.t.Helper()
	eventually(f.t, timeout, "convergence on "+commit[:12], func() bool {
		r := f.lockstep("status", "--json")
		if r.code != 0 {
			return false
		}
		var out struct {
			Environments []reconcile.EnvStatus `json:"environments"`
		}
		if json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Environments) != 1 {
			return false
		}
		st := out.Environments[0]
		return st.Pinned == commit && st.Running == commit && st.LastPass != nil && st.LastPass.Result != "failed"
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
