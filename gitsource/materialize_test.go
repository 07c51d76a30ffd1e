package gitsource_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// node is what a path in a tree looks like on disk.
type node struct {
	kind    string // "file", "exec", "dir", "link"
	content string // file content or link target
}

// snapshot describes every entry under root (skipping .git), relative paths.
func snapshot(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = node{"link", target}
		case info.IsDir():
			out[rel] = node{kind: "dir"}
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			kind := "file"
			if info.Mode()&0o100 != 0 {
				kind = "exec"
			}
			out[rel] = node{kind, string(b)}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func releaseEntries(t *testing.T, state string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(state, "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestMaterialize(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "files", map[string]string{
		"README.md":              "hello\n",
		"deploy/compose.yaml":    "services: {}\n",
		"nginx/conf.d/site.conf": "server {}\n",
		"empty.txt":              "",
	})
	srv.CommitExecutable(t, "scripts", map[string]string{"bin/run.sh": "#!/bin/sh\necho run\n"})
	srv.Symlink(t, "link dir", "current", "deploy")
	sha := srv.Symlink(t, "link file", "nginx/main.conf", "conf.d/site.conf")
	want := snapshot(t, srv.WorkDir) // the working clone is the tree of sha

	src, state := newSource(t, srv.URL)
	if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), sha)
	if err != nil {
		t.Fatalf("Materialize: %v", err)
	}
	if dir != filepath.Join(state, "releases", sha) || !filepath.IsAbs(dir) {
		t.Fatalf("Materialize = %s, want %s", dir, filepath.Join(state, "releases", sha))
	}

	got := snapshot(t, dir)
	if len(got) != len(want) {
		t.Errorf("release has %d entries, tree has %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: release has %+v, tree has %+v", p, got[p], w)
		}
	}
	if got["bin/run.sh"].kind != "exec" || got["README.md"].kind != "file" {
		t.Errorf("executable bit not kept: run.sh %v, README.md %v", got["bin/run.sh"], got["README.md"])
	}

	// Read-only everywhere: exact modes, since root ignores permissions.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var want fs.FileMode
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			return nil
		case info.IsDir():
			want = 0o555
		case strings.HasSuffix(p, "run.sh"):
			want = 0o555
		default:
			want = 0o444
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Idempotent: the same dir, untouched, and nothing else in releases.
	again, err := src.Materialize(ctx(t), sha)
	if err != nil || again != dir {
		t.Fatalf("second Materialize = %s, %v; want %s", again, err, dir)
	}
	if after := snapshot(t, dir); len(after) != len(got) {
		t.Errorf("second Materialize changed the release")
	}
	if names := releaseEntries(t, state); len(names) != 1 || names[0] != sha {
		t.Errorf("releases dir holds %v, want only %s (no staging leftovers)", names, sha)
	}
}

