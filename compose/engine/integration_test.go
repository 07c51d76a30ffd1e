package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// fixture is one test's world: a real engine, its own registry and a
// project name nobody else uses, cleaned up (and checked) at the end.
type fixture struct {
	cli     *client.Client
	eng     *Engine
	reg     string
	project string
	// afterCleanup runs once CleanupProject has run, to check what the
	// label-based cleanup cannot see.
	afterCleanup []func()
}

func newFixture(t testing.TB, prefix string) *fixture {
	t.Helper()
	cli := harness.RequireDocker(t)
	f := &fixture{
		cli:     cli,
		eng:     New(cli, zerolog.New(zerolog.NewTestWriter(t))),
		reg:     harness.StartRegistry(t),
		project: harness.UniqueProject(t, prefix),
	}
	// Registered before CleanupProject, so it runs after it.
	t.Cleanup(func() {
		for _, check := range f.afterCleanup {
			check()
		}
	})
	harness.CleanupProject(t, cli, f.project, f.reg)
	return f
}

// ctx bounds a whole test: a hung engine call fails the test instead of
// hanging it. It is an upper bound, not a speed assertion.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) network(key string) compose.Network {
	return compose.Network{
		Key:  key,
		Name: f.project + "_" + key,
		Labels: map[string]string{
			compose.LabelProject: f.project, compose.LabelNetwork: key, compose.LabelVersion: "2.x",
		},
		Hash: "nethash-" + key,
	}
}

func (f *fixture) volume(key string) compose.Volume {
	return compose.Volume{
		Key:  key,
		Name: f.project + "_" + key,
		Labels: map[string]string{
			compose.LabelProject: f.project, compose.LabelVolume: key, compose.LabelVersion: "2.x",
		},
	}
}

// service builds what the compose loader would produce for a service on
// the given networks (the first is the primary), labelled as compose does.
func (f *fixture) service(name, image string, cmd []string, nets map[string][]string, primary string) compose.Service {
	eps := map[string]*network.EndpointSettings{}
	for n, aliases := range nets {
		eps[n] = &network.EndpointSettings{Aliases: aliases}
	}
	return compose.Service{
		Name:       name,
		Image:      image,
		PullPolicy: compose.PullMissing,
		Replicas:   1,
		Config: &container.Config{
			Image: image,
			Cmd:   cmd,
			Labels: map[string]string{
				compose.LabelProject:     f.project,
				compose.LabelService:     name,
				compose.LabelOneoff:      "False",
				compose.LabelConfigHash:  "cfg-" + name,
				compose.LabelWorkingDir:  "/srv/lockstep/releases/" + f.project + "/c0ffee",
				compose.LabelConfigFiles: "/srv/lockstep/releases/" + f.project + "/c0ffee/compose.yaml",
				compose.LabelVersion:     "2.x",
				compose.LabelEnvironment: "test",
				compose.LabelCommit:      "c0ffee",
				compose.LabelHash:        "hash-" + name,
			},
		},
		Host:       &container.HostConfig{NetworkMode: container.NetworkMode(primary)},
		Networking: &network.NetworkingConfig{EndpointsConfig: eps},
		ConfigHash: "cfg-" + name,
		Hash:       "hash-" + name,
	}
}

// waitFor polls cond until it holds or ctx ends; on timeout it fails with
// the last state cond described.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: gave up (%v); last state: %s", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (f *fixture) waitState(t *testing.T, ctx context.Context, id, state, health string) compose.Container {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var c compose.Container
	waitFor(t, wctx, fmt.Sprintf("container %s to be %s/%s", shortID(id), state, health), func() (bool, string) {
		var err error
		c, err = f.eng.InspectContainer(wctx, id)
		if err != nil {
			return false, err.Error()
		}
		return c.State == state && (health == "" || c.Health == health), fmt.Sprintf("state=%s health=%s exit=%d", c.State, c.Health, c.ExitCode)
	})
	return c
}

func mountAt(mounts []container.MountPoint, dst string) (container.MountPoint, bool) {
	for _, m := range mounts {
		if m.Destination == dst {
			return m, true
		}
	}
	return container.MountPoint{}, false
}

