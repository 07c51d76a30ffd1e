package pass

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// A project Docker Compose deployed with the configuration of the release:
// the first apply adopts every container without an engine call that
// changes anything and records them; the next pass has nothing to do.
func TestRunnerAdoptsComposeProjectThenIsANoOp(t *testing.T) {
	o := fake.Converged(fake.Project())
	for i := range o.Containers {
		o.Containers[i].Hash, o.Containers[i].Commit = "", ""
	}
	for i := range o.Networks {
		delete(o.Networks[i].Labels, compose.LabelHash)
	}
	f := newRunnerFixture(t, &o, false)

	plan, err := f.r.Plan(context.Background(), prodEnv)
	if err != nil {
		t.Fatal(err)
	}
	adopts := 0
	for _, a := range plan.Plan.Actions {
		if a.Kind != reconcile.ActAdopt {
			t.Fatalf("plan of an equal Compose project: %q", briefs(plan.Plan))
		}
		adopts++
	}
	if adopts != 5 { // default network, data volume, db, migrate, web
		t.Fatalf("plan shows %d adoptions: %q", adopts, briefs(plan.Plan))
	}
	if _, err := os.Stat(filepath.Join(f.state, "environments", "prod", "adopted.json")); err == nil {
		t.Fatalf("a plan recorded the adoption")
	}

	res, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatalf("apply: %v\ncalls %q", err, f.eng.Calls())
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("adopting restarted something: %q", m)
	}
	if res.Applied == nil || res.Applied.Adopted != 5 {
		t.Fatalf("applied: %+v", res.Applied)
	}
	list, err := f.st.Adopted("prod", "prod")
	if err != nil || len(list) != 3 {
		t.Fatalf("adoption record: %+v, %v", list, err)
	}

	again, err := f.r.Apply(context.Background(), prodEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Plan.Empty() || len(again.Plan.Warnings) != 0 {
		t.Fatalf("the pass after the adoption: %q, warnings %q", briefs(again.Plan), again.Plan.Warnings)
	}
	if m := fake.Mutating(f.eng.Calls()); len(m) != 0 {
		t.Fatalf("engine calls after the adoption: %q", m)
	}
}
