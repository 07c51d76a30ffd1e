package engine

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/e2e/swarmtest"
)

type swarmFixture struct {
	cli *client.Client
	sw  *Swarm
	// counted is a Swarm on its own client whose requests are recorded
	// in calls, to check what an observation costs.
	counted *Swarm
	calls   []string
	ns      string // the stack namespace, unique to the test
	regIP   string // where the test's registries listen: every node reaches it
	reg     string // the test's registry, regIP:PORT
	nodes   int    // how many nodes the swarm has
}

// requireSwarm is the swarm the Swarm integration tests run against: the
// three managers of .ci/swarm (e2e/swarmtest), through the first one. The
// tests assume nothing of the node count or which node leads.
func requireSwarm(t *testing.T) *swarmFixture {
	t.Helper()
	s := swarmtest.Require(t)
	// Registered first, so it runs once the fixture removed its networks.
	var ns string
	t.Cleanup(func() {
		if ns != "" {
			s.WaitNetworksGone(t, ns, time.Minute)
		}
	})
	f := newSwarmFixture(t, s.Hosts[0], s.RegistryAddr, len(s.Hosts))
	ns = f.ns
	return f
}

// newSwarmFixture is a fixture on the swarm manager at host, whose nodes
// reach the test process at regIP.
func newSwarmFixture(t *testing.T, host, regIP string, nodes int) *swarmFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := Connect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	f := &swarmFixture{
		cli:   cli,
		sw:    NewSwarm(cli, zerolog.New(zerolog.NewTestWriter(t))),
		ns:    strings.ReplaceAll(harness.UniqueProject(t, "lst"), "-", ""),
		regIP: regIP,
		nodes: nodes,
	}
	f.reg = f.startRegistry(t, harness.Registry())
	counting, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation(),
		client.WithHTTPRequestHook(func(r *http.Request) error {
			f.calls = append(f.calls, r.Method+" "+r.URL.Path[strings.LastIndex(r.URL.Path, "/"):])
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counting.Close() })
	if _, err := counting.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatal(err)
	}
	f.counted = NewSwarm(counting, zerolog.Nop())
	// Registered first, so it runs last, once the services' containers
	// are gone: the images the engine pulled from the test's registry.
	harness.CleanupProject(t, cli, f.ns, f.reg)
	t.Cleanup(func() { f.cleanup(t) })
	return f
}

// cleanup removes every service, network, config and secret of the
// test's stack, and those it named after it without the label (its
// "externals"), waiting for the tasks to be gone so the networks can go.
func (f *swarmFixture) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byName := make(client.Filters).Add("name", f.ns)
	services, err := f.cli.ServiceList(ctx, client.ServiceListOptions{Filters: byName})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, s := range services.Items {
		if err := f.sw.RemoveService(ctx, s.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	// The swarm removes the services' containers a moment later, also
	// those of services the test removed itself.
	byContainerName := make(client.Filters).Add("name", f.ns+"_")
	err = pollUntil(ctx, func() (bool, error) {
		list, err := f.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: byContainerName})
		return err == nil && len(list.Items) == 0, err
	})
	if err != nil {
		t.Errorf("cleanup: the containers of the stack's services: %v", err)
	}
	configs, _ := f.cli.ConfigList(ctx, client.ConfigListOptions{Filters: byName})
	for _, c := range configs.Items {
		if err := f.sw.RemoveConfig(ctx, c.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	secrets, _ := f.cli.SecretList(ctx, client.SecretListOptions{Filters: byName})
	for _, s := range secrets.Items {
		if err := f.sw.RemoveSecret(ctx, s.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	nets, _ := f.cli.NetworkList(ctx, client.NetworkListOptions{Filters: byName})
	for _, n := range nets.Items {
		// The network goes once the removed services' tasks have left it.
		err := pollUntil(ctx, func() (bool, error) { return f.sw.RemoveNetwork(ctx, n.ID) == nil, nil })
		if err != nil {
			t.Errorf("cleanup: network %s still in use: %v", n.Name, f.sw.RemoveNetwork(ctx, n.ID))
		}
	}
}

// pollUntil polls cond every 200ms until it holds, fails, or ctx ends.
func pollUntil(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// registryDigest is the digest the test registry has for ref.
func registryDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}

func (f *swarmFixture) labels(extra ...string) map[string]string {
	l := map[string]string{compose.LabelStackNamespace: f.ns}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// serviceSpec is a one-replica service of the test app on network netID
// using config and secret, updated fast (start-first, 1s monitor).
func (f *swarmFixture) serviceSpec(image, netID string, cfg, sec idName) swarmapi.ServiceSpec {
	replicas := uint64(1)
	grace := time.Second
	return swarmapi.ServiceSpec{
		Annotations: swarmapi.Annotations{Name: f.ns + "_web", Labels: f.labels(compose.LabelStackImage, image, "lockstep.hash", "h1")},
		TaskTemplate: swarmapi.TaskSpec{
			ContainerSpec: &swarmapi.ContainerSpec{
				Image:           image,
				Labels:          f.labels(),
				StopGracePeriod: &grace,
				Configs: []*swarmapi.ConfigReference{{
					ConfigID: cfg.id, ConfigName: cfg.name,
					File: &swarmapi.ConfigReferenceFileTarget{Name: "/app.conf", UID: "0", GID: "0", Mode: 0o444},
				}},
				Secrets: []*swarmapi.SecretReference{{
					SecretID: sec.id, SecretName: sec.name,
					File: &swarmapi.SecretReferenceFileTarget{Name: "token", UID: "0", GID: "0", Mode: 0o400},
				}},
			},
			Networks: []swarmapi.NetworkAttachmentConfig{{Target: netID, Aliases: []string{"web"}}},
		},
		Mode:         swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		UpdateConfig: &swarmapi.UpdateConfig{Parallelism: 1, Order: swarmapi.UpdateOrderStartFirst, Monitor: time.Second},
	}
}

type idName struct{ id, name string }

// waitRunning waits until the service runs exactly one task, of image.
func (f *swarmFixture) waitRunning(ctx context.Context, t *testing.T, id, image string) compose.ObservedService {
	t.Helper()
	var svc compose.ObservedService
	err := pollUntil(ctx, func() (bool, error) {
		var err error
		if svc, err = f.sw.Service(ctx, id); err != nil {
			return false, err
		}
		running := 0
		for _, task := range svc.Tasks {
			if task.State == string(swarmapi.TaskStateRunning) && task.DesiredState == string(swarmapi.TaskStateRunning) {
				if task.Image != image {
					return false, nil
				}
				running++
			}
		}
		return running == 1, nil
	})
	if err != nil {
		t.Fatalf("service %s never ran one task of %s: %v; last seen %+v", id, image, err, svc.Tasks)
	}
	return svc
}

func mustNoErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// observeCounted observes desired through the counting client and
// returns the requests it made.
func (f *swarmFixture) observeCounted(ctx context.Context, t *testing.T, desired *compose.Stack) (compose.ObservedStack, []string) {
	t.Helper()
	f.calls = nil
	obs, err := f.counted.ObserveStack(ctx, desired)
	mustNoErr(t, "observe", err)
	return obs, f.calls
}

// startRegistry serves h on regIP:0 until the test ends and returns
// "regIP:PORT".
func (f *swarmFixture) startRegistry(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(f.regIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Addr().String()
}
