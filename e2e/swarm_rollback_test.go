package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// swarmFullStack is a stack of the three kinds of service a release can
// roll back: web (3 replicas, healthcheck), the worker (a config, an env
// var MODE), the db (a named volume, pinned to node 1 by hostname, as a
// database whose volume lives on one node is). Web's healthcheck gives up
// after 3 failed checks a second apart, so an unhealthy image fails in
// seconds.
func swarmFullStack(web, worker, mode string) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 3
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      update_config:
        order: start-first
        parallelism: 1
  worker:
    image: %s
    environment:
      CONFIG_FILE: /etc/worker/config.txt
      MODE: %s
    configs:
      - source: worker_conf
        target: /etc/worker/config.txt
    deploy:
      endpoint_mode: dnsrr
  db:
    image: %s
    volumes:
      - dbdata:/data
    deploy:
      endpoint_mode: dnsrr
      placement:
        constraints: ["node.hostname == lockstep-swarm1"]
volumes:
  dbdata: {}
configs:
  worker_conf:
    file: ./worker/config.txt
`, web, worker, mode, worker)
}

// serviceSpecs is what the test compares of each service across a
// rollback: the spec hash lockstep labels it with, its image (a digest)
// and its environment.
func serviceSpecs(svcs map[string]swarmapi.Service) map[string]string {
	out := map[string]string{}
	for k, s := range svcs {
		c := s.Spec.TaskTemplate.ContainerSpec
		out[k] = fmt.Sprintf("hash=%s image=%s env=%v", s.Spec.Labels[compose.LabelHash], c.Image, c.Env)
	}
	return out
}

func serviceVersions(svcs map[string]swarmapi.Service) map[string]uint64 {
	out := map[string]uint64{}
	for k, s := range svcs {
		out[k] = s.Version.Index
	}
	return out
}

// TestSwarmRollback (issue 12, scenario 4): a release that changes web's
// image to one that never becomes healthy and the worker's environment
// fails `lockstep apply`'s health gate naming web, fast (the tasks fail
// their healthcheck: no waiting for the timeout), and the whole stack goes
// back to the previous release: web's and the worker's specs as before
// (same image digests, same env), the db untouched. The commit is
// quarantined: applying the same pin again changes nothing and says so;
// the history has the rolled-back pass, and the agent started afterwards
// reports the commit quarantined and leaves the stack alone.
func TestSwarmRollback(t *testing.T) {
	f := newSwarmFixture(t)
	f.images["web:bad"] = harness.PushTestApp(t, f.registry, "web", "bad",
		harness.ImageOptions{Env: []string{"VERSION=bad", "UNHEALTHY=1"}})
	const timeout = 90 * time.Second
	f.writeConfig(fmt.Sprintf("backend = \"swarm\"\nhealth_timeout = %q\nbake = \"3s\"\n", timeout))
	files := func(web, mode string) map[string]string {
		return map[string]string{
			"compose.yaml":      swarmFullStack(f.images[web], f.images["worker:a"], mode),
			"worker/config.txt": "one\n",
		}
	}
	shaG := f.release("stack G", files("web:a", "one"))
	start := time.Now()
	r := f.apply()
	t.Logf("first apply of G (3 services created, gated): %s\n%s", time.Since(start).Round(100*time.Millisecond), r.stdout)
	good := f.services()
	if len(good) != 3 {
		t.Fatalf("services after the apply of G: %v", serviceSpecs(good))
	}
	if db := good["db"]; len(db.Spec.TaskTemplate.Placement.Constraints) != 1 {
		t.Fatalf("db's placement: %+v", db.Spec.TaskTemplate.Placement)
	}
	f.checkStackNames()
	if p := f.plan(); len(p.Actions) != 0 {
		t.Fatalf("plan after the apply of G is not empty: %+v", p.Actions)
	}

	shaB := f.release("web bad, worker mode two", files("web:bad", "two"))
	p := f.lockstep("plan", "e2e")
	t.Logf("plan of B:\n%s", p.stdout)
	start = time.Now()
	r = f.lockstep("apply", "e2e")
	took := time.Since(start)
	t.Logf("failing apply of B incl. rollback: %s\n%s%s", took.Round(100*time.Millisecond), r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("apply of B (web never healthy): want exit 1, got %d", r.code)
	}
	if want := "rolled back to " + shaG[:12]; !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout+r.stderr, "web") {
		t.Errorf("apply of B: want output naming web and %q, got %s", want, r)
	}
	// The swarm's own message names the task by id only: lockstep says
	// which task it is and how it ended.
	if !strings.Contains(r.stdout, "task "+f.project+"_web.") {
		t.Errorf("apply of B: the failure does not say which of web's tasks failed, and how: %s", r)
	}
	if took >= timeout {
		t.Errorf("apply of B took %s: the gate waited for its timeout (%s) instead of failing on web's failed tasks", took, timeout)
	}
	after := f.services()
	if got, want := serviceSpecs(after), serviceSpecs(good); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the rollback the stack is not G's:\n got  %v\n want %v", got, want)
	}
	if after["db"].Version.Index != good["db"].Version.Index {
		t.Errorf("the db, which B did not change, was updated")
	}
	f.checkRollbackRecords(shaG, shaB)
	if t.Failed() {
		t.FailNow() // what follows is only meaningful after a rollback
	}

	// The pin still names B: quarantined, nothing is touched.
	r = f.lockstep("apply", "e2e")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "quarantined") {
		t.Errorf("second apply with the pin on the quarantined B: want exit 1 and output saying quarantined, got %s", r)
	}
	if got := serviceVersions(f.services()); fmt.Sprint(got) != fmt.Sprint(serviceVersions(after)) {
		t.Errorf("the second apply of the quarantined B touched the services: versions %v, before %v", got, serviceVersions(after))
	}
	f.checkAgentSeesQuarantine(shaG, shaB, after)
}

// checkRollbackRecords: B is quarantined, its pass is in the history (the
// state dir's record; `lockstep history` asks the agent) as a rolled-back
// CLI pass that names web and G.
func (f *swarmFixture) checkRollbackRecords(shaG, shaB string) {
	t := f.t
	f.checkStateRecord("quarantine.json", map[string]string{"commit": shaB})
	f.checkStateRecord("history.json", map[string]string{"commit": shaB, "result": string(reconcile.ResultRolledBack),
		"trigger": "cli", "service": "web", "rolled_back_to": shaG})
	hist, err := f.stateRecords("history.json")
	if err == nil && len(hist) > 0 {
		last := hist[len(hist)-1]
		if e, _ := last["error"].(string); !strings.Contains(e, "web") {
			t.Errorf("history's last pass: its error does not name web: %v", last)
		}
		t.Logf("history's last pass: result %v, service %v, error %q", last["result"], last["service"], last["error"])
	}
}

// checkAgentSeesQuarantine starts the agent on the same state dir: its
// first pass (/healthz turns 200 once it finished) reports B quarantined,
// G running, the last failure naming web, and does not touch the stack.
func (f *swarmFixture) checkAgentSeesQuarantine(shaG, shaB string, before map[string]swarmapi.Service) {
	t := f.t
	a := f.startAgent()
	defer func() {
		a.signal(15)
		a.wait(60 * time.Second)
	}()
	eventually(t, 90*time.Second, "the agent's first pass (/healthz 200)", func() bool { return a.healthz() == 200 })
	st := f.status()
	if !slices.Contains(st.Quarantined, shaB) || st.LastHealthy != shaG || !strings.Contains(st.LastFailure, "web") {
		t.Errorf("agent status: want B %s quarantined, G %s last healthy, last failure naming web; got quarantined %v, last healthy %s, last failure %q",
			short12(shaB), short12(shaG), st.Quarantined, short12(st.LastHealthy), st.LastFailure)
	}
	if got := serviceVersions(f.services()); fmt.Sprint(got) != fmt.Sprint(serviceVersions(before)) {
		t.Errorf("the agent's first pass touched the stack: versions %v, before %v", got, serviceVersions(before))
	}
}

// checkStackNames: the stack's objects are named and labelled as docker
// stack deploy names them: services <stack>_<key>, and the namespace
// label on the services, networks and configs.
func (f *swarmFixture) checkStackNames() {
	t := f.t
	for key, s := range f.services() {
		if s.Spec.Name != f.project+"_"+key || s.Spec.Labels[compose.LabelStackNamespace] != f.project {
			t.Errorf("service %s: name %s, labels %v", key, s.Spec.Name, s.Spec.Labels)
		}
	}
	nets := f.networkNames()
	if !slices.Contains(nets, f.project+"_default") {
		t.Errorf("the stack's networks (by namespace label): %v, want %s_default", nets, f.project)
	}
	confs := f.configNames()
	if len(confs) != 1 || !strings.HasPrefix(confs[0], f.project+"_worker_conf") {
		t.Errorf("the stack's configs (by namespace label): %v", confs)
	}
}

func (f *swarmFixture) networkNames() []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+f.project)
	list, err := f.cli.NetworkList(ctx, client.NetworkListOptions{Filters: ns})
	must(f.t, err)
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}