func TestMaterializeRemovesCrashLeftovers(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	sha := srv.Commit(t, "files", map[string]string{"a.txt": "a"})
	src, state := newSource(t, srv.URL)
	if _, err := src.Fetch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 in the middle of writing leaves: a half-written,
	// partly read-only staging dir.
	leftover := filepath.Join(state, "releases", ".tmp-"+sha+"-12345")
	if err := os.MkdirAll(filepath.Join(leftover, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "sub", "half"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(leftover, "sub"), 0o555); err != nil {
		t.Fatal(err)
	}

	if _, err := src.Materialize(ctx(t), sha); err != nil {
		t.Fatalf("Materialize: %v", err)
	}
	if names := releaseEntries(t, state); len(names) != 1 || names[0] != sha {
		t.Errorf("releases dir holds %v, want only %s", names, sha)
	}
}

func TestMaterializeRefusesUnsafeTrees(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, srv *gitserver.Server) string
		want  []string // substrings of the error
	}{
		{
			name: "symlink escaping the release",
			build: func(t *testing.T, srv *gitserver.Server) string {
				return srv.Symlink(t, "escape", "deploy/secrets", "../../etc")
			},
			want: []string{"deploy/secrets", "outside the release"},
		},
		{
			name: "absolute symlink",
			build: func(t *testing.T, srv *gitserver.Server) string {
				return srv.Symlink(t, "abs", "passwd", "/etc/passwd")
			},
			want: []string{"passwd", "absolute"},
		},
		{
			// Each link alone reads as staying inside; followed together
			// they climb out (a/a is the root, so a/a/../.. is its parent).
			name: "symlink chain escaping",
			build: func(t *testing.T, srv *gitserver.Server) string {
				srv.Symlink(t, "self", "a", ".")
				return srv.Symlink(t, "climb", "b", "a/a/../..")
			},
			want: []string{"b", "outside the release"},
		},
		{
			name: "submodule",
			build: func(t *testing.T, srv *gitserver.Server) string {
				return srv.Submodule(t, "vendor", "vendor/lib", "0123456789abcdef0123456789abcdef01234567")
			},
			want: []string{"vendor/lib", "submodules are not supported"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitserver.Start(t, gitserver.Options{})
			srv.Commit(t, "base", map[string]string{"deploy/compose.yaml": "services: {}\n"})
			sha := tt.build(t, srv)
			src, state := newSource(t, srv.URL)
			if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
				t.Fatal(err)
			}
			_, err := src.Materialize(ctx(t), sha)
			if err == nil {
				t.Fatalf("Materialize succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if names := releaseEntries(t, state); len(names) != 0 {
				t.Errorf("releases dir holds %v after a refused Materialize, want nothing", names)
			}
		})
	}
}

func TestMaterializeNeedsCachedCommit(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "base", map[string]string{"a": "a"})
	src, state := newSource(t, srv.URL)
	if _, err := src.Materialize(ctx(t), strings.Repeat("ab", 20)); err == nil || !strings.Contains(err.Error(), "not in the cache") {
		t.Errorf("Materialize of an unknown commit: err = %v", err)
	}
	if _, err := src.Materialize(ctx(t), "main"); err == nil {
		t.Errorf("Materialize of a branch name succeeded; it takes SHAs only")
	}
	if names := releaseEntries(t, state); len(names) != 0 {
		t.Errorf("releases dir holds %v", names)
	}
}

func TestPrune(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	shas := commitN(t, srv, 5, "c")
	src, state := newSource(t, srv.URL)
	dirs := make([]string, len(shas))
	base := time.Now().Add(-time.Hour)
	for i, sha := range shas {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatal(err)
		}
		dir, err := src.Materialize(ctx(t), sha)
		if err != nil {
			t.Fatal(err)
		}
		dirs[i] = dir
		// Explicit ages: shas[4] newest, shas[0] oldest.
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(dir, at, at); err != nil {
			t.Fatal(err)
		}
	}
	stray := filepath.Join(state, "releases", "not-a-release")
	if err := os.Mkdir(stray, 0o755); err != nil {
		t.Fatal(err)
	}

	// Keep the oldest (still mounted), retain the 2 newest of the rest.
	if err := src.Prune(map[string]bool{dirs[0]: true}, 2); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	for i, dir := range dirs {
		_, err := os.Stat(dir)
		wantKept := i == 0 || i >= 3
		if wantKept && err != nil {
			t.Errorf("release %d was removed: %v", i, err)
		}
		if !wantKept && err == nil {
			t.Errorf("release %d was kept", i)
		}
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("Prune removed an entry that is not a release: %v", err)
	}

	// retain 0 removes everything not kept; kept dirs always survive.
	if err := src.Prune(map[string]bool{dirs[0]: true}, 0); err != nil {
		t.Fatal(err)
	}
	if names := releaseEntries(t, state); len(names) != 2 {
		t.Errorf("after Prune(retain=0) releases = %v, want the kept one and the stray dir", names)
	}
	// A pruned release can be materialized again.
	if _, err := src.Materialize(ctx(t), shas[4]); err != nil {
		t.Fatalf("Materialize after Prune: %v", err)
	}
}
