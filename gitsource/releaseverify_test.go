package gitsource_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// handEdit changes a release file the way an operator would: make it
// writable, then write into it (same inode, so a container that mounts it
// sees the edit).
func handEdit(t *testing.T, p, content string) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// withWritableDir runs fn with dir writable, then makes it read-only again.
func withWritableDir(t *testing.T, dir string, fn func()) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fn()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
}

// TestMaterializeRestoresAHandEditedRelease: a file edited, one deleted,
// one added and a directory made writable under releases/<sha> are all put
// back as git has them by the next Materialize; the edited file keeps its
// inode, so a container bind-mounting it sees git's content at once.
func TestMaterializeRestoresAHandEditedRelease(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	sha := srv.Commit(t, "files", map[string]string{
		"compose.yaml":      "services: {}\n",
		"worker/config.txt": "threads = 1\n",
		"nginx/nginx.conf":  "server {}\n",
	})
	src, _ := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, dir)
	cfg := filepath.Join(dir, "worker", "config.txt")
	ino := inode(t, cfg)

	handEdit(t, cfg, "threads = 64\n") // same size class, other content
	withWritableDir(t, dir, func() {
		if err := os.Remove(filepath.Join(dir, "compose.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("TAG=evil\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.Chmod(filepath.Join(dir, "nginx"), 0o755); err != nil {
		t.Fatal(err)
	}

	again, err := src.Materialize(ctx(t), sha)
	if err != nil || again != dir {
		t.Fatalf("Materialize of the modified release = %s, %v; want %s restored", again, err, dir)
	}
	got := snapshot(t, dir)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("release after the repair:\n got %v\nwant %v", got, want)
	}
	if inode(t, cfg) != ino {
		t.Errorf("%s was replaced, not rewritten: a container that mounts it keeps the edit", cfg)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o555, filepath.Join(dir, "nginx"): 0o555, cfg: 0o444, filepath.Join(dir, "compose.yaml"): 0o444} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s after the repair: %v %v, want mode %04o", p, fi.Mode(), err, mode)
		}
	}
}

// TestMaterializeRefusesAModifiedReleaseGitCannotRestore: when the git
// objects to restore an edited release from are not available (a fresh
// cache, the git host away), Materialize refuses with an error naming the
// file, and leaves the release as it is.
func TestMaterializeRefusesAModifiedReleaseGitCannotRestore(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	sha := srv.Commit(t, "files", map[string]string{"worker/config.txt": "threads = 1\n"})
	src, state := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	// Unmodified, a release is verified without git objects at all.
	if err := os.RemoveAll(filepath.Join(state, "git")); err != nil {
		t.Fatal(err)
	}
	offline, err := gitsource.New(gitsource.Options{URL: "http://127.0.0.1:1/nowhere.git", StateDir: state, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := offline.Materialize(ctx(t), sha); err != nil || got != dir {
		t.Fatalf("Materialize of an intact release without git = %s, %v", got, err)
	}

	cfg := filepath.Join(dir, "worker", "config.txt")
	handEdit(t, cfg, "threads = 64\n")
	_, err = offline.Materialize(ctx(t), sha)
	var me *gitsource.ModifiedError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "worker/config.txt: content differs from git") ||
		!strings.Contains(err.Error(), "modified by hand") {
		t.Fatalf("Materialize of an edited release without git: %v, want a *ModifiedError naming worker/config.txt", err)
	}
	if b, _ := os.ReadFile(cfg); string(b) != "threads = 64\n" {
		t.Errorf("the refused release was touched: %q", b)
	}
}

// TestMaterializeVerifiesAReleaseWithoutManifest: a release written by an
// older lockstep (no manifest) is checked against the commit's tree in the
// cache, restored where it differs, and gets a manifest.
func TestMaterializeVerifiesAReleaseWithoutManifest(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	sha := srv.Commit(t, "files", map[string]string{"a.txt": "a\n", "b/c.txt": "c\n"})
	src, state := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(state, "release-manifests", sha+".json")
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("no manifest written: %v", err)
	}
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	handEdit(t, filepath.Join(dir, "b", "c.txt"), "C\n")
	if _, err := src.Materialize(ctx(t), sha); err != nil {
		t.Fatalf("Materialize of a release without manifest: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b", "c.txt")); string(b) != "c\n" {
		t.Errorf("b/c.txt = %q after the check, want git's", b)
	}
	if _, err := os.Stat(manifest); err != nil {
		t.Errorf("no manifest written on first use: %v", err)
	}
	// A damaged manifest is not trusted either.
	if err := os.WriteFile(manifest, []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	handEdit(t, filepath.Join(dir, "a.txt"), "b\n")
	if _, err := src.Materialize(ctx(t), sha); err != nil {
		t.Fatalf("Materialize with a damaged manifest: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "a\n" {
		t.Errorf("a.txt = %q, want git's", b)
	}
}

// TestReleasesMaterializeRefusesFilesOverTheLimits: a compose file or env
// file over its limit is refused when the loader asks for it, before it is
// written, naming the file and the limit.
func TestReleasesMaterializeRefusesFilesOverTheLimits(t *testing.T) {
	big := strings.Repeat("# padding\n", gitsource.MaxComposeFileBytes/10+1)
	for _, tc := range []struct {
		name  string
		files map[string]string
		pin   []string
		path  string // what the loader asks for
		want  string
	}{
		{"default compose file", map[string]string{"compose.yaml": big}, nil, "compose.yaml", "compose.yaml: compose file of"},
		{"named compose file", map[string]string{"deploy/app.yaml": big}, []string{`compose_files = ["deploy/app.yaml"]`}, "deploy", "deploy/app.yaml: compose file of"},
		{".env", map[string]string{"compose.yaml": "services: {}\n", ".env": big}, nil, ".env", ".env: env file of"},
		{"env_files", map[string]string{"compose.yaml": "services: {}\n", "prod.env": big}, []string{`env_files = ["prod.env"]`}, "prod.env", "prod.env: env file of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := gitserver.Start(t, gitserver.Options{})
			app := srv.Commit(t, "app", tc.files)
			srv.Commit(t, "pin", map[string]string{pinPath: pinText(app, tc.pin...)})
			src, state := newSource(t, srv.URL)
			rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})
			rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath})
			if err != nil {
				t.Fatal(err)
			}
			if rel, err = rs.Materialize(ctx(t), rel); err != nil {
				t.Fatal(err)
			}
			err = rs.AddPaths(ctx(t), rel, []string{tc.path})
			var le *gitsource.LimitError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "limit of 4194304 bytes (4 MiB)") {
				t.Fatalf("AddPaths = %v, want a *LimitError %q naming the limit", err, tc.want)
			}
			if names, _ := os.ReadDir(rel.Dir); len(names) != 0 {
				t.Errorf("a refused path left %v in the release", names)
			}
			_ = state
		})
	}
}

