package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/e2e/swarmtest"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// swarmFixture is the e2e fixture of a swarm environment: lockstep's
// engine is the swarm's first manager, the images are served where every
// node pulls them (swarmtest.StartRegistry), the environment's backend is
// "swarm", and the stack is named after the project.
type swarmFixture struct {
	*fixture
	sw  *swarmtest.Swarm
	cli *client.Client // the first manager
}

func newSwarmFixture(t *testing.T) *swarmFixture {
	sw := swarmtest.Require(t)
	f := &fixture{t: t, images: map[string]string{}}
	f.registry = sw.StartRegistry(t)
	f.project = strings.ReplaceAll(harness.UniqueProject(t, "lss"), "-", "")
	for _, im := range []struct{ repo, tag string }{{"web", "a"}, {"web", "b"}, {"worker", "a"}, {"db", "a"}} {
		f.images[im.repo+":"+im.tag] = harness.PushTestApp(t, f.registry, im.repo, im.tag,
			harness.ImageOptions{Env: []string{"VERSION=" + im.tag}})
	}
	sf := &swarmFixture{fixture: f, sw: sw, cli: sw.Client(t, 0)}
	// Only the leader applies (elsewhere apply is held), and another
	// test's StopNode may have moved the leadership off node 0; it does
	// not move while this test runs: StopNode waits for the tests that
	// share the swarm.
	f.agentExtra = fmt.Sprintf("\n[engine]\nhost = %q\n", sw.Hosts[sw.Leader(t)])
	f.setupGitAndConfig()
	f.writeConfig("backend = \"swarm\"\n")
	t.Cleanup(func() { sf.removeStack() })
	return sf
}

// removeStack removes what the test's stack left on the swarm: its
// services first (waiting for their tasks to go), then its networks,
// configs and secrets.
func (f *swarmFixture) removeStack() {
	t := f.t
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+f.project)
	svcs, err := f.cli.ServiceList(ctx, client.ServiceListOptions{Filters: ns})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, s := range svcs.Items {
		if _, err := f.cli.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil {
			t.Errorf("cleanup: remove service %s: %v", s.Spec.Name, err)
		}
	}
	for {
		tasks, err := f.cli.TaskList(ctx, client.TaskListOptions{Filters: ns})
		if err != nil || len(tasks.Items) == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cs, err := f.cli.ConfigList(ctx, client.ConfigListOptions{Filters: ns}); err == nil {
		for _, c := range cs.Items {
			_, _ = f.cli.ConfigRemove(ctx, c.ID, client.ConfigRemoveOptions{})
		}
	}
	if ss, err := f.cli.SecretList(ctx, client.SecretListOptions{Filters: ns}); err == nil {
		for _, s := range ss.Items {
			_, _ = f.cli.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{})
		}
	}
	// A network is freed once its tasks' endpoints are: retried until then.
	for ctx.Err() == nil {
		nets, err := f.cli.NetworkList(ctx, client.NetworkListOptions{Filters: ns})
		if err != nil || len(nets.Items) == 0 {
			break
		}
		for _, n := range nets.Items {
			_, _ = f.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.sw.WaitNetworksGone(t, f.project+"_", time.Minute)
}

// services is the stack's services by compose key.
func (f *swarmFixture) services() map[string]swarmapi.Service {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+f.project)
	list, err := f.cli.ServiceList(ctx, client.ServiceListOptions{Filters: ns})
	must(f.t, err)
	out := map[string]swarmapi.Service{}
	for _, s := range list.Items {
		out[strings.TrimPrefix(s.Spec.Name, f.project+"_")] = s
	}
	return out
}

func swarmStackYAML(web, worker, conf string) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
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
    configs:
      - source: worker_conf
        target: /etc/worker/config.txt
    deploy:
      endpoint_mode: dnsrr
configs:
  worker_conf:
    file: ./worker/config.txt
`, web, worker) + conf
}

// TestSwarmStackReleases: a stack deployed to the three-manager swarm by
// lockstep apply, listed as docker stack deploy would make it; an apply of
// the same release changes nothing; a release changing only web's image
// updates only web, to a digest; one changing only the worker's config
// file makes a new config object, updates only the worker, and the old
// object is gone after convergence.
func TestSwarmStackReleases(t *testing.T) {
	f := newSwarmFixture(t)
	files := func(web, conf string) map[string]string {
		return map[string]string{"compose.yaml": swarmStackYAML(f.images[web], f.images["worker:a"], ""), "worker/config.txt": conf}
	}
	f.release("stack 1", files("web:a", "one\n"))
	r := f.apply()
	t.Logf("first apply:\n%s", r.stdout)
	svcs := f.services()
	if len(svcs) != 2 {
		t.Fatalf("services after the first apply: %v", svcs)
	}
	web := svcs["web"]
	if web.Spec.Labels[compose.LabelStackNamespace] != f.project || web.Spec.Labels["com.docker.stack.image"] != f.images["web:a"] ||
		!strings.Contains(web.Spec.TaskTemplate.ContainerSpec.Image, "@sha256:") || *web.Spec.Mode.Replicated.Replicas != 3 {
		t.Fatalf("web as deployed: labels %v image %s", web.Spec.Labels, web.Spec.TaskTemplate.ContainerSpec.Image)
	}
	if p := f.plan(); len(p.Actions) != 0 {
		t.Fatalf("plan after the apply is not empty: %+v", p.Actions)
	}

	f.release("web b", files("web:b", "one\n"))
	p := f.plan()
	if len(p.Actions) != 1 || p.Actions[0].Kind != reconcile.ActUpdate || p.Actions[0].Service != "web" {
		t.Fatalf("plan of a web image change: %+v", p.Actions)
	}
	worker0 := f.services()["worker"].Version.Index
	r = f.apply()
	t.Logf("web update:\n%s", r.stdout)
	svcs = f.services()
	if svcs["worker"].Version.Index != worker0 {
		t.Fatalf("the worker was updated by a release that changed only web")
	}
	if img := svcs["web"].Spec.TaskTemplate.ContainerSpec.Image; !strings.HasPrefix(img, f.images["web:b"]+"@sha256:") {
		t.Fatalf("web's image after the update: %s", img)
	}

	oldConfigs := f.configNames()
	f.release("worker config two", files("web:b", "two\n"))
	web0 := f.services()["web"].Version.Index
	r = f.apply()
	t.Logf("config update:\n%s", r.stdout)
	svcs = f.services()
	if svcs["web"].Version.Index != web0 {
		t.Fatalf("web was updated by a release that changed only the worker's config")
	}
	newConfigs := f.configNames()
	if len(newConfigs) != 1 || len(oldConfigs) != 1 || newConfigs[0] == oldConfigs[0] {
		t.Fatalf("configs before %v, after %v: want one new object and the old one removed", oldConfigs, newConfigs)
	}
}

func (f *swarmFixture) configNames() []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+f.project)
	list, err := f.cli.ConfigList(ctx, client.ConfigListOptions{Filters: ns})
	must(f.t, err)
	var out []string
	for _, c := range list.Items {
		out = append(out, c.Spec.Name)
	}
	return out
}
