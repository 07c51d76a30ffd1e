package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// notifications is a test endpoint for [[notify]] kind = "webhook".
type notifications struct {
	mu     sync.Mutex
	events []map[string]any
	url    string
}

func newNotifications(t *testing.T) *notifications {
	n := &notifications{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.mu.Lock()
		n.events = append(n.events, ev)
		n.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL + "/hooks/lockstep?token=do-not-log-me"
	return n
}

// find returns the first event of kind about commit, or nil.
func (n *notifications) find(kind, commit string) map[string]any {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ev := range n.events {
		if ev["event"] == kind && ev["commit"] == commit {
			return ev
		}
	}
	return nil
}

// healthFixture is a fixture whose agent gates releases quickly and posts
// notifications to a test endpoint.
func healthFixture(t *testing.T) (*fixture, *notifications) {
	f := newFixture(t)
	n := newNotifications(t)
	urlFile := filepath.Join(t.TempDir(), "notify-url")
	must(t, os.WriteFile(urlFile, []byte(n.url+"\n"), 0o600))
	f.agentExtra = fmt.Sprintf(`
[health]
timeout = "20s"
bake = "3s"

[[notify]]
kind = "webhook"
url_file = %q
events = ["failure", "rollback", "recovery", "deploy"]
`, urlFile)
	f.writeConfig("")
	return f, n
}

// waitPass waits until the agent's last pass is about commit with result.
func (f *fixture) waitPass(commit string, result reconcile.Result, timeout time.Duration) reconcile.EnvStatus {
	f.t.Helper()
	var st reconcile.EnvStatus
	eventually(f.t, timeout, fmt.Sprintf("a %s pass of %s", result, commit[:12]), func() bool {
		r := f.lockstep("status", "--json")
		if r.code != 0 { // the agent may not listen yet
			return false
		}
		var out struct {
			Environments []reconcile.EnvStatus `json:"environments"`
		}
		if json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Environments) != 1 {
			return false
		}
		st = out.Environments[0]
		return st.LastPass != nil && st.LastPass.Commit == commit && st.LastPass.Result == result
	})
	return st
}

// TestHealthGateRollsBack: a release whose web fails its healthcheck is
// rolled back to the last healthy commit, reported as "rolled-back" naming
// web, notified, quarantined (not retried by later polls), and a new good
// commit afterwards deploys normally.
func TestHealthGateRollsBack(t *testing.T) {
	f, notes := healthFixture(t)
	cli := harness.RequireDocker(t)
	A := stackA(f)
	shaA := f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	f.converged(shaA, 90*time.Second)
	if st := f.status(); st.LastHealthy != shaA {
		t.Fatalf("last healthy after a good deploy: %q, want %s", st.LastHealthy, shaA)
	}

	bad := A
	bad.WebImage = f.images["web:b"]
	bad.Extra = "    environment:\n      UNHEALTHY: \"1\"\n"
	pushed := time.Now()
	shaB := f.release("web b, unhealthy", map[string]string{"compose.yaml": bad.yaml()})
	st := f.waitPass(shaB, reconcile.ResultRolledBack, 2*time.Minute)
	t.Logf("failing release to rolled back and healthy: %s", time.Since(pushed).Round(100*time.Millisecond))
	if st.Running != shaA || st.LastHealthy != shaA || !strings.Contains(strings.Join(st.Quarantined, ","), shaB) {
		t.Fatalf("after the rollback: running %s, last healthy %s, quarantined %v", st.Running, st.LastHealthy, st.Quarantined)
	}
	if !strings.Contains(st.LastFailure, "web") {
		t.Errorf("last failure does not name web: %q", st.LastFailure)
	}
	hist := f.history()
	last := hist[len(hist)-1]
	if last.Result != reconcile.ResultRolledBack || last.Service != "web" || !strings.Contains(last.Error, "web") {
		t.Fatalf("history's last pass: %+v", last)
	}
	w := world(t, cli, f.project)
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, w["web"], "8080")+"/version"); got != "a" {
		t.Fatalf("after the rollback web serves %q, want a", got)
	}
	eventually(t, 30*time.Second, "the rollback notification", func() bool { return notes.find("rollback", shaB) != nil })
	if ev := notes.find("rollback", shaB); ev["service"] != "web" || ev["previous"] != shaA {
		t.Errorf("rollback notification: %v", ev)
	}
	if r := f.lockstep("status"); !strings.Contains(r.stdout, shaB[:12]) {
		t.Errorf("status text does not show the quarantined commit:\n%s", r.stdout)
	}

	// The next polls (1s) do not redeploy the quarantined commit.
	time.Sleep(5 * time.Second)
	sameWorld(t, w, world(t, cli, f.project))
	for _, p := range f.history()[len(hist):] {
		if p.Commit == shaB && p.Result != reconcile.ResultNoop {
			t.Fatalf("quarantined commit tried again: %+v", p)
		}
	}

	// A new good commit after the quarantined one deploys normally.
	C := A
	C.WebImage = f.images["web:b"]
	shaC := f.release("web b, healthy", map[string]string{"compose.yaml": C.yaml()})
	f.converged(shaC, 90*time.Second)
	if st := f.status(); st.LastHealthy != shaC || st.LastPass.Result != reconcile.ResultApplied {
		t.Fatalf("good commit after a quarantined one: %+v", st)
	}
	a.signal(15)
	a.wait(60 * time.Second)
	if strings.Contains(a.log(), "do-not-log-me") {
		t.Fatalf("the notification URL's token is in the agent's log")
	}
}