// BenchmarkVerifyRelease is the check every pass makes of a release
// already on disk: 1,000 files of 4 KiB.
func BenchmarkVerifyRelease(b *testing.B) {
	srv := gitserver.Start(b, gitserver.Options{})
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("dir%02d/file%04d.conf", i%20, i)] = strings.Repeat(fmt.Sprintf("line %d\n", i), 512)
	}
	sha := srv.Commit(b, "1000 files", files)
	state := b.TempDir()
	src, err := gitsource.New(gitsource.Options{URL: srv.URL, StateDir: state, Timeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gitsource.RemoveReadOnlyTree(filepath.Join(state, "releases")) })
	if _, err := src.Resolve(ctx(b), gitsource.Pin{Commit: sha}); err != nil {
		b.Fatal(err)
	}
	if _, err := src.Materialize(ctx(b), sha); err != nil {
		b.Fatal(err)
	}
	// stat: the manifest's stats match, nothing is read. git: no manifest
	// (a release of an older lockstep), every file is hashed and checked
	// against the commit's tree.
	for _, mode := range []string{"stat", "git"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				if mode == "git" {
					if err := os.Remove(filepath.Join(state, "release-manifests", sha+".json")); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := src.Materialize(ctx(b), sha); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMaterializeRestoresReplacedEntries: a directory replaced by a file,
// a file by a directory and a symlink pointed elsewhere are put back.
func TestMaterializeRestoresReplacedEntries(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "files", map[string]string{
		"compose.yaml":       "services: {}\n",
		"nginx/conf.d/a.txt": "a\n",
		"worker/config.txt":  "threads = 1\n",
	})
	sha := srv.Symlink(t, "link", "current", "nginx")
	src, _ := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, dir)
	withWritableDir(t, dir, func() {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(gitsource.RemoveReadOnlyTree(filepath.Join(dir, "nginx")))
		must(os.WriteFile(filepath.Join(dir, "nginx"), []byte("not a dir\n"), 0o444))
		must(os.Remove(filepath.Join(dir, "compose.yaml")))
		must(os.MkdirAll(filepath.Join(dir, "compose.yaml", "sub"), 0o755))
		must(os.Remove(filepath.Join(dir, "current")))
		must(os.Symlink("worker", filepath.Join(dir, "current")))
	})
	if _, err := src.Materialize(ctx(t), sha); err != nil {
		t.Fatalf("Materialize of the modified release: %v", err)
	}
	if got := snapshot(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("release after the repair:\n got %v\nwant %v", got, want)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "nginx", "conf.d")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("nginx/conf.d after the repair: %v %v, want a read-only dir", fi, err)
	}
}

// TestPruneRemovesManifests: a pruned release takes its manifest with it,
// and so does one removed by hand.
func TestPruneRemovesManifests(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "a", map[string]string{"a.txt": "a\n"})
	b := srv.Commit(t, "b", map[string]string{"a.txt": "b\n"})
	c := srv.Commit(t, "c", map[string]string{"a.txt": "c\n"})
	src, state := newSource(t, srv.URL)
	dirs := map[string]string{}
	for _, sha := range []string{a, b, c} {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatal(err)
		}
		dir, err := src.Materialize(ctx(t), sha)
		if err != nil {
			t.Fatal(err)
		}
		dirs[sha] = dir
	}
	if err := gitsource.RemoveReadOnlyTree(dirs[c]); err != nil {
		t.Fatal(err)
	}
	if err := src.Prune(map[string]bool{dirs[a]: true}, 0); err != nil {
		t.Fatal(err)
	}
	for sha, want := range map[string]bool{a: true, b: false, c: false} {
		_, err := os.Stat(filepath.Join(state, "release-manifests", sha+".json"))
		if got := err == nil; got != want {
			t.Errorf("manifest of %s present = %v, want %v", sha[:12], got, want)
		}
	}
}
