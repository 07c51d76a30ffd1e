package swarm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// setTasks changes every task of s the service wants running.
func setTasks(s *compose.ObservedService, mod func(t *compose.ObservedTask)) {
	for i := range s.Tasks {
		if s.Tasks[i].DesiredState == taskRunning {
			mod(&s.Tasks[i])
		}
	}
}

// failSlot makes the running task of slot fail and the swarm start a
// replacement, as a crash does.
func failSlot(s *compose.ObservedService, slot int, now time.Time) {
	for i := range s.Tasks {
		t := &s.Tasks[i]
		if t.Slot == slot && t.DesiredState == taskRunning {
			t.State, t.DesiredState, t.Err, t.ExitCode, t.CreatedAt = taskFailed, "shutdown", "task: non-zero exit (1)", 1, now
		}
	}
	s.Tasks = append([]compose.ObservedTask{{ID: "replacement", Slot: slot, NodeID: "n1", State: "starting", DesiredState: taskRunning,
		Image: imageOf(s.Spec), CreatedAt: now}}, s.Tasks...)
}

// verifyCase is one gate scenario of TestVerify.
type verifyCase struct {
	name     string
	mod      func(r *release) // the release gated, over v1 (nil: a fresh stack)
	onPoll   func(clock *fake.AutoClock) func(s *compose.ObservedService, n int)
	wantErr  string // "" passes; else the GateError's reason contains it
	wantTask string // the task the GateError names; "" the service
	minPolls int    // of web, at least (the bake period)
}

func verifyCases() []verifyCase {
	update := func(r *release) { r.webImage = reg + "/web:v2" }
	return []verifyCase{
		{name: "fresh stack converges and bakes", minPolls: int(reconcile.DefaultBake / (500 * time.Millisecond))},
		{name: "update converges", mod: update, minPolls: 30},
		{name: "task fails with its exit code", onPoll: func(clock *fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 3 {
					failSlot(s, 2, clock.Now())
				}
			}
		}, wantErr: "task lst_web.2 failed: task: non-zero exit (1) (exit code 1)", wantTask: "lst_web.2"},
		{name: "an old failure does not count", onPoll: func(clock *fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 1 {
					s.Tasks = append(s.Tasks, compose.ObservedTask{ID: "old", Slot: 1, State: taskFailed, DesiredState: "shutdown",
						Image: imageOf(s.Spec), ExitCode: 2, CreatedAt: clock.Now().Add(-time.Hour)})
				}
			}
		}},
		{name: "update paused by the swarm", mod: update, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 2 {
					s.UpdateState, s.UpdateMessage = "paused", "update paused due to failure or early termination of task x1"
				}
			}
		}, wantErr: "update paused by the swarm (update_config.failure_action: pause): update paused due to failure or early termination of task x1"},
		{name: "update paused by the swarm says why its task failed", mod: update, onPoll: func(clock *fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 2 {
					failSlot(s, 1, clock.Now())
					s.UpdateState, s.UpdateMessage = "paused", "update paused due to failure or early termination of task x1"
				}
			}
		}, wantErr: "early termination of task x1; task lst_web.1 failed: task: non-zero exit (1)", wantTask: "lst_web.1"},
		{name: "update paused by the swarm names the task, failed before the gate started", mod: update, onPoll: func(clock *fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 2 {
					s.Tasks = append(s.Tasks, compose.ObservedTask{ID: "x1", Slot: 3, State: "complete", DesiredState: "shutdown",
						Image: imageOf(s.Spec), Message: "finished", CreatedAt: clock.Now().Add(-time.Minute)})
					s.UpdateState, s.UpdateMessage = "paused", "update paused due to failure or early termination of task x1"
				}
			}
		}, wantErr: "early termination of task x1; task lst_web.3 ended (complete) while the service wants it running: it exited 0, or the swarm stopped it because its healthcheck failed: finished", wantTask: "lst_web.3"},
		{name: "update rolled back by the swarm", mod: update, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" {
					s.UpdateState = "rollback_started"
				}
			}
		}, wantErr: "the swarm rolled the update back"},
		{name: "update in progress, then done", mod: update, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" {
					s.UpdateState = map[bool]string{true: "updating", false: "completed"}[n < 10]
				}
			}
		}, minPolls: 10 + 30},
		{name: "update not started yet: old tasks do not pass", mod: update, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" {
					s.UpdateState = ""
					setTasks(s, func(t *compose.ObservedTask) { t.Image = imageOf(s.Spec) })
				}
			}
		}, wantErr: "3/3 tasks running, update not completed yet"},
		{name: "a label-only update has no rollout to wait for", mod: func(r *release) {
			r.extra = func(st *compose.Stack) { st.Services[1].Spec.Labels["team"] = "web" }
		}, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) { s.UpdateState = "" }
		}, minPolls: 30},
		{name: "never healthy: timeout", onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" {
					setTasks(s, func(t *compose.ObservedTask) { t.State = "starting" })
				}
			}
		}, wantErr: "not converged after 2m0s: 0/3 tasks running, 3 starting"},
		{name: "the swarm stops an unhealthy task: complete", onPoll: func(clock *fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 2 {
					s.Tasks[0].State, s.Tasks[0].DesiredState, s.Tasks[0].Message, s.Tasks[0].CreatedAt = taskComplete, "shutdown", "finished", clock.Now()
				}
			}
		}, wantErr: "ended (complete) while the service wants it running: it exited 0, or the swarm stopped it because its healthcheck failed: finished", wantTask: "lst_web.1"},
		{name: "unhealthy task", onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 4 {
					s.Tasks[0].Health = "unhealthy"
				}
			}
		}, wantErr: "healthcheck reports unhealthy", wantTask: "lst_web.1"},
		{name: "a replica lost during the bake restarts it", onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" {
					state := taskRunning
					if n == 20 {
						state = "starting"
					}
					s.Tasks[0].State = state
				}
			}
		}, minPolls: 20 + 30},
		{name: "a task of the previous spec still running", mod: update, onPoll: func(*fake.AutoClock) func(*compose.ObservedService, int) {
			return func(s *compose.ObservedService, n int) {
				if s.Name == "lst_web" && n == 1 {
					s.Tasks = append(s.Tasks, compose.ObservedTask{ID: "older", Slot: 4, State: taskRunning, DesiredState: taskRunning, Image: "web:v1"})
				}
			}
		}, wantErr: "1 of the previous spec still running"},
	}
}

