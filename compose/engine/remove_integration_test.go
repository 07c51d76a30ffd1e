package engine

import (
	"testing"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// TestRemoveNetworkAndVolume: a teardown's removals on the real engine;
// removing what is already gone (the teardown a restart after a kill -9
// runs again) is no error.
func TestRemoveNetworkAndVolume(t *testing.T) {
	f := newFixture(t, "rm")
	ctx := testContext(t)
	n, v := f.network("default"), f.volume("data")
	if err := f.eng.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.eng.RemoveNetwork(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
		if err := f.eng.RemoveVolume(ctx, v.Name); err != nil {
			t.Fatal(err)
		}
	}
	obs, err := f.eng.Observe(ctx, &compose.Project{Name: f.project})
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Networks) != 0 || len(obs.Volumes) != 0 {
		t.Fatalf("left after the removals: %+v %+v", obs.Networks, obs.Volumes)
	}
	if _, err := f.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{}); err == nil {
		t.Fatal("the volume is still there")
	}
}
