package engine

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestSwarmInfo checks Info on a manager: active, in a cluster of all the
// swarm's nodes, and leading exactly when the node list says it leads.
func TestSwarmInfo(t *testing.T) {
	f := requireSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := f.sw.Info(ctx)
	mustNoErr(t, "info", err)
	if info.State != "active" || !info.Manager || info.Nodes != f.nodes || info.Managers < 1 || info.NodeID == "" || info.ClusterID == "" {
		t.Fatalf("Info = %+v, want an active manager of a %d-node swarm", info, f.nodes)
	}
	nodes, err := f.cli.NodeList(ctx, client.NodeListOptions{})
	mustNoErr(t, "list nodes", err)
	for _, n := range nodes.Items {
		if leads := n.ManagerStatus != nil && n.ManagerStatus.Leader; n.ID == info.NodeID && leads != info.Leader {
			t.Fatalf("Info says leader=%v, the node list %v", info.Leader, leads)
		}
	}
}

// TestSwarmResolveImage checks that an image's tag resolves to the digest
// its registry has, that a pinned reference comes back unchanged, and
// that a missing tag or repository is a not-found error saying so.
func TestSwarmResolveImage(t *testing.T) {
	f := requireSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref := harness.PushTestApp(t, f.reg, f.ns+"/web", "v1", harness.ImageOptions{})
	want := ref + "@" + registryDigest(t, ref)
	got, err := f.sw.ResolveImage(ctx, ref)
	mustNoErr(t, "resolve", err)
	if got != want {
		t.Fatalf("ResolveImage(%s) = %s, want %s", ref, got, want)
	}
	if again, err := f.sw.ResolveImage(ctx, got); err != nil || again != got {
		t.Fatalf("ResolveImage(%s) = %s, %v; want it unchanged", got, again, err)
	}
	untagged := strings.TrimSuffix(ref, ":v1")
	harness.PushTestApp(t, f.reg, f.ns+"/web", "latest", harness.ImageOptions{Env: []string{"X=latest"}})
	latest, err := f.sw.ResolveImage(ctx, untagged)
	mustNoErr(t, "resolve untagged", err)
	if latest != untagged+":latest@"+registryDigest(t, untagged+":latest") {
		t.Fatalf("ResolveImage(%s) = %s, want its latest tag pinned", untagged, latest)
	}
	for _, missing := range []string{f.reg + "/" + f.ns + "/web:nope", f.reg + "/" + f.ns + "/nothing:v1"} {
		_, err := f.sw.ResolveImage(ctx, missing)
		if !errors.Is(err, cerrdefs.ErrNotFound) || !strings.Contains(err.Error(), "image "+missing+" not found in registry") {
			t.Errorf("ResolveImage(%s) = %v, want a not-found error naming the image", missing, err)
		}
	}
}

