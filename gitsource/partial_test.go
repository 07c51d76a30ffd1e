package gitsource_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// monorepo commits a small tree of the kind a monorepo holds: compose
// files and their configs beside code no container mounts.
func monorepo(t *testing.T) (*gitserver.Server, string) {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "tree", map[string]string{
		"compose.yaml":             "services: {}\n",
		"nginx/nginx.conf":         "events {}\n",
		"nginx/conf.d/site.conf":   "server {}\n",
		"shared/certs/ca.pem":      "CA\n",
		"shared/other.txt":         "not used\n",
		"app/src/main.go":          "package main\n",
		"app/src/big/generated.go": strings.Repeat("// code\n", 1000),
		"docs/README.md":           "docs\n",
	})
	srv.Symlink(t, "link into shared", "nginx/certs", "../shared/certs")
	srv.Symlink(t, "an unsafe link nobody uses", "docs/escape", "../../etc")
	sha := srv.Symlink(t, "a dir link", "deploy", "nginx")
	return srv, sha
}

func partialRelease(t *testing.T) (*gitsource.Releases, gitsource.Release, *gitserver.Server) {
	t.Helper()
	srv, app := monorepo(t)
	srv.Commit(t, "pin", map[string]string{pinPath: pinText(app)})
	src, _ := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
	rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath})
	if err != nil {
		t.Fatal(err)
	}
	if rel, err = rs.Materialize(ctx(t), rel); err != nil {
		t.Fatal(err)
	}
	return rs, rel, srv
}

func paths(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for p := range snapshot(t, dir) {
		out = append(out, filepath.ToSlash(p))
	}
	sort.Strings(out)
	return out
}

