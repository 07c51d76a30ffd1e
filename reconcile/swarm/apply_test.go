package swarm

import (
	"context"
	"strings"
	"testing"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

func TestApplyFreshStack(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	_, res := deploy(t, f, st)
	equalLines(t, "calls", f.calls, []string{
		"resolve postgres:16",
		"resolve 10.237.0.1:5000/web:v1",
		"resolve 10.237.0.1:5000/worker:v1",
		"create-network lst_default",
		"create-config " + st.Configs[0].Name,
		"create-secret " + st.Secrets[0].Name,
		"create-service lst_db",
		"create-service lst_web",
		"create-service lst_worker",
	})
	if res.Created != 3 || len(res.Done) != 6 {
		t.Errorf("result: %d created, %d done", res.Created, len(res.Done))
	}
	for _, a := range res.Done {
		if a.Kind == reconcile.ActCreate && a.ObjectID != f.service(t, a.SwarmService).ID {
			t.Errorf("done %s: ObjectID %q, want the created service's id", a.SwarmService, a.ObjectID)
		}
	}
	web := f.service(t, "lst_web")
	if got, want := imageOf(web.Spec), reg+"/web:v1@"+f.digests[reg+"/web:v1"]; got != want {
		t.Errorf("web runs %s, want %s", got, want)
	}
	if cs := st.Services[1].Spec.TaskTemplate.ContainerSpec; cs.Image != reg+"/web:v1" {
		t.Errorf("the desired spec was changed: image %s", cs.Image)
	}
	if st.Services[2].Spec.TaskTemplate.ContainerSpec.Configs[0].ConfigID != "" {
		t.Error("the desired spec was changed: config id filled in")
	}
}

// TestApplyOnlyTheChangedService: a release that changes web's image
// updates web, with the new image resolved once, and nothing else.
func TestApplyOnlyTheChangedService(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	f.resetCalls()
	r := v1()
	r.commit, r.webImage = fake.CommitB, reg+"/web:v2"
	r.extra = func(st *compose.Stack) { // a second service on the same new image
		st.Services = append(st.Services, r.service("zweb", reg+"/web:v2", 1, nil))
	}
	_, res := deploy(t, f, r.stack())
	equalLines(t, "calls", f.calls, []string{
		"resolve 10.237.0.1:5000/web:v2",
		"create-service lst_zweb",
		"update-service lst_web",
	})
	if res.Updated != 1 || res.Created != 1 {
		t.Errorf("result: %d updated, %d created", res.Updated, res.Created)
	}
	web := f.service(t, "lst_web")
	if got := imageOf(web.Spec); got != reg+"/web:v2@"+f.digests[reg+"/web:v2"] {
		t.Errorf("web runs %s", got)
	}
	if web.Spec.Labels[compose.LabelCommit] != fake.CommitB {
		t.Errorf("web's commit label %s", web.Spec.Labels[compose.LabelCommit])
	}
	if f.service(t, "lst_db").Spec.Labels[compose.LabelCommit] != fake.CommitA {
		t.Error("db was touched")
	}
}

// TestApplyKeepsTheDigestOfAnUnchangedReference: a service updated for
// another reason keeps the digest it runs, even when its tag moved.
func TestApplyKeepsTheDigestOfAnUnchangedReference(t *testing.T) {
	f, _ := newSwarm()
	st := v1().stack()
	deploy(t, f, st)
	pinned := imageOf(f.service(t, "lst_web").Spec)
	f.digests[reg+"/web:v1"] = "sha256:" + sha("moved")
	f.resetCalls()
	r := v1()
	r.webEnv = append(r.webEnv, "EXTRA=1")
	deploy(t, f, r.stack())
	equalLines(t, "calls", f.calls, []string{"update-service lst_web"})
	if got := imageOf(f.service(t, "lst_web").Spec); got != pinned {
		t.Errorf("web runs %s, want the digest it ran (%s)", got, pinned)
	}
}

func TestApplyResolveFailureTouchesNothing(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	f.resetCalls()
	r := v1()
	r.webImage = reg + "/web:missing"
	r.workerConf = "changed\n"
	st := r.stack()
	o := observe(t, f, st)
	res, err := Apply(context.Background(), f, st, o, BuildPlan(st, o), ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "resolve image 10.237.0.1:5000/web:missing of service web (lst_web): manifest unknown") {
		t.Fatalf("Apply = %v, want the resolve error", err)
	}
	if len(res.Done) != 0 || len(f.changes()) != 0 {
		t.Errorf("done %v, engine changes %v: want none", res.Done, f.changes())
	}
}

// TestApplyConfigChange: a new content is a new object; only the service
// using it is updated, to the new object's id; the old object is pruned
// once nothing uses it, never before.
func TestApplyConfigChange(t *testing.T) {
	f, _ := newSwarm()
	old := v1().stack()
	deploy(t, f, old)
	r := v1()
	r.commit, r.workerConf = fake.CommitB, "level=debug\n"
	st := r.stack()

	// Before the rollout the old config is in use: the prune keeps it.
	f.resetCalls()
	if done, err := Prune(context.Background(), f, st, observe(t, f, st)); err != nil || len(done) != 0 || len(f.calls) != 0 {
		t.Fatalf("prune before the update: %v, %v, calls %v", done, err, f.calls)
	}
	_, res := deploy(t, f, st)
	equalLines(t, "calls", f.calls, []string{"create-config " + st.Configs[0].Name, "update-service lst_worker"})
	if res.Updated != 1 {
		t.Errorf("%d updated", res.Updated)
	}
	worker := f.service(t, "lst_worker")
	ref := containerOf(worker.Spec).Configs[0]
	if ref.ConfigName != st.Configs[0].Name || f.configs[ref.ConfigID].Name != st.Configs[0].Name {
		t.Errorf("worker uses %s (%s)", ref.ConfigName, ref.ConfigID)
	}

	f.resetCalls()
	done, err := Prune(context.Background(), f, st, observe(t, f, st))
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, "pruned", actionLines(done), []string{"remove-config " + old.Configs[0].Name + ": [replaced by " + st.Configs[0].Name + "]"})
	if plan := BuildPlan(st, observe(t, f, st)); !plan.Empty() {
		t.Errorf("plan after the prune: %v", actionLines(plan.Actions))
	}
}