// TestSwarmStack creates a stack's network, config, secret and service,
// observes them back with their tasks and the nodes, finds externals by
// exact name only, updates the service's image until the update
// completes, is refused a stale version, and removes everything twice.
func TestSwarmStack(t *testing.T) {
	f := requireSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v1, err := f.sw.ResolveImage(ctx, harness.PushTestApp(t, f.reg, f.ns+"/web", "v1", harness.ImageOptions{}))
	mustNoErr(t, "resolve v1", err)
	v2, err := f.sw.ResolveImage(ctx, harness.PushTestApp(t, f.reg, f.ns+"/web", "v2", harness.ImageOptions{Env: []string{"V=2"}}))
	mustNoErr(t, "resolve v2", err)

	net := compose.StackNetwork{
		Key: "default", Name: f.ns + "_default", Attachable: true,
		Labels: f.labels("team", "a"), DriverOpts: map[string]string{"com.docker.network.driver.mtu": "1400"},
		IPAM: &compose.StackIPAM{Config: []compose.StackIPAMPool{{Subnet: "10.231.7.0/24", Gateway: "10.231.7.1"}}},
	}
	netID, err := f.sw.CreateNetwork(ctx, net)
	mustNoErr(t, "create network", err)
	cfg := compose.StackObject{Key: "conf", Name: f.ns + "_conf_0123456789ab", Labels: f.labels(compose.LabelContentHash, "0123")}.WithData([]byte("listen 80\n"))
	cfgID, err := f.sw.CreateConfig(ctx, cfg)
	mustNoErr(t, "create config", err)
	sec := compose.StackObject{Key: "token", Name: f.ns + "_token_ba9876543210", Labels: f.labels()}.WithData([]byte("s3cret"))
	secID, err := f.sw.CreateSecret(ctx, sec)
	mustNoErr(t, "create secret", err)
	desired := f.withExternals(ctx, t, &compose.Stack{Namespace: f.ns, Networks: []compose.StackNetwork{net}, Configs: []compose.StackObject{cfg}, Secrets: []compose.StackObject{sec}})

	svcID, err := f.sw.CreateService(ctx, f.serviceSpec(v1, netID, idName{cfgID, cfg.Name}, idName{secID, sec.Name}))
	mustNoErr(t, "create service", err)
	f.waitRunning(ctx, t, svcID, v1)

	obs, calls := f.observeCounted(ctx, t, desired)
	wantCalls := []string{"GET /services", "GET /tasks", "GET /networks", "GET /networks", "GET /configs", "GET /configs", "GET /secrets", "GET /secrets", "GET /nodes"}
	if !slices.Equal(calls, wantCalls) {
		t.Errorf("ObserveStack with a service and an external of each kind called %v, want %v", calls, wantCalls)
	}
	f.checkObserved(t, obs, svcID, v1, netID, cfgID, secID)

	f.checkUpdate(ctx, t, obs.Services[0], v2)

	mustNoErr(t, "remove service", f.sw.RemoveService(ctx, svcID))
	mustNoErr(t, "remove config", f.sw.RemoveConfig(ctx, cfgID))
	mustNoErr(t, "remove secret", f.sw.RemoveSecret(ctx, secID))
	// The network goes once the service's tasks have left it.
	if err := pollUntil(ctx, func() (bool, error) { return f.sw.RemoveNetwork(ctx, netID) == nil, nil }); err != nil {
		t.Fatalf("remove network: %v", f.sw.RemoveNetwork(ctx, netID))
	}
	for what, err := range map[string]error{
		"service": f.sw.RemoveService(ctx, svcID), "config": f.sw.RemoveConfig(ctx, cfgID),
		"secret": f.sw.RemoveSecret(ctx, secID), "network": f.sw.RemoveNetwork(ctx, netID),
	} {
		if err != nil {
			t.Errorf("removing the %s again = %v, want nil (already gone)", what, err)
		}
	}
	// A removed network is listed until the swarm has freed it.
	err = pollUntil(ctx, func() (bool, error) {
		obs, err = f.sw.ObserveStack(ctx, &compose.Stack{Namespace: f.ns})
		return err == nil && len(obs.Services)+len(obs.Networks)+len(obs.Configs)+len(obs.Secrets) == 0, err
	})
	if err != nil {
		t.Fatalf("after removal: %v; the stack still has %+v", err, obs)
	}
	if _, calls := f.observeCounted(ctx, t, &compose.Stack{Namespace: f.ns}); len(calls) != 5 {
		t.Errorf("ObserveStack of an empty stack without externals called %v, want the 5 lists (no tasks)", calls)
	}
}

// withExternals adds to desired an external network and config that
// exist without the stack's label, beside objects whose names only start
// with theirs, and an external secret that does not exist.
func (f *swarmFixture) withExternals(ctx context.Context, t *testing.T, desired *compose.Stack) *compose.Stack {
	t.Helper()
	for _, n := range []string{f.ns + "-ext", f.ns + "-ext2"} {
		_, err := f.sw.CreateNetwork(ctx, compose.StackNetwork{Name: n})
		mustNoErr(t, "create network "+n, err)
		_, err = f.sw.CreateConfig(ctx, compose.StackObject{Name: n}.WithData([]byte("x")))
		mustNoErr(t, "create config "+n, err)
	}
	desired.Networks = append(desired.Networks, compose.StackNetwork{Key: "ext", Name: f.ns + "-ext", External: true})
	desired.Configs = append(desired.Configs, compose.StackObject{Key: "ext", Name: f.ns + "-ext", External: true})
	desired.Secrets = append(desired.Secrets, compose.StackObject{Key: "ext", Name: f.ns + "-missing", External: true})
	return desired
}