func TestPull(t *testing.T) {
	f := newFixture(t, "pull")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "app", "v1", harness.ImageOptions{Env: []string{"VERSION=v1"}})

	id, err := f.eng.Pull(ctx, ref)
	if err != nil {
		t.Fatalf("Pull(%s): %v", ref, err)
	}
	img, err := f.cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("the pulled image is not in the engine: %v", err)
	}
	if img.ID != id {
		t.Fatalf("Pull returned %s, the engine has %s", id, img.ID)
	}

	for _, missing := range []string{f.reg + "/app:nope", f.reg + "/nothing:v1"} {
		_, err = f.eng.Pull(ctx, missing)
		if err == nil {
			t.Fatalf("Pull(%s) of a missing image succeeded", missing)
		}
		if !cerrdefs.IsNotFound(err) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("Pull(%s): error %q should say not found, name the image, and be a not-found error", missing, err)
		}
		t.Logf("Pull(%s): %v", missing, err)
	}
}

// TestPullStreamError makes the registry fail after the engine has started
// answering: the failure arrives inside the progress stream of an HTTP 200,
// and Pull must still fail, naming the image and what went wrong.
//
// Only the image config blob fails. The daemon shares layer downloads
// between concurrent pulls by digest, whatever the registry, and every test
// image has the same layer: a failing layer here would stall other tests'
// pulls for its retries.
func TestPullStreamError(t *testing.T) {
	f := newFixture(t, "pullstream")
	ctx := testContext(t)
	var broken atomic.Value // the blob path that fails, once set
	broken.Store("")
	regHandler := harness.Registry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := broken.Load().(string); p != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, p) {
			http.Error(w, "disk on fire", http.StatusInternalServerError)
			return
		}
		regHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	harness.CleanupProject(t, f.cli, f.project, reg)
	// A config unique to this test, so no other pull can be fetching it.
	ref := harness.PushTestApp(t, reg, "app", "v1", harness.ImageOptions{Env: []string{"NONCE=" + f.project}})
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(parsed, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	broken.Store("/blobs/" + cfg.String())

	_, err = f.eng.Pull(ctx, ref)
	if err == nil {
		t.Fatalf("Pull(%s) succeeded while the registry fails its config blob", ref)
	}
	var pe *PullError
	if !errors.As(err, &pe) || pe.NotFound || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Pull(%s) = %v, want a PullError naming the image and the registry's 500, not a not-found", ref, err)
	}
	t.Logf("Pull(%s): %v", ref, err)
	if _, err := f.cli.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		t.Errorf("a failed pull left image %s behind (%v)", ref, err)
	}
}

