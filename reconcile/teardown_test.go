package reconcile

import (
	"bytes"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// TestTeardownPlan: every container, then the networks, then (only when
// asked) the named volumes of the project, each with the reason; what
// carries another project's label (an external network) is left alone.
func TestTeardownPlan(t *testing.T) {
	p := fake.Project()
	o := fake.Converged(p)
	o.Networks = append(o.Networks, compose.ObservedNetwork{Name: "proxy", Labels: map[string]string{}})
	kept := TeardownPlan("review-pr-1", "prod", o, false, "pin file deleted")
	var b bytes.Buffer
	if err := kept.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `review-pr-1 (project prod)
  - remove prod-db-1 (pin file deleted; its volumes are kept)
  - remove prod-migrate-1 (pin file deleted; its volumes are kept)
  - remove prod-web-1 (pin file deleted; its volumes are kept)
  - remove network prod_default (pin file deleted)
  ! volume prod_data is kept (the set's remove_volumes is false)
  4 changes: 4 to remove
`
	if b.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", b.String(), want)
	}
	removed := TeardownPlan("review-pr-1", "prod", o, true, "ttl expired")
	last := removed.Actions[len(removed.Actions)-1]
	if last.Kind != ActRemoveVolume || last.Volume != "prod_data" || last.Reasons[0] != "ttl expired" || len(removed.Warnings) != 0 {
		t.Errorf("with remove_volumes: %+v %v", last, removed.Warnings)
	}
	if got := TeardownPlan("x", "gone", compose.Observed{}, true, "pin file deleted"); !got.Empty() {
		t.Errorf("a project with nothing left: %+v", got)
	}
}
