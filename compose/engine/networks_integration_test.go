package engine

import (
	"slices"
	"testing"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestCreateOnSeveralNetworks creates a container on three networks the
// way the engine's API version allows: in the create itself from API 1.44,
// create plus connects before. Both paths run against every engine that
// still speaks 1.41 (Docker 29 accepts 1.40 and up): once with the version
// negotiated, once with a client held at 1.41, which is what Docker 20.10
// speaks. Either way the container ends up with every endpoint and alias.
func TestCreateOnSeveralNetworks(t *testing.T) {
	f := newFixture(t, "nets")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "web", "v1", harness.ImageOptions{})
	old, err := client.New(client.FromEnv, client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() })

	a, b, c := f.network("a"), f.network("b"), f.network("c")
	nets := map[string][]string{a.Name: {"web-a"}, b.Name: {"web-b"}, c.Name: {"web-c"}}
	web := f.service("web", ref, nil, nets, b.Name)
	p := &compose.Project{Name: f.project, Networks: []compose.Network{a, b, c}, Services: []compose.Service{web}}
	for _, n := range p.Networks {
		if err := f.eng.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.eng.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}

	for i, cli := range []*client.Client{f.cli, old} {
		eng := New(cli, zerolog.New(zerolog.NewTestWriter(t)))
		name := f.project + "-web-" + string(rune('1'+i))
		id, err := eng.CreateContainer(ctx, p, p.Service("web"), i+1, name, "")
		if err != nil {
			t.Fatalf("API %s: %v", cli.ClientVersion(), err)
		}
		api := cli.ClientVersion()
		t.Logf("API %s: networks in the create: %v", api, versions.GreaterThanOrEqualTo(api, multiNetworkCreateAPI))
		raw, err := f.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(raw.Container.HostConfig.NetworkMode); got != b.Name {
			t.Errorf("API %s: network mode %s, want the primary network %s", api, got, b.Name)
		}
		var got []string
		for n, ep := range raw.Container.NetworkSettings.Networks {
			got = append(got, n)
			if want := nets[n]; ep == nil || len(want) == 0 || !slices.Contains(ep.Aliases, want[0]) {
				t.Errorf("API %s: network %s: endpoint %+v, want alias %v", api, n, ep, want)
			}
		}
		slices.Sort(got)
		if want := []string{a.Name, b.Name, c.Name}; !slices.Equal(got, want) {
			t.Errorf("API %s: container on %v, want %v", api, got, want)
		}
	}
}
