package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

var _ Clock = (*fake.AutoClock)(nil)

func running(rc int) compose.Container { return compose.Container{State: "running", RestartCount: rc} }
func health(h string) compose.Container {
	return compose.Container{State: "running", Health: h}
}
func exited(code int) compose.Container { return compose.Container{State: "exited", ExitCode: code} }

func TestGate(t *testing.T) {
	p := fake.Project(fake.ModService("web", func(s *compose.Service) {
		s.Config.Labels = map[string]string{}
	}))
	created := func(services ...string) []Action {
		var out []Action
		for _, s := range services {
			out = append(out, Action{Kind: ActCreate, Service: s, Number: 1, Container: "prod-" + s + "-1"})
		}
		return out
	}
	tests := []struct {
		name     string
		project  *compose.Project
		actions  []Action
		script   map[string][]compose.Container // by container name
		wantErr  string                         // "" = passes; else the GateError's reason contains it
		wantSvc  string
		minPolls int // at least this many inspections of the last target (bake)
	}{
		{name: "healthcheck turns healthy", actions: created("db"),
			script: map[string][]compose.Container{"prod-db-1": {health("starting"), health("starting"), health("healthy")}}},
		{name: "unhealthy fails at once", actions: created("db"),
			script:  map[string][]compose.Container{"prod-db-1": {health("starting"), health("unhealthy")}},
			wantErr: "healthcheck reports unhealthy", wantSvc: "db"},
		{name: "no healthcheck: running the whole bake period", actions: created("web"),
			script:   map[string][]compose.Container{"prod-web-1": {{State: "created"}, running(0)}},
			minPolls: int(DefaultBake / (500 * time.Millisecond))},
		{name: "looks running, then restarts during the bake", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), running(0), running(0), running(1)}},
			wantErr: "restarted 1 time(s) within the 15s bake period", wantSvc: "web"},
		{name: "restarting state is a crash loop", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), {State: "restarting", RestartCount: 2}}},
			wantErr: "restarted 2 time(s)", wantSvc: "web"},
		{name: "exits during the bake (no restart policy)", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {running(0), exited(2)}},
			wantErr: "exited with code 2 within the 15s bake period", wantSvc: "web"},
		{name: "image healthcheck on a service without one in compose", actions: created("web"),
			script: map[string][]compose.Container{"prod-web-1": {health("starting"), health("healthy")}}},
		{name: "one-shot others wait for exits 0", actions: created("migrate"),
			script: map[string][]compose.Container{"prod-migrate-1": {running(0), exited(0)}}},
		{name: "one-shot others wait for exits 1", actions: created("migrate"),
			script:  map[string][]compose.Container{"prod-migrate-1": {running(0), exited(1)}},
			wantErr: "exited with code 1; services depending on it with service_completed_successfully need 0", wantSvc: "migrate"},
		{name: "timeout: never healthy", actions: created("db"),
			script:  map[string][]compose.Container{"prod-db-1": {health("starting")}},
			wantErr: "not healthy after 2m0s (last state running, health starting)", wantSvc: "db"},
		{name: "timeout: never running", actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {{State: "created"}}},
			wantErr: "not running after 2m0s (last state created)", wantSvc: "web"},
		{name: "opt-out label: not watched at all",
			project: fake.Project(fake.ModService("web", func(s *compose.Service) { s.Config.Labels = map[string]string{LabelHealthGate: "false"} })),
			actions: created("web"),
			script:  map[string][]compose.Container{"prod-web-1": {exited(1)}}},
		{name: "restart of an old container: its earlier restarts do not count",
			actions: []Action{{Kind: ActRestart, Service: "web", Number: 1, Container: "prod-web-1"}},
			script:  map[string][]compose.Container{"prod-web-1": {running(7)}}},
		{name: "removals alone gate nothing",
			actions: []Action{{Kind: ActRemove, Service: "old", Container: "prod-old-1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proj := p
			if tt.project != nil {
				proj = tt.project
			}
			eng := fake.NewEngine()
			for name, states := range tt.script {
				eng.Script(name, states...)
				eng.ContainerLogs[name] = []string{"line 1", "panic: listen tcp :80: address already in use"}
			}
			err := runGate(context.Background(), eng, gateTargets(proj, tt.actions),
				GateOptions{Clock: fake.NewAutoClock()}, zerolog.Nop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("gate failed: %v", err)
				}
			} else {
				var ge *GateError
				if !errors.As(err, &ge) || ge.Service != tt.wantSvc || !strings.Contains(ge.Reason, tt.wantErr) {
					t.Fatalf("gate error %v, want service %s and a reason containing %q", err, tt.wantSvc, tt.wantErr)
				}
				if len(ge.Logs) != 2 || ge.Logs[1] != "panic: listen tcp :80: address already in use" {
					t.Fatalf("gate error carries logs %q", ge.Logs)
				}
				if Classify(&StepError{Step: StepVerify, Err: err}) != ClassHealth {
					t.Fatalf("a gate failure is not classified %q", ClassHealth)
				}
			}
			inspects := 0
			for _, c := range eng.Calls() {
				if strings.HasPrefix(c, "inspect") {
					inspects++
				}
			}
			if tt.project != nil && inspects != 0 {
				t.Fatalf("an opted-out service was inspected %d times", inspects)
			}
			if inspects < tt.minPolls {
				t.Fatalf("%d inspections; the bake period needs at least %d", inspects, tt.minPolls)
			}
		})
	}
}

