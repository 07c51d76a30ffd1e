package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// TestSwarmDriftRepaired: web scaled down and the worker removed by hand
// are drift, planned with their reasons and repaired by the next apply,
// after which the plan is empty again.
func TestSwarmDriftRepaired(t *testing.T) {
	f := newSwarmFixture(t)
	f.writeConfig("backend = \"swarm\"\nbake = \"2s\"\n")
	f.release("stack", map[string]string{
		"compose.yaml":      swarmStackYAML(f.images["web:a"], f.images["worker:a"], ""),
		"worker/config.txt": "one\n",
	})
	f.apply()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svcs := f.services()
	web := svcs["web"]
	one := uint64(1)
	web.Spec.Mode.Replicated.Replicas = &one
	_, err := f.cli.ServiceUpdate(ctx, web.ID, client.ServiceUpdateOptions{Version: web.Version, Spec: web.Spec})
	must(t, err)
	_, err = f.cli.ServiceRemove(ctx, svcs["worker"].ID, client.ServiceRemoveOptions{})
	must(t, err)

	p := f.plan()
	kinds := map[string]reconcile.Action{}
	for _, a := range p.Actions {
		kinds[a.Service] = a
	}
	w, k := kinds["web"], kinds["worker"]
	if w.Kind != reconcile.ActUpdate || !w.Drift || !strings.Contains(strings.Join(w.Reasons, "; "), "replicas 1, want 3 (changed outside lockstep)") {
		t.Fatalf("web scaled by hand: %+v", w)
	}
	if k.Kind != reconcile.ActCreate || !k.Drift || !strings.Contains(strings.Join(k.Reasons, "; "), "removed outside lockstep") {
		t.Fatalf("worker removed by hand: %+v", k)
	}
	f.apply()
	svcs = f.services()
	if got := *svcs["web"].Spec.Mode.Replicated.Replicas; got != 3 {
		t.Fatalf("web's replicas after the repair: %d", got)
	}
	if _, ok := svcs["worker"]; !ok {
		t.Fatal("the worker was not created again")
	}
	if p := f.plan(); len(p.Actions) != 0 {
		t.Fatalf("plan after the repair: %+v", p.Actions)
	}
}