func TestPruneWaitsForAnUpdateInProgress(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.workerConf = "level=debug\n"
	st := r.stack()
	deploy(t, f, st)
	f.service(t, "lst_web").UpdateState = "updating"
	if done, err := Prune(context.Background(), f, st, observe(t, f, st)); err != nil || len(done) != 0 {
		t.Errorf("prune during an update: %v, %v", done, err)
	}
}

// TestApplyRollbackToThePreviousStack: re-applying the previous healthy
// release over a newer one updates exactly the services that differ, back
// to the digest they ran.
func TestApplyRollbackToThePreviousStack(t *testing.T) {
	f, _ := newSwarm()
	prev := v1().stack()
	deploy(t, f, prev)
	webV1 := imageOf(f.service(t, "lst_web").Spec)
	r := v1()
	r.commit, r.webImage, r.workerConf = fake.CommitB, reg+"/web:v2", "level=debug\n"
	bad := r.stack()
	deploy(t, f, bad)
	f.digests[reg+"/web:v1"] = "sha256:" + sha("v1 moved since")
	f.resetCalls()

	o := observe(t, f, prev)
	plan := BuildPlan(prev, o)
	equalLines(t, "rollback plan", actionLines(plan.Actions), []string{
		"update lst_web: [image 10.237.0.1:5000/web:v2 -> :v1]",
		"update lst_worker: [config app_conf content changed (" + sha("level=debug\n")[:12] + " -> " + sha("level=info\n")[:12] + ")]",
		"remove-config " + bad.Configs[0].Name + ": [replaced by " + prev.Configs[0].Name + "]",
	})
	if _, err := Apply(context.Background(), f, prev, o, plan, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "calls", f.calls, []string{"update-service lst_web", "update-service lst_worker"})
	if got := imageOf(f.service(t, "lst_web").Spec); got != webV1 {
		t.Errorf("web rolled back to %s, want the digest it ran before (%s)", got, webV1)
	}
	if plan := BuildPlan(prev, observe(t, f, prev)); len(plan.Actions) != 1 || plan.Actions[0].Kind != reconcile.ActRemoveConfig {
		t.Errorf("plan after the rollback: %v", actionLines(plan.Actions))
	}

	// Once the bad release's config was pruned, the rollback creates the
	// old one again (same content, same name).
	if _, err := Prune(context.Background(), f, prev, observe(t, f, prev)); err != nil {
		t.Fatal(err)
	}
	deploy(t, f, bad)
	if _, err := Prune(context.Background(), f, bad, observe(t, f, bad)); err != nil {
		t.Fatal(err)
	}
	f.resetCalls()
	deploy(t, f, prev)
	equalLines(t, "calls", f.changes(), []string{"create-config " + prev.Configs[0].Name, "update-service lst_web", "update-service lst_worker"})
}