func (f *swarmFixture) checkObserved(t *testing.T, obs compose.ObservedStack, svcID, image, netID, cfgID, secID string) {
	t.Helper()
	if obs.Namespace != f.ns || len(obs.Services) != 1 || len(obs.Networks) != 2 || len(obs.Configs) != 2 || len(obs.Secrets) != 1 {
		t.Fatalf("observed %+v, want one service, the network and config with an external each, one secret", obs)
	}
	svc := obs.Services[0]
	if svc.ID != svcID || svc.Name != f.ns+"_web" || svc.Version == 0 || svc.Labels()["lockstep.hash"] != "h1" ||
		svc.Spec.TaskTemplate.ContainerSpec.Image != image || svc.PreviousSpec != nil {
		t.Errorf("observed service %+v", svc)
	}
	if len(svc.Tasks) != 1 || svc.Tasks[0].State != "running" || svc.Tasks[0].Image != image || svc.Tasks[0].NodeID == "" || svc.Tasks[0].Slot != 1 {
		t.Errorf("observed tasks %+v, want one running task of %s", svc.Tasks, image)
	}
	// "-" sorts before "_": the externals come first.
	n := obs.Networks[1]
	if n.ID != netID || n.Name != f.ns+"_default" || n.Driver != "overlay" || n.Scope != "swarm" || !n.Attachable || n.Labels["team"] != "a" {
		t.Errorf("observed network %+v", n)
	}
	if obs.Networks[0].Name != f.ns+"-ext" {
		t.Errorf("observed external network %+v, want %s-ext only", obs.Networks[0], f.ns)
	}
	if c := obs.Configs[1]; c.ID != cfgID || c.Labels[compose.LabelContentHash] != "0123" || obs.Configs[0].Name != f.ns+"-ext" {
		t.Errorf("observed configs %+v", obs.Configs)
	}
	if s := obs.Secrets[0]; s.ID != secID || s.Labels[compose.LabelStackNamespace] != f.ns {
		t.Errorf("observed secrets %+v", obs.Secrets)
	}
	leaders := 0
	for i, n := range obs.Nodes {
		if n.Leader {
			leaders++
		}
		if n.ID == "" || n.Hostname == "" || n.State != "ready" || n.Availability != "active" || n.Role == "manager" && n.Reachability != "reachable" ||
			i > 0 && obs.Nodes[i-1].Hostname > n.Hostname {
			t.Errorf("observed node %+v (of %+v)", n, obs.Nodes)
		}
	}
	if len(obs.Nodes) != f.nodes || leaders != 1 {
		t.Errorf("observed nodes %+v, want %d with one leader, by hostname", obs.Nodes, f.nodes)
	}
}

// checkUpdate updates svc to image at its version, waits for the update
// to complete on a new task, and sends the old version again.
func (f *swarmFixture) checkUpdate(ctx context.Context, t *testing.T, svc compose.ObservedService, image string) {
	t.Helper()
	// The observed spec shares its pointers and maps: change copies.
	spec := svc.Spec
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Image = image
	spec.TaskTemplate.ContainerSpec = &cs
	spec.Labels = maps.Clone(spec.Labels)
	spec.Labels["lockstep.hash"] = "h2"
	mustNoErr(t, "update", f.sw.UpdateService(ctx, svc.ID, svc.Version, spec))
	var now compose.ObservedService
	err := pollUntil(ctx, func() (bool, error) {
		var err error
		now, err = f.sw.Service(ctx, svc.ID)
		return err == nil && now.UpdateState == string(swarmapi.UpdateStateCompleted), err
	})
	if err != nil {
		t.Fatalf("update never completed: %v; last seen %+v", err, now)
	}
	f.waitRunning(ctx, t, svc.ID, image)
	if now.Version <= svc.Version || now.PreviousSpec == nil || now.PreviousSpec.TaskTemplate.ContainerSpec.Image != svc.Spec.TaskTemplate.ContainerSpec.Image ||
		len(now.Tasks) < 2 || now.Tasks[0].Image != image {
		t.Errorf("after the update: version %d (was %d), previous spec %+v, tasks %+v", now.Version, svc.Version, now.PreviousSpec, now.Tasks)
	}
	err = f.sw.UpdateService(ctx, svc.ID, svc.Version, spec)
	if !errors.Is(err, ErrStaleVersion) || !strings.Contains(err.Error(), svc.Name) {
		t.Fatalf("update at a stale version = %v, want ErrStaleVersion naming the service", err)
	}
}
