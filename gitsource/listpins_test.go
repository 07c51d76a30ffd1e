package gitsource_test

import (
	"path/filepath"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// TestListPins lists a set's pin files on a real repository served over
// smart HTTP with partial clone allowed: names only (no blob is fetched),
// and nothing fetched again while the head does not move.
func TestListPins(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true})
	srv.Git(t, "-C", srv.BareDir, "config", "uploadpack.allowFilter", "true")
	srv.Commit(t, "pins", map[string]string{
		"environments/production.toml":   "commit = \"main\"\n",
		"environments/review/pr-1.toml":  "commit = \"main\"\n",
		"environments/review/pr-2.toml":  "commit = \"main\"\n",
		"environments/review/notes.md":   "not a pin\n",
		"environments/review/old/x.toml": "in a subdirectory\n",
	})
	head := srv.Symlink(t, "a link is no pin file", "environments/review/link.toml", "pr-1.toml")
	src, state := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})

	got, files, err := rs.ListPins(ctx(t), "environments/review/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got != head || strings.Join(files, " ") != "environments/review/pr-1.toml environments/review/pr-2.toml" {
		t.Fatalf("ListPins = %s %q", got, files)
	}
	// The fetch was filtered: the pin files' blobs are not in the cache.
	blob := strings.TrimSpace(srv.Git(t, "-C", srv.BareDir, "rev-parse", head+":environments/review/pr-2.toml"))
	cache, err := git.PlainOpen(filepath.Join(state, "git"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.BlobObject(plumbing.NewHash(blob)); err == nil {
		t.Error("listing the pin files fetched a pin file's blob")
	}

	srv.ResetStats()
	if _, again, err := rs.ListPins(ctx(t), "environments/review/pr-*.toml"); err != nil || len(again) != 2 {
		t.Fatalf("second listing: %q %v", again, err)
	}
	if st := srv.Stats(); st.UploadPacks != 0 || st.RefListings != 1 {
		t.Errorf("listing at an unchanged head: %+v, want one ref listing and no fetch", st)
	}

	srv.Remove(t, "close pr-1", "environments/review/pr-1.toml")
	if _, files, err = rs.ListPins(ctx(t), "environments/review/*.toml"); err != nil || strings.Join(files, " ") != "environments/review/pr-2.toml" {
		t.Fatalf("after a pin file is deleted: %q %v", files, err)
	}
	if _, files, err = rs.ListPins(ctx(t), "environments/none/*.toml"); err != nil || len(files) != 0 {
		t.Fatalf("a directory that does not exist: %q %v", files, err)
	}
	if _, _, err = rs.ListPins(ctx(t), "environments/*/x.toml"); err == nil {
		t.Fatal("a wildcard in a directory was accepted")
	}
}
