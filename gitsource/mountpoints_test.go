package gitsource_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

func materialized(t *testing.T, files map[string]string) (*gitsource.Source, gitsource.Release, string) {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	sha := srv.Commit(t, "files", files)
	src, state := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	return src, gitsource.Release{Commit: sha, Dir: dir}, state
}

// AddMountPoints makes the missing mount points (and their parents) empty
// and read-only, records them, and the release then verifies as it is: a
// second Materialize changes nothing, and a mount point removed by hand
// is put back.
func TestAddMountPoints(t *testing.T) {
	src, rel, _ := materialized(t, map[string]string{"compose.yaml": "services: {}\n", "src/index.js": "1\n", "src/lib/x.js": "2\n"})
	r := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
	points := []string{"src/node_modules", "src/a/b/cache", "src/lib"}
	if err := r.AddMountPoints(ctx(t), rel, points); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"src/node_modules", "src/a", "src/a/b", "src/a/b/cache", "src", "."} {
		fi, err := os.Lstat(filepath.Join(rel.Dir, d))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o555 {
			t.Errorf("%s: %v %v, want a directory of mode 0555", d, fi.Mode(), err)
		}
	}
	want := snapshot(t, rel.Dir)
	if _, err := src.Materialize(ctx(t), rel.Commit); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, rel.Dir); len(got) != len(want) {
		t.Errorf("Materialize changed the release with its mount points:\n got %v\nwant %v", got, want)
	}
	// Again: nothing to do.
	if err := r.AddMountPoints(ctx(t), rel, points); err != nil {
		t.Fatal(err)
	}
	withWritableDir(t, filepath.Join(rel.Dir, "src"), func() {
		if err := os.Remove(filepath.Join(rel.Dir, "src", "node_modules")); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := src.Materialize(ctx(t), rel.Commit); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rel.Dir, "src", "node_modules")); err != nil {
		t.Errorf("a mount point removed by hand was not restored: %v", err)
	}
}

// A mount point through a file of the release, or a path
// that is not clean, is refused with nothing changed.
func TestAddMountPointsRefusals(t *testing.T) {
	src, rel, _ := materialized(t, map[string]string{"src/index.js": "1\n", "src/real/x": "1\n", "src/l": "placeholder"})
	r := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
	before := snapshot(t, rel.Dir)
	for _, p := range []string{"src/index.js/x", "src/index.js", "src/l/x", "../x", "src/../../x", "/abs", "src//x"} {
		err := r.AddMountPoints(ctx(t), rel, []string{"src/ok", p})
		var te *gitsource.TreeError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("AddMountPoints(%q) = %v, want a TreeError", p, err)
		}
	}
	if got := snapshot(t, rel.Dir); len(got) != len(before) {
		t.Errorf("a refused AddMountPoints changed the release")
	}
}

// In a release an older lockstep wrote, the engine made the mount points
// of nested volumes itself (0755, not in the manifest). Verification keeps
// them (removing one would detach the volume inside the running container)
// and records them; a directory with a file in it is still removed.
func TestMaterializeKeepsMountPointsTheEngineMade(t *testing.T) {
	src, rel, _ := materialized(t, map[string]string{"src/index.js": "1\n"})
	withWritableDir(t, filepath.Join(rel.Dir, "src"), func() {
		for _, d := range []string{"src/node_modules", "src/a/b", "src/junk"} {
			if err := os.MkdirAll(filepath.Join(rel.Dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(rel.Dir, "src/junk/x"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := src.Materialize(ctx(t), rel.Commit); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"src/node_modules", "src/a", "src/a/b"} {
		if fi, err := os.Lstat(filepath.Join(rel.Dir, d)); err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("%s: %v %v, want it kept, mode 0555", d, fi, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(rel.Dir, "src/junk")); err == nil {
		t.Errorf("src/junk holds a file that is not in git and was kept")
	}
}