func TestVerify(t *testing.T) {
	tests := verifyCases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, clock := newSwarm()
			st := v1().stack()
			if tt.mod != nil {
				deploy(t, f, st)
				r := v1()
				tt.mod(&r)
				st = r.stack()
			}
			_, res := deploy(t, f, st)
			if tt.onPoll != nil {
				f.onPoll = tt.onPoll(clock)
			}
			err := Verify(context.Background(), f, st, res.Done, reconcile.GateOptions{Clock: clock})
			var ge *reconcile.GateError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Verify = %v, want it to pass", err)
			case tt.wantErr != "" && !errors.As(err, &ge):
				t.Fatalf("Verify = %v, want a GateError", err)
			case tt.wantErr != "":
				if !strings.Contains(ge.Reason, tt.wantErr) || ge.Service != "web" {
					t.Errorf("GateError service %q, reason %q; want web, %q", ge.Service, ge.Reason, tt.wantErr)
				}
				if ge.Task != tt.wantTask || ge.Container != "" {
					t.Errorf("GateError names task %q, container %q; want task %q (\"\": the service as a whole), no container", ge.Task, ge.Container, tt.wantTask)
				}
			}
			if f.polls["lst_web"] < tt.minPolls {
				t.Errorf("web polled %d times, want at least %d", f.polls["lst_web"], tt.minPolls)
			}
		})
	}
}

// TestVerifyGatesWhatWasDone: only the services created or updated are
// followed, but those that opt out.
func TestVerifyGatesWhatWasDone(t *testing.T) {
	f, clock := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.webImage = reg + "/web:v2"
	r.extra = func(st *compose.Stack) { st.Services[1].Spec.Labels[reconcile.LabelHealthGate] = "false" }
	st := r.stack()
	_, res := deploy(t, f, st)
	f.polls = map[string]int{}
	if err := Verify(context.Background(), f, st, res.Done, reconcile.GateOptions{Clock: clock}); err != nil {
		t.Fatal(err)
	}
	if len(f.polls) != 0 {
		t.Errorf("polled %v; web opted out, nothing else changed", f.polls)
	}
	if err := Verify(context.Background(), f, st, nil, reconcile.GateOptions{Clock: clock}); err != nil {
		t.Errorf("nothing done: %v", err)
	}
}

