package e2e

import (
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestValidateTouchesNothing: validate checks config, pin and compose files
// at the branch head (or at --commit) without the engine: it works on a host
// whose Docker engine is unreachable, and creates nothing.
func TestValidateTouchesNothing(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	good := stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
	shaGood := f.release("good", map[string]string{
		"compose.yaml":      good.yaml(),
		"worker/config.txt": "threads = 1\n",
	})
	f.writeConfig("\n[engine]\nhost = \"unix:///nonexistent/docker.sock\"\n")

	if r := f.lockstep("validate", "e2e"); r.code != 0 {
		t.Fatalf("validate of a good revision with no engine: %s", r)
	}
	if r := f.lockstep("plan", "e2e"); r.code != 1 || !strings.Contains(r.stderr, "cannot reach the Docker engine") {
		t.Fatalf("plan with no engine must fail saying so: %s", r)
	}

	broken := good
	broken.Extra = "    gpus: all\n" // refused whatever [compose].strict says
	f.release("broken", map[string]string{"compose.yaml": broken.yaml()})
	r := f.lockstep("validate", "e2e")
	if r.code != 1 || !strings.Contains(r.stderr, `service "web": gpus`) {
		t.Fatalf("validate of a broken pin: want exit 1 naming web's gpus key, got %s", r)
	}
	if r := f.lockstep("validate", "--commit", shaGood, "e2e"); r.code != 0 {
		t.Fatalf("validate --commit of the good revision: %s", r)
	}
	if w := world(t, cli, f.project); len(w) != 0 {
		t.Fatalf("validate created containers: %v", ids(w))
	}
}
