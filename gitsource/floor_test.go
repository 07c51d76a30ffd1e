package gitsource_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// checkFloorRefused asserts err is a *FloorError about floor and sha whose
// message contains want.
func checkFloorRefused(t *testing.T, err error, floor, sha string, want ...string) *gitsource.FloorError {
	t.Helper()
	var fe *gitsource.FloorError
	if !errors.As(err, &fe) {
		t.Fatalf("CheckFloor(%s, %s): err = %v, want a *FloorError", floor, sha, err)
	}
	if fe.Floor != floor || fe.Commit != sha || !fe.Permanent() {
		t.Errorf("FloorError = %+v, want floor %s, commit %s, permanent", fe, floor, sha)
	}
	for _, w := range append([]string{floor, sha, "min_commit"}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
	return fe
}

// A server that refuses SHAs in want (git's default) and a cache filled
// by a shallow Fetch: the floor is found only by deepening the branch.
func TestCheckFloorDeepensShallowCache(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "A", map[string]string{"v.txt": "A"})
	b := srv.Commit(t, "B", map[string]string{"v.txt": "B"})
	c := srv.Commit(t, "C", map[string]string{"v.txt": "C"})
	// More than the first deepening step between the floor and the head.
	later := commitN(t, srv, 60, "later")
	d := later[len(later)-1]

	src, state := newSource(t, srv.URL)
	if head, err := src.Fetch(ctx(t)); err != nil || head != d {
		t.Fatalf("Fetch = %s, %v; want %s", head, err, d)
	}
	if cacheHas(t, state, b) {
		t.Fatal("the floor is in the cache before CheckFloor: the test would not exercise deepening")
	}

	if err := src.CheckFloor(ctx(t), b, d); err != nil {
		t.Fatalf("CheckFloor(B, head 61 commits later): %v", err)
	}
	if !cacheHas(t, state, b) {
		t.Error("CheckFloor succeeded without fetching the floor")
	}
	for name, sha := range map[string]string{"C": c, "B itself": b} {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatalf("Resolve %s: %v", name, err)
		}
		if err := src.CheckFloor(ctx(t), b, sha); err != nil {
			t.Errorf("CheckFloor(B, %s): %v", name, err)
		}
	}
	// Upper case is accepted as Resolve accepts it.
	if err := src.CheckFloor(ctx(t), strings.ToUpper(b), c); err != nil {
		t.Errorf("CheckFloor with an upper-case floor: %v", err)
	}

	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: a}); err != nil {
		t.Fatalf("Resolve A: %v", err)
	}
	checkFloorRefused(t, src.CheckFloor(ctx(t), b, a), b, a, "back past its floor", "lower min_commit")

	// A floor the repository does not have: a clear error after the whole
	// history was searched.
	unknown := strings.Repeat("0123456789", 4)
	fe := checkFloorRefused(t, src.CheckFloor(ctx(t), unknown, d), unknown, d, "is not on branch main", srv.URL)
	if !fe.Unknown {
		t.Errorf("FloorError for an unknown floor: Unknown = false")
	}

	for _, bad := range [][2]string{{"main", d}, {b, b[:12]}} {
		err := src.CheckFloor(ctx(t), bad[0], bad[1])
		var fe *gitsource.FloorError
		if err == nil || errors.As(err, &fe) || !strings.Contains(err.Error(), "40-hex") {
			t.Errorf("CheckFloor(%q, %q): err = %v, want a 40-hex complaint", bad[0], bad[1], err)
		}
	}
}

// Commits pinned by SHA from other branches: one forked before the floor
// is refused, one forked after it (several commits off the branch, so its
// own history must be fetched by SHA) is accepted.
func TestCheckFloorSideBranches(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true})
	srv.Commit(t, "A", map[string]string{"v.txt": "A"})
	before := srv.CommitOn(t, "old-side", "forked before the floor", map[string]string{"side.txt": "old"})
	b := srv.Commit(t, "B", map[string]string{"v.txt": "B"})
	srv.Commit(t, "C", map[string]string{"v.txt": "C"})
	var after string
	for i := range 3 {
		after = srv.CommitOn(t, "new-side", "forked after the floor", map[string]string{"side.txt": strings.Repeat("x", i+1)})
	}
	d := srv.Commit(t, "D", map[string]string{"v.txt": "D"})

	src, state := newSource(t, srv.URL)
	if head, err := src.Fetch(ctx(t)); err != nil || head != d {
		t.Fatalf("Fetch = %s, %v", head, err)
	}
	for _, sha := range []string{before, after} {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatalf("Resolve %s: %v", sha, err)
		}
	}
	if cacheHas(t, state, b) {
		t.Fatal("the floor is in the cache before CheckFloor")
	}

	checkFloorRefused(t, src.CheckFloor(ctx(t), b, before), b, before, "does not descend from min_commit")
	srv.ResetStats()
	if err := src.CheckFloor(ctx(t), b, after); err != nil {
		t.Errorf("CheckFloor(B, a side-branch commit forked after B): %v", err)
	}
	// The side branch's history comes by SHA along with the first
	// deepening of the branch, not by fetching the branch's whole history.
	if st := srv.Stats(); st.UploadPacks > 2 {
		t.Errorf("CheckFloor of a side-branch commit made %d upload-packs, want at most 2 (branch deepened once, the commit's history by SHA)", st.UploadPacks)
	}
	if err := src.CheckFloor(ctx(t), b, d); err != nil {
		t.Errorf("CheckFloor(B, D): %v", err)
	}
}

func TestCheckFloorSameCommitIsFree(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := srv.Commit(t, "A", map[string]string{"v.txt": "A"})
	src, _ := newSource(t, srv.URL)
	srv.ResetStats()
	if err := src.CheckFloor(ctx(t), head, head); err != nil {
		t.Fatalf("CheckFloor(x, x): %v", err)
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("CheckFloor of a commit against itself made %+v requests, want none", st)
	}
	// The pinned commit must be resolved first: CheckFloor says so.
	other := strings.Repeat("ab", 20)
	if err := src.CheckFloor(ctx(t), head, other); err == nil || !strings.Contains(err.Error(), "not in the cache") {
		t.Errorf("CheckFloor of an unresolved commit: err = %v", err)
	}
}