// A release holds what was asked for: files, directories whole, symlinks
// with what they point to, the directories on the way; nothing else of
// the tree, and the unsafe symlink elsewhere in the repository does not
// stop it. Content and modes are git's.
func TestAddPathsMaterializesOnlyWhatIsAsked(t *testing.T) {
	rs, rel, srv := partialRelease(t)
	if got := paths(t, rel.Dir); len(got) != 0 {
		t.Fatalf("a new release holds %v", got)
	}
	if err := rs.AddPaths(ctx(t), rel, []string{"compose.yaml", "nginx", "compose.override.yaml"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"compose.yaml", "nginx", "nginx/certs", "nginx/conf.d", "nginx/conf.d/site.conf", "nginx/nginx.conf",
		"shared", "shared/certs", "shared/certs/ca.pem"}
	if got := paths(t, rel.Dir); !slices.Equal(got, want) {
		t.Fatalf("release holds %v, want %v", got, want)
	}
	// Through a directory symlink: the link, and what it resolves to.
	if err := rs.AddPaths(ctx(t), rel, []string{"deploy/nginx.conf"}); err != nil {
		t.Fatal(err)
	}
	if got := paths(t, rel.Dir); !slices.Contains(got, "deploy") || slices.Contains(got, "app") || slices.Contains(got, "docs") {
		t.Fatalf("after deploy/nginx.conf the release holds %v", got)
	}
	full := snapshot(t, srv.WorkDir)
	for p, n := range snapshot(t, rel.Dir) {
		if full[p] != n {
			t.Errorf("%s: release has %+v, git has %+v", p, n, full[p])
		}
	}
	err := filepath.WalkDir(rel.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o555 {
				t.Errorf("%s: mode %o, want 0555", p, fi.Mode().Perm())
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The release verifies clean, and asking again changes nothing.
	before := snapshot(t, rel.Dir)
	if _, err := rs.Materialize(ctx(t), rel); err != nil {
		t.Fatalf("verify the partial release: %v", err)
	}
	if err := rs.AddPaths(ctx(t), rel, []string{"nginx/conf.d/site.conf", "compose.override.yaml", "shared/certs"}); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, rel.Dir); len(after) != len(before) {
		t.Errorf("asking again for what the release holds changed it: %d entries, was %d", len(after), len(before))
	}
	// The rest of shared/ comes when the whole directory is asked for.
	if err := rs.AddPaths(ctx(t), rel, []string{"shared"}); err != nil {
		t.Fatal(err)
	}
	if got := paths(t, rel.Dir); !slices.Contains(got, "shared/other.txt") {
		t.Errorf("shared asked for whole, release holds %v", got)
	}
}

// The manifest says how far the release goes, so that a path it holds
// (or knows git lacks) is answered without git: the cache may be gone.
func TestAddPathsAnswersFromTheManifest(t *testing.T) {
	rs, rel, _ := partialRelease(t)
	if err := rs.AddPaths(ctx(t), rel, []string{"compose.yaml", "nginx", "compose.override.yaml"}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Dir(filepath.Dir(rel.Dir))
	b, err := os.ReadFile(filepath.Join(state, "release-manifests", rel.Commit+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Partial bool     `json:"partial"`
		Absent  []string `json:"absent"`
		Entries []struct {
			Path    string `json:"path"`
			Partial bool   `json:"partial"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	partialDirs := map[string]bool{}
	for _, e := range m.Entries {
		partialDirs[e.Path] = e.Partial
	}
	if !m.Partial || !slices.Equal(m.Absent, []string{"compose.override.yaml"}) || !partialDirs["shared"] || partialDirs["nginx"] {
		t.Fatalf("manifest: partial %v, absent %v, dirs %v", m.Partial, m.Absent, partialDirs)
	}
	if err := os.RemoveAll(filepath.Join(state, "git")); err != nil {
		t.Fatal(err)
	}
	if err := rs.AddPaths(ctx(t), rel, []string{"compose.yaml", "nginx/conf.d", "compose.override.yaml", "nginx/certs/ca.pem"}); err != nil {
		t.Fatalf("paths the release holds needed git: %v", err)
	}
}

// An unsafe path is refused naming it, and leaves the release as it was.
func TestAddPathsRefusesUnsafePaths(t *testing.T) {
	rs, rel, _ := partialRelease(t)
	var te *gitsource.TreeError
	if err := rs.AddPaths(ctx(t), rel, []string{"docs"}); !errors.As(err, &te) || !strings.Contains(err.Error(), "docs/escape") {
		t.Fatalf("AddPaths(docs) = %v, want a *TreeError naming docs/escape", err)
	}
	for _, bad := range []string{"../x", "/etc", "a/../b", ""} {
		if err := rs.AddPaths(ctx(t), rel, []string{bad}); err == nil {
			t.Errorf("AddPaths(%q) accepted", bad)
		}
	}
	if got := paths(t, rel.Dir); len(got) != 0 {
		t.Fatalf("refused paths left %v", got)
	}
}

// A path renamed into the release whose manifest was not written (a kill
// -9 between the two) is removed by the next verification and added
// again when asked for.
func TestAddPathsInterruptedConverges(t *testing.T) {
	rs, rel, _ := partialRelease(t)
	if err := os.Chmod(rel.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rel.Dir, ".tmp-nginx-0a1b2c", "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel.Dir, "compose.yaml"), []byte("services: {}\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rel.Dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Materialize(ctx(t), rel); err != nil {
		t.Fatal(err)
	}
	if got := paths(t, rel.Dir); len(got) != 0 {
		t.Fatalf("leftovers of an interrupted add kept: %v", got)
	}
	if err := rs.AddPaths(ctx(t), rel, []string{"compose.yaml"}); err != nil {
		t.Fatal(err)
	}
	if got := paths(t, rel.Dir); !slices.Equal(got, []string{"compose.yaml"}) {
		t.Fatalf("release holds %v", got)
	}
}

// "." is the whole tree: a release made by asking for it is the tree.
func TestAddPathsWholeTree(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "tree", map[string]string{"compose.yaml": "services: {}\n", "a/b/c.txt": "c\n", "d.txt": "d\n"})
	app := srv.Symlink(t, "link", "e", "a/b")
	srv.Commit(t, "pin", map[string]string{pinPath: pinText(app)})
	src, _ := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
	rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath})
	if err == nil {
		rel, err = rs.Materialize(ctx(t), rel)
	}
	if err == nil {
		err = rs.AddPaths(ctx(t), rel, []string{"a/b/c.txt", "."})
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "a/b", "a/b/c.txt", "compose.yaml", "d.txt", "e"}
	if got := paths(t, rel.Dir); !slices.Equal(got, want) {
		t.Fatalf("release holds %v, want %v", got, want)
	}
}

// The next release of a monorepo, one file changed, costs that file: what
// compose uses is asked for again and every unchanged file is a hard link
// to the previous release's.
func TestAddPathsSharesUnchangedFiles(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	files := map[string]string{"compose.yaml": "services: {}\n", "code/x.go": "package x\n"}
	for i := range 50 {
		files[fmt.Sprintf("nginx/conf.d/%02d.conf", i)] = fmt.Sprintf("server { listen %d; }\n", 8000+i)
	}
	app1 := srv.Commit(t, "one", files)
	app2 := srv.Commit(t, "two", map[string]string{"compose.yaml": "services: {}\n# changed\n"})
	srv.Commit(t, "pin", map[string]string{pinPath: pinText(app1)})
	src, _ := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
	var rels []gitsource.Release
	for _, sha := range []string{app1, app2} {
		rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath, Commit: sha})
		if err == nil {
			rel, err = rs.Materialize(ctx(t), rel)
		}
		if err == nil {
			err = rs.AddPaths(ctx(t), rel, []string{"compose.yaml", "nginx"})
		}
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, rel)
	}
	shared := 0
	for i := range 50 {
		p := filepath.Join("nginx", "conf.d", fmt.Sprintf("%02d.conf", i))
		a, errA := os.Stat(filepath.Join(rels[0].Dir, p))
		b, errB := os.Stat(filepath.Join(rels[1].Dir, p))
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if os.SameFile(a, b) {
			shared++
		}
	}
	a, _ := os.Stat(filepath.Join(rels[0].Dir, "compose.yaml"))
	b, _ := os.Stat(filepath.Join(rels[1].Dir, "compose.yaml"))
	if shared != 50 || os.SameFile(a, b) {
		t.Fatalf("%d of 50 unchanged files shared; changed compose.yaml shared: %v", shared, os.SameFile(a, b))
	}
	for _, rel := range rels {
		if _, err := rs.Materialize(ctx(t), rel); err != nil {
			t.Fatalf("release %s does not verify after sharing: %v", rel.Commit[:12], err)
		}
	}
}