func TestApplyStaleVersionFails(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.webImage = reg + "/web:v2"
	st := r.stack()
	o := observe(t, f, st)
	f.service(t, "lst_web").Version++ // someone updated it meanwhile
	_, err := Apply(context.Background(), f, st, o, BuildPlan(st, o), ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "update service lst_web: update out of sequence") {
		t.Errorf("Apply = %v, want the swarm's refusal, named", err)
	}
}

func TestApplyOnlyPruneActionsChangesNothing(t *testing.T) {
	f, _ := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.workerConf = "level=debug\n"
	deploy(t, f, r.stack())
	st := r.stack()
	o := observe(t, f, st)
	plan := BuildPlan(st, o)
	if plan.Empty() || Changes(plan) {
		t.Fatalf("plan %v: want only the prune", actionLines(plan.Actions))
	}
	f.resetCalls()
	res, err := Apply(context.Background(), f, st, o, plan, ApplyOptions{})
	if err != nil || len(res.Done) != 0 || len(f.calls) != 0 {
		t.Errorf("Apply: %v, done %v, calls %v", err, res.Done, f.calls)
	}
}

// TestApplyModeChangeRecreates: the swarm cannot update a service's mode,
// so a service made global is removed and created again, and gated.
func TestApplyModeChangeRecreates(t *testing.T) {
	f, clock := newSwarm()
	deploy(t, f, v1().stack())
	r := v1()
	r.extra = func(st *compose.Stack) {
		st.Services[2] = r.service("worker", reg+"/worker:v1", 0, func(s *swarmapi.ServiceSpec) {
			s.Mode = swarmapi.ServiceMode{Global: &swarmapi.GlobalService{}}
			s.TaskTemplate.ContainerSpec.Configs = st.Services[2].Spec.TaskTemplate.ContainerSpec.Configs
		})
	}
	st := r.stack()
	f.resetCalls()
	plan, res := deploy(t, f, st)
	equalLines(t, "plan", actionLines(plan.Actions), []string{
		"recreate lst_worker: [mode replicated -> global the swarm cannot change a service's mode in place: it is removed and created again]",
	})
	equalLines(t, "calls", f.changes(), []string{"remove-service lst_worker", "create-service lst_worker"})
	if res.Recreated != 1 || res.Done[0].ObjectID != f.service(t, "lst_worker").ID {
		t.Errorf("result: %d recreated, done %+v", res.Recreated, res.Done)
	}
	if err := Verify(context.Background(), f, st, res.Done, reconcile.GateOptions{Clock: clock}); err != nil || f.polls["lst_worker"] == 0 {
		t.Errorf("gate: %v, %d polls of the worker", err, f.polls["lst_worker"])
	}
}

// TestPruneTriesEveryRemoval: a removal the swarm refuses is reported,
// the others are done.
func TestPruneTriesEveryRemoval(t *testing.T) {
	f, _ := newSwarm()
	old := v1().stack()
	deploy(t, f, old)
	r := v1()
	r.workerConf = "level=debug\n"
	r.extra = func(st *compose.Stack) {
		st.Secrets[0] = object("db_pw", "n3w")
		st.Services[0].Spec.TaskTemplate.ContainerSpec.Secrets[0].SecretName = st.Secrets[0].Name
	}
	st := r.stack()
	deploy(t, f, st)
	// A service outside the stack uses the old secret: the swarm refuses.
	f.services["other"] = &compose.ObservedService{ID: "other", Name: "other", Spec: old.Services[0].Spec}
	delete(f.services["other"].Spec.Labels, compose.LabelStackNamespace)
	done, err := Prune(context.Background(), f, st, observe(t, f, st))
	if err == nil || !strings.Contains(err.Error(), "remove secret "+old.Secrets[0].Name+": secret '"+old.Secrets[0].Name+"' is in use") {
		t.Errorf("Prune error = %v", err)
	}
	equalLines(t, "pruned", actionLines(done), []string{"remove-config " + old.Configs[0].Name + ": [replaced by " + st.Configs[0].Name + "]"})
}