// TestBakeCatchesCrashLoop: a worker without a healthcheck that dies a
// second after starting fails the bake period and is rolled back.
func TestBakeCatchesCrashLoop(t *testing.T) {
	f, _ := healthFixture(t)
	A := stackA(f)
	shaA := f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	f.converged(shaA, 90*time.Second)

	bad := A
	bad.WorkerEnv = "      CRASH_AFTER: 1s\n"
	shaB := f.release("worker crashes", map[string]string{"compose.yaml": bad.yaml()})
	st := f.waitPass(shaB, reconcile.ResultRolledBack, 2*time.Minute)
	if st.Running != shaA || st.LastPass.Service != "worker" {
		t.Fatalf("crash-looping worker: running %s, failing service %q", st.Running, st.LastPass.Service)
	}
	a.signal(15)
	a.wait(60 * time.Second)
}

// TestOneShotGate: a migration that exits 0 passes the gate; one that exits
// 1 fails it and the release is rolled back.
func TestOneShotGate(t *testing.T) {
	f, _ := healthFixture(t)
	migrate := func(code int) string {
		return fmt.Sprintf(`  migrate:
    image: %s
    command: ["once"]
    environment:
      EXIT_CODE: "%d"
    networks: [backend]
`, f.images["worker:a"], code)
	}
	// worker waits for the migration to complete; the gate requires it to
	// have exited 0.
	good := stackA(f)
	good.Services = migrate(0)
	shaA := f.release("migration ok", map[string]string{"compose.yaml": withDependency(good.yaml(), "worker", "migrate"), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	f.converged(shaA, 90*time.Second)
	if st := f.status(); st.LastHealthy != shaA {
		t.Fatalf("a migration that exits 0 must pass the gate: %+v", st)
	}

	bad := good
	bad.Services = migrate(1)
	bad.WebImage = f.images["web:b"]
	shaB := f.release("migration fails", map[string]string{"compose.yaml": withDependency(bad.yaml(), "worker", "migrate")})
	st := f.waitPass(shaB, reconcile.ResultRolledBack, 2*time.Minute)
	if st.Running != shaA || !strings.Contains(st.LastFailure, "migrate") {
		t.Fatalf("failed migration: running %s, last failure %q", st.Running, st.LastFailure)
	}
	a.signal(15)
	a.wait(60 * time.Second)
}

// withDependency makes service depend on dep completing successfully.
func withDependency(yaml, service, dep string) string {
	marker := "  " + service + ":\n"
	i := strings.Index(yaml, marker)
	if i < 0 {
		panic("no service " + service)
	}
	i += len(marker)
	return yaml[:i] + "    depends_on:\n      " + dep + ":\n        condition: service_completed_successfully\n" + yaml[i:]
}

// TestFirstDeployFailure: with no healthy revision to go back to, a failing
// first deploy is left running, marked failed, and notified.
func TestFirstDeployFailure(t *testing.T) {
	f, notes := healthFixture(t)
	cli := harness.RequireDocker(t)
	bad := stackA(f)
	bad.Extra = "    environment:\n      UNHEALTHY: \"1\"\n"
	sha := f.release("unhealthy from the start", map[string]string{"compose.yaml": bad.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	st := f.waitPass(sha, reconcile.ResultFailed, 2*time.Minute)
	if st.LastHealthy != "" || !strings.Contains(st.LastFailure, "web") {
		t.Fatalf("first deploy failure: %+v", st)
	}
	if w := world(t, cli, f.project); len(w) != 3 || w["web"].State != "running" {
		t.Fatalf("a failed first deploy must be left running: %v", ids(w))
	}
	eventually(t, 30*time.Second, "the failure notification", func() bool { return notes.find("failure", sha) != nil })
	a.signal(15)
	a.wait(60 * time.Second)
}
