package engine

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestObserveFromList checks, on the real engine, that observing from the
// container list plus remembered facts gives what inspecting every
// container gives, that the remembered facts are really used, and that
// they are dropped when the container's endpoints change (a reconnect
// with other aliases, a restart).
func TestObserveFromList(t *testing.T) {
	f := newFixture(t, "obslist")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "web", "v1", harness.ImageOptions{})
	def := f.network("default")
	web := f.service("web", ref, nil, map[string][]string{def.Name: {"web"}}, def.Name)
	web.Config.Healthcheck = &container.HealthConfig{
		Test: []string{"CMD", "/app", "healthcheck"}, Interval: time.Second, Timeout: 5 * time.Second, Retries: 30,
	}
	web.Healthcheck = true
	p := &compose.Project{Name: f.project, Networks: []compose.Network{def}, Services: []compose.Service{web}}
	if err := f.eng.CreateNetwork(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	id, err := f.eng.CreateContainer(ctx, p, &p.Services[0], 1, web.ContainerNameFor(f.project, 1), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.eng.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, ctx, id, "running", "healthy")

	dir := t.TempDir()
	f.eng.RememberFactsIn(dir)
	observe := func(e *Engine) compose.Container {
		t.Helper()
		obs, err := e.Observe(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(obs.Containers) != 1 {
			t.Fatalf("observed %+v, want the web container", obs.Containers)
		}
		return obs.Containers[0]
	}
	cold := observe(f.eng) // inspected, and remembered
	if cold.State != "running" || cold.Health != "healthy" || cold.Image != ref || !slices.Contains(cold.Networks[def.Name].Aliases, "web") {
		t.Fatalf("inspected container %+v", cold)
	}
	warm := observe(f.eng)
	if !reflect.DeepEqual(warm, cold) {
		t.Errorf("observed from the list and remembered facts:\n%+v\nwant what inspect says:\n%+v", warm, cold)
	}
	// The next process reads the same facts from dir.
	next := New(f.cli, zerolog.New(zerolog.NewTestWriter(t)))
	next.RememberFactsIn(dir)
	if got := next.facts.load(f.project); got[id].Key == "" {
		t.Fatalf("facts in %s: %+v, want the web container's", dir, got)
	}
	if got := observe(next); !reflect.DeepEqual(got, cold) {
		t.Errorf("observed by the next process:\n%+v\nwant:\n%+v", got, cold)
	}

	// A planted restart count shows: the remembered facts are used, no
	// inspect is made while the endpoints stay.
	planted := f.eng.facts.load(f.project)
	fact := planted[id]
	fact.RestartCount = 7
	planted[id] = fact
	f.eng.facts.store(f.project, planted)
	if got := observe(f.eng); got.RestartCount != 7 {
		t.Fatalf("restart count %d, want the remembered 7", got.RestartCount)
	}

	// Reconnected by hand with another alias: a new endpoint, inspected.
	if _, err := f.cli.NetworkDisconnect(ctx, def.Name, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.NetworkConnect(ctx, def.Name, client.NetworkConnectOptions{Container: id,
		EndpointConfig: &network.EndpointSettings{Aliases: []string{"other"}}}); err != nil {
		t.Fatal(err)
	}
	got := observe(f.eng)
	if al := got.Networks[def.Name].Aliases; !slices.Contains(al, "other") || slices.Contains(al, "web") {
		t.Errorf("aliases after a reconnect: %v, want other and not web", al)
	}
	if got.RestartCount != 0 {
		t.Errorf("restart count after the reconnect's inspect %d, want 0", got.RestartCount)
	}

	// Restarted: new endpoints again, and the fresh inspect is used.
	planted = f.eng.facts.load(f.project)
	fact = planted[id]
	fact.RestartCount = 7
	planted[id] = fact
	f.eng.facts.store(f.project, planted)
	if err := f.eng.StopContainer(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	if got := observe(f.eng); got.State != "exited" || got.RestartCount != 0 {
		t.Errorf("stopped container observed as %+v, want exited, inspected", got)
	}
	if err := f.eng.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := observe(f.eng); got.State != "running" || got.RestartCount != 0 {
		t.Errorf("restarted container observed as %+v, want running, inspected", got)
	}
}
