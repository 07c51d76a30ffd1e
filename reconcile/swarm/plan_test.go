package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPlanFreshStack(t *testing.T) {
	st := v1().stack()
	plan := BuildPlan(st, compose.ObservedStack{Namespace: ns})
	equalLines(t, "plan", actionLines(plan.Actions), []string{
		"create-network lst_default: [network does not exist]",
		"create-config " + st.Configs[0].Name + ": [new config]",
		"create-secret " + st.Secrets[0].Name + ": [new secret]",
		"create lst_db: [new service]",
		"create lst_web: [new service]",
		"create lst_worker: [new service]",
	})
	if plan.Project != ns || plan.Environment != "production" || plan.Commit != fake.CommitA {
		t.Errorf("plan header = %q %q %q", plan.Project, plan.Environment, plan.Commit)
	}
}

func TestPlanConvergedIsEmpty(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	if plan := BuildPlan(st, observe(t, f, st)); !plan.Empty() {
		t.Fatalf("plan after deploy: %v", actionLines(plan.Actions))
	}
	// The tag moved at the registry: the same reference is no change.
	f.digests[reg+"/web:v1"] = "sha256:" + sha("rebuilt")
	if plan := BuildPlan(st, observe(t, f, st)); !plan.Empty() {
		t.Fatalf("plan after the tag moved: %v", actionLines(plan.Actions))
	}
	// A new commit that changes nothing of the services changes nothing.
	r := v1()
	r.commit = fake.CommitB
	if plan := BuildPlan(r.stack(), observe(t, f, st)); !plan.Empty() {
		t.Fatalf("plan of another commit with the same stack: %v", actionLines(plan.Actions))
	}
}

// TestPlanReasons: each kind of change updates only the services it
// concerns, with a reason naming it.
func TestPlanReasons(t *testing.T) {
	old := v1().stack()
	tests := []struct {
		name string
		mod  func(*release)
		want []string
	}{
		{"image", func(r *release) { r.webImage = reg + "/web:v2" }, []string{
			"update lst_web: [image 10.237.0.1:5000/web:v1 -> :v2]",
		}},
		{"config content", func(r *release) { r.workerConf = "level=debug\n" }, []string{
			"create-config " + object("app_conf", "level=debug\n").Name + ": [config app_conf content changed (" + sha("level=info\n")[:12] + " -> " + sha("level=debug\n")[:12] + ")]",
			"update lst_worker: [config app_conf content changed (" + sha("level=info\n")[:12] + " -> " + sha("level=debug\n")[:12] + ")]",
			"remove-config " + old.Configs[0].Name + ": [replaced by " + object("app_conf", "level=debug\n").Name + "]",
		}},
		{"env", func(r *release) { r.webEnv = []string{"API_URL=http://api2", "LOG=info", "NEW=1"} }, []string{
			"update lst_web: [env changed: API_URL, NEW]",
		}},
		{"scale", func(r *release) { r.webReplicas = 5 }, []string{
			"update lst_web: [replicas 3, want 5]",
		}},
		{"new service", func(r *release) {
			r.extra = func(st *compose.Stack) {
				st.Services = append(st.Services, r.service("zcache", "redis:7", 1, nil))
			}
		}, []string{"create lst_zcache: [new service]"}},
		{"service removed", func(r *release) {
			r.extra = func(st *compose.Stack) { st.Services = st.Services[1:]; st.Secrets = nil }
		}, []string{
			"remove lst_db: [service db removed from the compose files]",
			"remove-secret " + old.Secrets[0].Name + ": [secret no longer in the compose files]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newSwarm()
			deploy(t, f, old)
			r := v1()
			r.commit = fake.CommitB
			tt.mod(&r)
			plan := BuildPlan(r.stack(), observe(t, f, old))
			equalLines(t, "plan", actionLines(plan.Actions), tt.want)
		})
	}
}