// TestContainerLifecycle walks a service through what apply does to it:
// networks, volume, pull, create (two networks, named and anonymous
// volumes), start, health, observe, a recreate that inherits the anonymous
// volume, stop, remove, rename; and a second container sharing its network
// namespace.
func TestContainerLifecycle(t *testing.T) {
	f := newFixture(t, "life")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "web", "v1", harness.ImageOptions{Env: []string{"VERSION=v1"}})

	front, back, data := f.network("front"), f.network("back"), f.volume("data")
	web := f.service("web", ref, nil, map[string][]string{front.Name: {"web"}, back.Name: {"web-back"}}, front.Name)
	web.Config.Env = []string{"DATA_DIR=/data"}
	web.Config.Volumes = map[string]struct{}{"/anon": {}}
	web.Config.Healthcheck = &container.HealthConfig{
		Test: []string{"CMD", "/app", "healthcheck"}, Interval: time.Second, Timeout: 5 * time.Second, Retries: 30,
	}
	web.Healthcheck = true
	web.Host.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: data.Name, Target: "/data"}}
	side := f.service("side", ref, []string{"get", "http://127.0.0.1:8080/version"}, nil, "service:web")
	probe := f.service("probe", ref, []string{"get", "http://web-back:8080/version"}, map[string][]string{back.Name: nil}, back.Name)
	p := &compose.Project{
		Name: f.project, Environment: "test", Commit: "c0ffee",
		Networks: []compose.Network{back, front},
		Volumes:  []compose.Volume{data},
		Services: []compose.Service{web, side, probe},
	}

	// Anonymous volumes carry no project label; remember the one we make
	// and check that the harness cleanup removed it all the same.
	var anonVolume string
	f.afterCleanup = append(f.afterCleanup, func() {
		if anonVolume == "" {
			return
		}
		if _, err := f.cli.VolumeInspect(context.Background(), anonVolume, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("anonymous volume %s survived cleanup (err %v)", anonVolume, err)
		}
	})

	for range 2 { // twice: a re-run after a crash must not fail
		for _, n := range p.Networks {
			if err := f.eng.CreateNetwork(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.eng.CreateVolume(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	imageID, err := f.eng.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	webName := f.project + "-web-1"
	oldID, err := f.eng.CreateContainer(ctx, p, p.Service("web"), 1, webName, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.cli.ContainerInspect(ctx, oldID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if raw.Container.State.Status != "created" {
		t.Errorf("CreateContainer must not start the container; state %s", raw.Container.State.Status)
	}
	if got := raw.Container.Config.Labels[compose.LabelImage]; got != imageID {
		t.Errorf("label %s = %q, want the local image ID %s", compose.LabelImage, got, imageID)
	}
	if got := raw.Container.HostConfig.NetworkMode; got != container.NetworkMode(front.Name) {
		t.Errorf("network mode %s, want the primary network %s", got, front.Name)
	}
	for n, alias := range map[string]string{front.Name: "web", back.Name: "web-back"} {
		ep := raw.Container.NetworkSettings.Networks[n]
		if ep == nil || !slices.Contains(ep.Aliases, alias) {
			t.Errorf("network %s: endpoint %+v, want it attached with alias %s", n, ep, alias)
		}
	}
	oldAnon, ok := mountAt(raw.Container.Mounts, "/anon")
	if !ok || oldAnon.Type != mount.TypeVolume || oldAnon.Name == "" {
		t.Fatalf("no anonymous volume at /anon: %+v", raw.Container.Mounts)
	}
	anonVolume = oldAnon.Name
	if m, ok := mountAt(raw.Container.Mounts, "/data"); !ok || m.Name != data.Name {
		t.Errorf("/data mount %+v, want volume %s", m, data.Name)
	}

	if err := f.eng.StartContainer(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, ctx, oldID, "running", "healthy")

	obs, err := f.eng.Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Containers) != 1 {
		t.Fatalf("observed containers %+v, want only web", obs.Containers)
	}
	c := obs.Containers[0]
	want := compose.Container{
		ID: oldID, Name: webName, Service: "web", Number: 1, State: "running", Health: "healthy",
		Image: ref, ImageID: imageID, Hash: "hash-web", ConfigHash: "cfg-web", Commit: "c0ffee",
		WorkingDir: web.Config.Labels[compose.LabelWorkingDir],
	}
	labels := c.Labels
	c.Labels = nil
	endpoints := c.Networks
	c.Networks = nil
	if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", want) {
		t.Errorf("observed\n %+v\nwant\n %+v", c, want)
	}
	if labels[compose.LabelImage] != imageID || labels[compose.LabelContainerNumber] != "1" || labels[compose.LabelOneoff] != "False" {
		t.Errorf("observed labels %v lack the per-container compose labels", labels)
	}
	if obs.Project != f.project || obs.Images[ref] != imageID {
		t.Errorf("observed project %q images %v", obs.Project, obs.Images)
	}
	var netNames []string
	for _, n := range obs.Networks {
		netNames = append(netNames, n.Name)
		if n.ID == "" || n.Labels[compose.LabelProject] != f.project || n.Labels[compose.LabelHash] != "nethash-"+n.Labels[compose.LabelNetwork] {
			t.Errorf("observed network %+v: want an ID, the project label and lockstep.hash", n)
		}
	}
	if !slices.Equal(netNames, []string{back.Name, front.Name}) {
		t.Errorf("observed networks %v, want [%s %s] sorted", netNames, back.Name, front.Name)
	}
	if len(obs.Volumes) != 1 || obs.Volumes[0].Name != data.Name || obs.Volumes[0].Labels[compose.LabelVolume] != "data" {
		t.Errorf("observed volumes %+v, want only %s with its labels", obs.Volumes, data.Name)
	}
	checkEndpoints(t, obs, endpoints, map[string]string{front.Name: "web", back.Name: "web-back"})

	// A disconnect by hand shows in Observe; ConnectNetwork puts the
	// endpoint back with the service's alias, without a restart (the probe
	// below reaches web by that alias).
	if _, err := f.cli.NetworkDisconnect(ctx, back.Name, client.NetworkDisconnectOptions{Container: oldID}); err != nil {
		t.Fatal(err)
	}
	if obs, err = f.eng.Observe(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, on := obs.Containers[0].Networks[back.Name]; on {
		t.Fatalf("observed endpoints after a disconnect by hand: %+v, want %s gone", obs.Containers[0].Networks, back.Name)
	}
	if err := f.eng.DisconnectNetwork(ctx, oldID, front.Name); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{back.Name, front.Name} {
		if err := f.eng.ConnectNetwork(ctx, p.Service("web"), oldID, n); err != nil {
			t.Fatal(err)
		}
	}
	if obs, err = f.eng.Observe(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkEndpoints(t, obs, obs.Containers[0].Networks, map[string]string{front.Name: "web", back.Name: "web-back"})
	if after := obs.Containers[0]; after.ID != oldID || after.State != "running" || after.RestartCount != 0 {
		t.Errorf("web after a reconnect: %s %s restarts %d, want %s still running", after.ID, after.State, after.RestartCount, oldID)
	}

	// network_mode: service:web shares web's network stack: it reaches web
	// on 127.0.0.1. The probe reaches it by the alias on the network that
	// was connected after the create.
	sideID, err := f.eng.CreateContainer(ctx, p, p.Service("side"), 1, f.project+"-side-1", "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err = f.cli.ContainerInspect(ctx, sideID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Container.HostConfig.NetworkMode; got != container.NetworkMode("container:"+oldID) {
		t.Errorf("side network mode %s, want container:%s", got, oldID)
	}
	probeID, err := f.eng.CreateContainer(ctx, p, p.Service("probe"), 1, f.project+"-probe-1", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sideID, probeID} {
		if err := f.eng.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if c := f.waitState(t, ctx, id, "exited", ""); c.ExitCode != 0 {
			t.Errorf("%s could not reach web (exit %d)", c.Name, c.ExitCode)
		}
	}

	// Recreate, the way apply does it: new container beside the old one,
	// inheriting its anonymous volume; stop and remove the old; rename.
	newID, err := f.eng.CreateContainer(ctx, p, p.Service("web"), 1, shortID(oldID)+"_"+webName, oldID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = f.cli.ContainerInspect(ctx, newID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mountAt(raw.Container.Mounts, "/anon"); !ok || m.Name != oldAnon.Name {
		t.Fatalf("recreated container mounts %+v at /anon, want the inherited volume %s", m, oldAnon.Name)
	}
	if m, ok := mountAt(raw.Container.Mounts, "/data"); !ok || m.Name != data.Name {
		t.Errorf("recreated /data mount %+v, want volume %s", m, data.Name)
	}
	grace := 10 * time.Second
	if err := f.eng.StopContainer(ctx, oldID, &grace); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.RemoveContainer(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.VolumeInspect(ctx, oldAnon.Name, client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("RemoveContainer removed the anonymous volume %s: %v", oldAnon.Name, err)
	}
	if err := f.eng.RenameContainer(ctx, newID, webName); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.StartContainer(ctx, newID); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, ctx, newID, "running", "healthy")

	obs, err = f.eng.Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range obs.Containers {
		got = append(got, fmt.Sprintf("%s/%d %s %s", c.Service, c.Number, c.Name, c.State))
	}
	wantList := []string{
		fmt.Sprintf("probe/1 %s-probe-1 exited", f.project),
		fmt.Sprintf("side/1 %s-side-1 exited", f.project),
		fmt.Sprintf("web/1 %s running", webName),
	}
	if !slices.Equal(got, wantList) {
		t.Errorf("observed after recreate %v, want %v", got, wantList)
	}
	if i := slices.IndexFunc(obs.Containers, func(c compose.Container) bool { return c.Service == "web" }); i < 0 || obs.Containers[i].ID != newID {
		t.Errorf("web is not the recreated container %s", shortID(newID))
	}

	// The old container is gone: callers can tell "not found" apart.
	if err := f.eng.RemoveContainer(ctx, oldID); !cerrdefs.IsNotFound(err) {
		t.Errorf("RemoveContainer of a removed container: %v, want a not-found error", err)
	}
	if _, err := f.eng.InspectContainer(ctx, oldID); !cerrdefs.IsNotFound(err) {
		t.Errorf("InspectContainer of a removed container: %v, want a not-found error", err)
	}

	// nil timeout: the container's own; testapp exits 0 on SIGTERM.
	if err := f.eng.StopContainer(ctx, newID, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := f.eng.InspectContainer(ctx, newID); err != nil || c.State != "exited" || c.ExitCode != 0 {
		t.Errorf("after stop: %+v, %v; want exited with 0", c, err)
	}
}

// TestObserveScope checks what Observe includes and leaves out, and how
// creates treat objects that exist already.
func TestObserveScope(t *testing.T) {
	f := newFixture(t, "scope")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "job", "v1", harness.ImageOptions{Env: []string{"EXIT_CODE=3"}})

	// Objects without the project label: the harness cannot find them by
	// label, so this test removes them itself.
	foreignNet, foreignVol := f.project+"_foreign", f.project+"_legacy"
	if _, err := f.cli.NetworkCreate(ctx, foreignNet, client.NetworkCreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cli.NetworkRemove(context.Background(), foreignNet, client.NetworkRemoveOptions{}) })
	if _, err := f.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: foreignVol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cli.VolumeRemove(context.Background(), foreignVol, client.VolumeRemoveOptions{}) })

	def := f.network("default")
	foreign := f.network("foreign")
	foreign.External = true
	missing := f.network("missing")
	legacy := f.volume("legacy")
	job := f.service("job", ref, []string{"once"}, map[string][]string{def.Name: {"job"}}, def.Name)
	absent := f.service("absent", f.reg+"/absent:v1", nil, nil, "")
	p := &compose.Project{
		Name:     f.project,
		Networks: []compose.Network{def, foreign, missing},
		Volumes:  []compose.Volume{legacy, f.volume("missing")},
		Services: []compose.Service{absent, job},
	}

	if err := f.eng.CreateNetwork(ctx, def); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.CreateNetwork(ctx, foreign); err != nil {
		t.Errorf("external network that exists: %v", err)
	}
	notExternal := foreign
	notExternal.External = false
	if err := f.eng.CreateNetwork(ctx, notExternal); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("CreateNetwork over an unlabelled network of the same name: %v, want an 'already exists' error", err)
	}
	ghost := f.network("ghost")
	ghost.External = true
	if err := f.eng.CreateNetwork(ctx, ghost); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("CreateNetwork of a missing external network: %v, want 'does not exist'", err)
	}
	// An unlabelled volume is adopted, never replaced: it may hold data.
	if err := f.eng.CreateVolume(ctx, legacy); err != nil {
		t.Errorf("CreateVolume over an unlabelled volume: %v", err)
	}
	if _, err := f.eng.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	jobID, err := f.eng.CreateContainer(ctx, p, p.Service("job"), 1, f.project+"-job-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.eng.StartContainer(ctx, jobID); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, ctx, jobID, "exited", "")
	if _, err := f.eng.CreateContainer(ctx, p, p.Service("absent"), 1, f.project+"-absent-1", ""); err == nil || !strings.Contains(err.Error(), "not present locally") {
		t.Errorf("CreateContainer with an image never pulled: %v, want 'not present locally'", err)
	}

	// A one-off container (`docker compose run`) of the same project.
	oneoff, err := f.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: f.project + "-job-run-1",
		Config: &container.Config{Image: ref, Cmd: []string{"once"}, Labels: map[string]string{
			compose.LabelProject: f.project, compose.LabelService: "job", compose.LabelOneoff: "True",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	obs, err := f.eng.Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Containers) != 1 || obs.Containers[0].ID != jobID {
		t.Fatalf("observed %+v, want only the job container (one-off %s excluded)", obs.Containers, shortID(oneoff.ID))
	}
	if c := obs.Containers[0]; c.State != "exited" || c.ExitCode != 3 || c.Health != "" || c.RestartCount != 0 {
		t.Errorf("job observed as %+v, want exited with 3, no health", c)
	}
	var nets []string
	for _, n := range obs.Networks {
		nets = append(nets, fmt.Sprintf("%s project=%q", n.Name, n.Labels[compose.LabelProject]))
	}
	wantNets := []string{
		fmt.Sprintf("%s project=%q", def.Name, f.project),
		fmt.Sprintf("%s project=%q", foreignNet, ""),
	}
	if !slices.Equal(nets, wantNets) {
		t.Errorf("observed networks %v, want %v (the missing one absent)", nets, wantNets)
	}
	if len(obs.Volumes) != 1 || obs.Volumes[0].Name != foreignVol || len(obs.Volumes[0].Labels) != 0 {
		t.Errorf("observed volumes %+v, want only the unlabelled %s", obs.Volumes, foreignVol)
	}
	if _, ok := obs.Images[absent.Image]; ok || obs.Images[ref] == "" || len(obs.Images) != 1 {
		t.Errorf("observed images %v, want only %s", obs.Images, ref)
	}
}

func TestConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host := "unix:///nonexistent/lockstep-test/docker.sock"
	_, err := Connect(ctx, host)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the Docker engine at "+host) || !strings.Contains(err.Error(), "is dockerd running") {
		t.Fatalf("Connect(%s) = %v, want a clear unreachable error", host, err)
	}

	harness.RequireDocker(t) // the rest needs the real engine
	cli, err := Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ping, err := cli.Ping(ctx, client.PingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon here speaks an older API than the client's newest: the
	// client must have negotiated down to it.
	if ping.APIVersion != client.MaxAPIVersion && cli.ClientVersion() != ping.APIVersion {
		t.Errorf("client speaks API %s, daemon %s: not negotiated", cli.ClientVersion(), ping.APIVersion)
	}
}

// BenchmarkObserve50 measures Observe on a project of 50 containers that
// were created, not started: the worst case, each one is inspected (the
// list lacks the exit code of a container that is not running).
//
//	go test ./compose/engine -run '^$' -bench Observe50 -benchtime 20x
func BenchmarkObserve50(b *testing.B) {
	f := newFixture(b, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ref := harness.PushTestApp(b, f.reg, "app", "v1", harness.ImageOptions{})
	if _, err := f.eng.Pull(ctx, ref); err != nil {
		b.Fatal(err)
	}
	def := f.network("default")
	if err := f.eng.CreateNetwork(ctx, def); err != nil {
		b.Fatal(err)
	}
	svc := f.service("app", ref, nil, map[string][]string{def.Name: {"app"}}, def.Name)
	p := &compose.Project{Name: f.project, Networks: []compose.Network{def}, Services: []compose.Service{svc}}
	for n := 1; n <= 50; n++ {
		if _, err := f.eng.CreateContainer(ctx, p, &p.Services[0], n, svc.ContainerNameFor(f.project, n), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		obs, err := f.eng.Observe(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		if len(obs.Containers) != 50 {
			b.Fatalf("observed %d containers, want 50", len(obs.Containers))
		}
	}
}

// checkEndpoints fails unless endpoints are exactly the networks of want,
// each on the observed network's ID and with the alias want names.
func checkEndpoints(t *testing.T, obs compose.Observed, endpoints map[string]compose.Endpoint, want map[string]string) {
	t.Helper()
	if len(endpoints) != len(want) {
		t.Errorf("observed endpoints %+v, want exactly %v", endpoints, want)
	}
	for _, n := range obs.Networks {
		alias, ok := want[n.Name]
		if !ok {
			continue
		}
		ep, on := endpoints[n.Name]
		if !on || ep.NetworkID != n.ID || !slices.Contains(ep.Aliases, alias) {
			t.Errorf("observed endpoint on %s: %+v, want network ID %s and alias %s", n.Name, ep, n.ID, alias)
		}
	}
}
