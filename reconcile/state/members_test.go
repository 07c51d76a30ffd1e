package state

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// TestMembersAndForget: a set's members are listed from the state dir (on
// disk and in memory alike); Forget drops what ran and, unless asked to
// keep it, the membership, and never the history.
func TestMembersAndForget(t *testing.T) {
	for name, dir := range map[string]string{"disk": t.TempDir(), "memory": ""} {
		t.Run(name, func(t *testing.T) {
			s := New(dir, 0, zerolog.Nop())
			since := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
			for _, env := range []string{"review-pr-1", "review-pr-2"} {
				if err := s.SaveMember(env, Member{Set: "review", Project: env, PinFile: "environments/review/" + env + ".toml", Since: since}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SaveMember("eu-pr-1", Member{Set: "eu", Project: "eu-pr-1"}); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveDeployed("review-pr-1", &reconcile.Deployed{Commit: "c", Project: "review-pr-1"}); err != nil {
				t.Fatal(err)
			}
			if err := s.AppendHistory("review-pr-1", reconcile.PassRecord{ID: "p1", Result: reconcile.ResultApplied}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Members("review")
			if err != nil || len(got) != 2 || got["review-pr-2"].Since != since {
				t.Fatalf("members of review: %+v %v", got, err)
			}

			if err := s.Forget("review-pr-2", true); err != nil {
				t.Fatal(err)
			}
			if m, _ := s.Member("review-pr-2"); m == nil {
				t.Error("Forget(keepMember) dropped the membership")
			}
			if err := s.Forget("review-pr-1", false); err != nil {
				t.Fatal(err)
			}
			if m, _ := s.Member("review-pr-1"); m != nil {
				t.Errorf("membership kept: %+v", m)
			}
			if d, _ := s.Deployed("review-pr-1", "review-pr-1"); d != nil {
				t.Errorf("deployed record kept: %+v", d)
			}
			if h, _ := s.History("review-pr-1", 0); len(h) != 1 {
				t.Errorf("history: %+v", h)
			}
			if err := s.Forget("never-was", false); err != nil {
				t.Errorf("Forget of nothing: %v", err)
			}
		})
	}
}