// TestPlanDrift: what a person changed by hand, with the hash label left
// as it was, is put back, as drift.
func TestPlanDrift(t *testing.T) {
	st := v1().stack()
	tests := []struct {
		name  string
		touch func(t *testing.T, f *fakeSwarm)
		want  []string
	}{
		{"scaled by hand", func(t *testing.T, f *fakeSwarm) {
			one := uint64(1)
			f.service(t, "lst_web").Spec.Mode.Replicated.Replicas = &one
		}, []string{"update lst_web: [replicas 1, want 3 (changed outside lockstep)] [drift]"}},
		{"image updated by hand", func(t *testing.T, f *fakeSwarm) {
			f.service(t, "lst_web").Spec.TaskTemplate.ContainerSpec.Image = reg + "/web:hotfix@sha256:" + sha("hotfix")
		}, []string{"update lst_web: [image 10.237.0.1:5000/web:hotfix -> :v1 (changed outside lockstep)] [drift]"}},
		{"env added by hand", func(t *testing.T, f *fakeSwarm) {
			cs := f.service(t, "lst_web").Spec.TaskTemplate.ContainerSpec
			cs.Env = append(cs.Env, "DEBUG=1")
		}, []string{"update lst_web: [env changed: DEBUG (changed outside lockstep)] [drift]"}},
		{"removed by hand", func(t *testing.T, f *fakeSwarm) {
			if err := f.RemoveService(context.Background(), f.service(t, "lst_worker").ID); err != nil {
				t.Fatal(err)
			}
		}, []string{"create lst_worker: [service missing (removed outside lockstep)] [drift]"}},
		{"config removed by hand", func(t *testing.T, f *fakeSwarm) {
			for id, c := range f.configs {
				if c.Name == st.Configs[0].Name {
					delete(f.configs, id) // the swarm refuses while in use; a person forced it
				}
			}
		}, []string{
			"create-config " + st.Configs[0].Name + ": [config missing (removed outside lockstep)] [drift]",
			"update lst_worker: [config " + st.Configs[0].Name + " missing (removed outside lockstep)] [drift]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newSwarm()
			deploy(t, f, st)
			tt.touch(t, f)
			plan := BuildPlan(st, observe(t, f, st))
			equalLines(t, "plan", actionLines(plan.Actions), tt.want)
			// And the apply repairs it: the next plan is empty.
			if _, err := Apply(context.Background(), f, st, observe(t, f, st), plan, ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			if again := BuildPlan(st, observe(t, f, st)); !again.Empty() {
				t.Errorf("plan after the repair: %v", actionLines(again.Actions))
			}
		})
	}
}

// TestPlanSinceRecord: with the record of the last apply, a missing
// service it ran is drift, one it did not is new; without it, a stack
// that runs the same commit lost it by hand.
func TestPlanSinceRecord(t *testing.T) {
	f, clock := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	if err := f.RemoveService(context.Background(), f.service(t, "lst_worker").ID); err != nil {
		t.Fatal(err)
	}
	o := observe(t, f, st)
	last := DeployedOf(st, fake.CommitA, clock.Now())
	if got := actionLines(BuildPlanSince(st, o, last).Actions); !slices.Equal(got, []string{"create lst_worker: [service missing (removed outside lockstep)] [drift]"}) {
		t.Errorf("with the record: %v", got)
	}
	delete(last.Replicas, "worker")
	if got := actionLines(BuildPlanSince(st, o, last).Actions); !slices.Equal(got, []string{"create lst_worker: [new service]"}) {
		t.Errorf("with a record that did not run it: %v", got)
	}
}

func TestPlanTakesOverAStackDeployedByDocker(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	delete(f.service(t, "lst_db").Spec.Labels, compose.LabelHash)
	plan := BuildPlan(st, observe(t, f, st))
	equalLines(t, "plan", actionLines(plan.Actions), []string{"update lst_db: [not deployed by lockstep (no lockstep.hash label): taken over]"})
	if !plan.Actions[0].Adopt {
		t.Error("not marked adopt")
	}
}

// TestCheckRefusesMissingExternals: a missing external network, config
// or secret is refused before the engine is asked to change anything.
func TestCheckRefusesMissingExternals(t *testing.T) {
	r := v1()
	r.extra = func(st *compose.Stack) {
		st.Networks = append(st.Networks, compose.StackNetwork{Key: "edge", Name: "traefik_public", External: true})
		st.Configs = append(st.Configs, compose.StackObject{Key: "ca", Name: "company_ca", External: true})
	}
	st := r.stack()
	f, _ := newSwarm()
	o := observe(t, f, st)
	plan := BuildPlan(st, o)
	err := Check(st, o)
	var pe *reconcile.PreconditionError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 {
		t.Fatalf("Check = %v, want a PreconditionError with 2 problems", err)
	}
	for _, want := range []string{"external network traefik_public (networks.edge) does not exist", "external config company_ca (configs.ca) does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v, want it to say %q", err, want)
		}
	}
	if len(plan.Warnings) != 2 {
		t.Errorf("plan warnings = %v, want the two problems", plan.Warnings)
	}
	res, err := Apply(context.Background(), f, st, o, plan, ApplyOptions{})
	if !errors.As(err, &pe) || len(res.Done) != 0 {
		t.Fatalf("Apply = %v, %v: want the PreconditionError and nothing done", res.Done, err)
	}
	if len(f.calls) != 0 {
		t.Errorf("engine calls: %v, want none", f.calls)
	}

	// A local-scoped network of that name does not do either.
	f.networks["n1"] = compose.ObservedStackNetwork{ID: "n1", Name: "traefik_public", Driver: "bridge", Scope: "local"}
	f.configs["c1"] = compose.ObservedObject{ID: "c1", Name: "company_ca"}
	if err := Check(st, observe(t, f, st)); err == nil || !strings.Contains(err.Error(), "is local-scoped") {
		t.Errorf("Check = %v, want the network refused as local-scoped", err)
	}
}

func TestPlanWarnsAboutNetworkSettings(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	st.Networks[0].Attachable = true
	plan := BuildPlan(st, observe(t, f, st))
	if !plan.Empty() || len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], "attachable false -> true") {
		t.Errorf("plan = %v, warnings %q", actionLines(plan.Actions), plan.Warnings)
	}
}

// TestPlanIsPureAndSerializable: the same inputs give the same plan, the
// inputs are not changed, and a plan read back from JSON applies the same.
func TestPlanIsPureAndSerializable(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.webImage, r.workerConf = reg+"/web:v2", "level=debug\n"
	st := r.stack()
	o := observe(t, f, st)
	before, _ := json.Marshal([]any{st, o})
	plan := BuildPlan(st, o)
	after, _ := json.Marshal([]any{st, o})
	if string(before) != string(after) {
		t.Fatal("BuildPlan changed its inputs")
	}
	again := BuildPlan(st, o)
	a, _ := json.Marshal(plan)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Fatalf("two plans differ:\n%s\n%s", a, b)
	}
	var back reconcile.Plan
	if err := json.Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), f, st, o, &back, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal([]any{st, o}); string(before) != string(after) {
		t.Fatal("Apply changed its inputs")
	}
	if p := BuildPlan(st, observe(t, f, st)); Changes(p) {
		t.Errorf("plan after: %v", actionLines(p.Actions))
	}
}