func TestGateEngineErrorIsNotAGateFailure(t *testing.T) {
	eng := fake.NewEngine()
	eng.Fail["inspect"] = errors.New("Cannot connect to the Docker daemon")
	err := runGate(context.Background(), eng, gateTargets(fake.Project(), []Action{{Kind: ActCreate, Service: "web", Container: "prod-web-1"}}),
		GateOptions{Clock: fake.NewAutoClock()}, zerolog.Nop())
	var ge *GateError
	if err == nil || errors.As(err, &ge) || Classify(&StepError{Step: StepVerify, Err: err}) != ClassEngine {
		t.Fatalf("engine down during the gate: %v; want a plain (engine) error, not a rollback", err)
	}
}

func TestGatePlanAndLogSayWhatIsWaitedFor(t *testing.T) {
	p := fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 2 }))
	var acts []Action
	for _, s := range []string{"db", "migrate", "web"} {
		acts = append(acts, Action{Kind: ActRecreate, Service: s})
	}
	targets := gateTargets(p, acts)
	if len(targets) != 4 || targets[3].Container != "prod-web-2" {
		t.Fatalf("targets: %+v", targets)
	}
	if got := strings.Join(gatePlan(targets, 15*time.Second), ", "); got != "db healthy, migrate exits 0, web 15s without restart" {
		t.Fatalf("plan gate: %q", got)
	}
	if got := gateWaiting(targets, 15*time.Second); got != "db (healthcheck), migrate (exit code 0), web (running 15s without restart)" {
		t.Fatalf("log: %q", got)
	}
	plan := &Plan{Environment: "prod", Actions: acts, Gate: gatePlan(targets, 15*time.Second)}
	var b strings.Builder
	if err := plan.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  then waits: db healthy, migrate exits 0, web 15s without restart\n") {
		t.Fatalf("plan text:\n%s", b.String())
	}
}

// TestGateErrorNames: a gate failure names the container, or for a swarm
// service the task, or neither when the service as a whole failed.
func TestGateErrorNames(t *testing.T) {
	for _, tc := range []struct {
		err  GateError
		want string
	}{
		{GateError{Service: "web", Container: "p-web-1", Reason: "unhealthy"}, "health gate: service web (container p-web-1): unhealthy"},
		{GateError{Service: "web", Task: "p_web.2", Reason: "task failed"}, "health gate: service web (task p_web.2): task failed"},
		{GateError{Service: "web", Reason: "update paused"}, "health gate: service web: update paused"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