func TestVerifyEngineErrorIsNotAGateFailure(t *testing.T) {
	f, clock := newSwarm()
	st := v1().stack()
	_, res := deploy(t, f, st)
	delete(f.services, f.service(t, "lst_web").ID)
	err := Verify(context.Background(), f, st, res.Done, reconcile.GateOptions{Clock: clock})
	var ge *reconcile.GateError
	if err == nil || errors.As(err, &ge) || !strings.Contains(err.Error(), "health gate: inspect service lst_web") {
		t.Errorf("Verify = %v, want a plain error naming the service", err)
	}
}

func TestVerifyGlobalServiceAndJob(t *testing.T) {
	f, clock := newSwarm()
	r := v1()
	r.extra = func(st *compose.Stack) {
		agent := r.service("agent", "redis:7", 0, func(s *swarmapi.ServiceSpec) {
			s.Mode = swarmapi.ServiceMode{Global: &swarmapi.GlobalService{}}
		})
		migrate := r.service("migrate", "redis:7", 0, func(s *swarmapi.ServiceSpec) {
			s.Mode = swarmapi.ServiceMode{ReplicatedJob: &swarmapi.ReplicatedJob{}}
		})
		migrate.Job = true
		st.Services = append([]compose.StackService{agent, migrate}, st.Services...)
	}
	f.nodes[2].Availability = "drain"
	st := r.stack()
	_, res := deploy(t, f, st)
	if n := len(f.service(t, "lst_agent").Tasks); n != 2 {
		t.Fatalf("agent has %d tasks, want one per active node (2)", n)
	}
	if err := Verify(context.Background(), f, st, res.Done, reconcile.GateOptions{Clock: clock}); err != nil {
		t.Fatal(err)
	}
	if f.polls["lst_migrate"] != 1 {
		t.Errorf("the job was polled %d times: a complete job has no bake", f.polls["lst_migrate"])
	}
	// A node that comes back wants its task too.
	f.nodes[2].Availability = "active"
	if Healthy(st, observe(t, f, st)) {
		t.Error("Healthy with a node's task missing")
	}
	if got := GatePlan(st, res.Done, 0); !slices.Equal(got, []string{
		"agent running on every node for 15s", "migrate completes", "db 1/1 running for 15s",
		"web 3/3 running and healthy for 15s", "worker 1/1 running for 15s",
	}) {
		t.Errorf("GatePlan = %q", got)
	}
}

func TestHealthy(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	if !Healthy(st, observe(t, f, st)) {
		t.Fatal("a converged stack is not healthy")
	}
	tests := []struct {
		name  string
		touch func(s *compose.ObservedService)
	}{
		{"a task starting", func(s *compose.ObservedService) { s.Tasks[0].State = "starting" }},
		{"a replica missing", func(s *compose.ObservedService) { s.Tasks = s.Tasks[1:] }},
		{"update paused", func(s *compose.ObservedService) { s.UpdateState = "paused" }},
		{"another spec", func(s *compose.ObservedService) { s.Spec.Labels[compose.LabelHash] = "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := observe(t, f, st)
			for i := range o.Services {
				if o.Services[i].Name == "lst_web" {
					tt.touch(&o.Services[i])
				}
			}
			if Healthy(st, o) {
				t.Error("healthy")
			}
		})
	}
}

// TestVerifyTimeoutDoesNotCutTheBake: a service converged before the
// deadline bakes to the end; one that is not converged at the deadline
// fails then.
func TestVerifyTimeoutDoesNotCutTheBake(t *testing.T) {
	f, clock := newSwarm()
	st := v1().stack()
	_, res := deploy(t, f, st)
	gate := reconcile.GateOptions{Clock: clock, Timeout: 5 * time.Second, Bake: 15 * time.Second}
	if err := Verify(context.Background(), f, st, res.Done, gate); err != nil {
		t.Fatalf("Verify = %v: the bake outlasts the timeout", err)
	}
	f.onPoll = func(s *compose.ObservedService, n int) {
		if s.Name == "lst_worker" {
			s.Tasks[0].State = map[bool]string{true: taskRunning, false: "starting"}[n%2 == 0]
		}
	}
	err := Verify(context.Background(), f, st, res.Done, gate)
	var ge *reconcile.GateError
	if !errors.As(err, &ge) || ge.Service != "worker" || !strings.Contains(ge.Reason, "not converged after 5s") {
		t.Errorf("Verify = %v, want worker not converged after 5s", err)
	}
}
