package cli

import (
	"testing"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// A failed apply that put a container back says so on its summary line:
// "failed after 0 of 1 changes" alone reads as if nothing had happened.
func TestAppliedLineSaysWhatWasPutBack(t *testing.T) {
	plan := &reconcile.Plan{Commit: "4d2e1aa0c3b2f3a1e5d6c7b8a9f0e1d2c3b4a5f6", Actions: []reconcile.Action{{Kind: reconcile.ActRecreate}}}
	got := appliedLine(plan, &reconcile.ApplyResult{Done: []reconcile.Action{}, Restored: []string{"prod-web-1"}}, true)
	if want := "failed after 0 of 1 changes at 4d2e1aa0c3b2; put back and running again: prod-web-1"; got != want {
		t.Errorf("appliedLine = %q, want %q", got, want)
	}
}
