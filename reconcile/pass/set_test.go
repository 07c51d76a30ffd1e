package pass

import (
	"testing"

	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

func TestSetEnvironmentTakesTheSetsSettings(t *testing.T) {
	ws, err := window.ParseAll([]string{"Mon-Fri 09:00-16:00 UTC"})
	if err != nil {
		t.Fatal(err)
	}
	set := envset.Set{Name: "review", ComposeFiles: []string{"c.yaml"}, RemoveVolumes: true, Windows: ws}
	env := SetEnvironment(set, envset.Member{Name: "review-pr-1", PinFile: "r/pr-1.toml", URL: "https://pr-1.x"})
	if env.Name != "review-pr-1" || env.Project != "review-pr-1" || env.PinFile != "r/pr-1.toml" || env.Set != "review" ||
		env.URL != "https://pr-1.x" || !env.RemoveVolumes || len(env.ComposeFiles) != 1 || len(env.Windows) != 1 || env.Windows[0].String() != ws[0].String() {
		t.Fatalf("%+v", env)
	}
	set.Windows[0], set.ComposeFiles[0] = window.Window{}, "other.yaml"
	if env.Windows[0].String() == "" || env.ComposeFiles[0] != "c.yaml" {
		t.Fatal("the environment shares the set's slices")
	}
}
