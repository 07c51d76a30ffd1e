package gitsource_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// monoFiles is a small tree with files large enough to take blocks of
// their own, a duplicate inside the tree, and an exec with the content of
// a plain file (the mode is per inode: it must not be linked to it).
func monoFiles() map[string]string {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	return map[string]string{
		"compose.yaml":        "services: {}\n",
		"app/main.go":         big + "main\n",
		"app/lib/util.go":     big + "util\n",
		"app/lib/copy.go":     big + "util\n", // same blob as util.go
		"web/index.html":      big + "index\n",
		"web/static/site.css": big + "css\n",
	}
}

// materializeAll resolves and materializes each commit, in order.
func materializeAll(t *testing.T, src *gitsource.Source, shas ...string) []string {
	t.Helper()
	var dirs []string
	for _, sha := range shas {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatal(err)
		}
		dir, err := src.Materialize(ctx(t), sha)
		if err != nil {
			t.Fatalf("Materialize %s: %v", sha[:12], err)
		}
		dirs = append(dirs, dir)
	}
	return dirs
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Lstat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

// manifestIno is the inode of a release's manifest file: a check that
// found the release stale writes it again (a new file renamed over it).
func manifestIno(t *testing.T, state, sha string) uint64 {
	t.Helper()
	return inode(t, filepath.Join(state, "release-manifests", sha+".json"))
}

// TestMaterializeSharesUnchangedFiles: the release of a commit that
// changes one file shares every other file with the release before it
// (same inode), adds exactly that file's and its own directories' blocks
// to the state dir, and both releases still verify without a hash (their
// manifests are not written again by the next check).
func TestMaterializeSharesUnchangedFiles(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "a", monoFiles())
	tool := srv.CommitExecutable(t, "tool", map[string]string{"bin/tool": "services: {}\n"}) // compose.yaml's content, as an exec
	b := srv.Commit(t, "b", map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n"})
	src, state := newSource(t, srv.URL)
	dirs := materializeAll(t, src, a, tool)
	before, err := src.DiskUsage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	dirB := materializeAll(t, src, b)[0]
	after, err := src.DiskUsage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}

	if !sameFile(t, filepath.Join(dirs[0], "app/lib/util.go"), filepath.Join(dirs[0], "app/lib/copy.go")) {
		t.Error("two files with the same blob in one release are two copies")
	}
	if sameFile(t, filepath.Join(dirs[1], "bin/tool"), filepath.Join(dirs[1], "compose.yaml")) {
		t.Error("an exec was linked to a plain file with the same content")
	}
	for p := range monoFiles() {
		shared := sameFile(t, filepath.Join(dirs[0], p), filepath.Join(dirB, p))
		if want := p != "compose.yaml"; shared != want {
			t.Errorf("%s shared between the releases = %v, want %v", p, shared, want)
		}
	}
	if !sameFile(t, filepath.Join(dirs[1], "bin/tool"), filepath.Join(dirB, "bin/tool")) {
		t.Error("bin/tool is not shared")
	}
	// What b added: its changed file and its directories, nothing else.
	want := blocks(t, filepath.Join(dirB, "compose.yaml"))
	for _, d := range []string{"", "app", "app/lib", "web", "web/static", "bin"} {
		want += blocks(t, filepath.Join(dirB, d))
	}
	if got := after.ReleasesBytes - before.ReleasesBytes; got != want {
		t.Errorf("release b added %d bytes under releases, want %d (compose.yaml and b's directories)", got, want)
	}
	if after.Releases != 3 {
		t.Errorf("DiskUsage.Releases = %d, want 3", after.Releases)
	}
	if after.GitBytes <= 0 || after.OtherBytes <= 0 {
		t.Errorf("DiskUsage = %+v, want the git cache and manifests counted", after)
	}

	// The link moved the shared inodes' ctime; the manifests of a and of
	// tool were updated with it, so checking any release hashes nothing
	// and writes no manifest.
	for _, sha := range []string{a, tool, b} {
		ino := manifestIno(t, state, sha)
		if _, err := src.Materialize(ctx(t), sha); err != nil {
			t.Fatalf("Materialize %s again: %v", sha[:12], err)
		}
		if manifestIno(t, state, sha) != ino {
			t.Errorf("the check of release %s found it stale and wrote its manifest again", sha[:12])
		}
	}
	for i, dir := range append(dirs, dirB) {
		if got := snapshot(t, dir); got["app/lib/util.go"].content != monoFiles()["app/lib/util.go"] {
			t.Errorf("release %d: util.go differs from git", i)
		}
	}
}

// TestMaterializeDoesNotLinkToAChangedFile: a file of an older release
// edited by hand is not linked to, nor one whose permissions were
// changed; a file merely touched (content still git's) is hashed and
// linked to, and its release's manifest is refreshed.
func TestMaterializeDoesNotLinkToAChangedFile(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "a", monoFiles())
	b := srv.Commit(t, "b", map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n"})
	src, state := newSource(t, srv.URL)
	dirA := materializeAll(t, src, a)[0]

	edited := filepath.Join(dirA, "app/main.go")
	handEdit(t, edited, strings.Repeat("X", len(monoFiles()["app/main.go"])))
	if err := os.Chmod(edited, 0o444); err != nil {
		t.Fatal(err)
	}
	widened := filepath.Join(dirA, "web/index.html")
	if err := os.Chmod(widened, 0o644); err != nil {
		t.Fatal(err)
	}
	touched := filepath.Join(dirA, "web/static/site.css")
	at := time.Now().Add(-time.Hour)
	if err := os.Chtimes(touched, at, at); err != nil {
		t.Fatal(err)
	}

	dirB := materializeAll(t, src, b)[0]
	for p, want := range map[string]bool{"app/main.go": false, "web/index.html": false, "web/static/site.css": true, "app/lib/util.go": true} {
		if got := sameFile(t, filepath.Join(dirA, p), filepath.Join(dirB, p)); got != want {
			t.Errorf("%s linked from release a = %v, want %v", p, got, want)
		}
	}
	got := snapshot(t, dirB)
	for p, content := range monoFiles() {
		if p != "compose.yaml" && got[p].content != content {
			t.Errorf("release b's %s differs from git", p)
		}
	}
	// b is right and recorded as it is: its next check writes nothing.
	ino := manifestIno(t, state, b)
	if _, err := src.Materialize(ctx(t), b); err != nil {
		t.Fatal(err)
	}
	if manifestIno(t, state, b) != ino {
		t.Error("release b was stale right after it was written")
	}
	// a is restored from git by its next check, without touching b.
	if _, err := src.Materialize(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, dirA)["app/main.go"].content; got != monoFiles()["app/main.go"] {
		t.Error("release a's edited file was not restored")
	}
}

// TestRepairOfASharedFile: an edit by hand of a file two releases share
// shows in both (one inode); the repair of either rewrites it in place,
// which restores both at once, and both verify afterwards.
func TestRepairOfASharedFile(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "a", monoFiles())
	b := srv.Commit(t, "b", map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n"})
	src, _ := newSource(t, srv.URL)
	dirs := materializeAll(t, src, a, b)
	shared := "app/lib/util.go"
	ino := inode(t, filepath.Join(dirs[0], shared))

	handEdit(t, filepath.Join(dirs[1], shared), "tampered\n")
	if got := snapshot(t, dirs[0])[shared].content; got != "tampered\n" {
		t.Fatalf("the edit does not show in the other release (%.40q): not one inode", got)
	}
	if _, err := src.Materialize(ctx(t), a); err != nil {
		t.Fatalf("repair of release a: %v", err)
	}
	for i, dir := range dirs {
		p := filepath.Join(dir, shared)
		if got := snapshot(t, dir)[shared].content; got != monoFiles()[shared] {
			t.Errorf("release %d's %s after the repair = %.40q", i, shared, got)
		}
		if inode(t, p) != ino {
			t.Errorf("release %d's %s was replaced, not rewritten in place", i, shared)
		}
		if fi, _ := os.Lstat(p); fi.Mode().Perm() != 0o444 {
			t.Errorf("release %d's %s mode %v after the repair", i, shared, fi.Mode())
		}
	}
	if _, err := src.Materialize(ctx(t), b); err != nil {
		t.Fatalf("check of release b after the repair: %v", err)
	}
	if !sameFile(t, filepath.Join(dirs[0], shared), filepath.Join(dirs[1], shared)) {
		t.Error("the releases no longer share the repaired file")
	}
}

// TestMaterializeWritesWhenLinkingFails: a file system that refuses hard
// links (another device, too many links, no permission) costs a written
// copy, not a failed release.
func TestMaterializeWritesWhenLinkingFails(t *testing.T) {
	for _, refusal := range []error{syscall.EXDEV, syscall.EMLINK, syscall.EPERM} {
		t.Run(refusal.Error(), func(t *testing.T) {
			srv := gitserver.Start(t, gitserver.Options{})
			a := srv.Commit(t, "a", monoFiles())
			b := srv.Commit(t, "b", map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n"})
			src, _ := newSource(t, srv.URL)
			tried := 0
			gitsource.SetLinkFunc(src, func(oldname, newname string) error {
				tried++
				return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: refusal}
			})
			dirs := materializeAll(t, src, a, b)
			if tried == 0 {
				t.Fatal("no link was tried")
			}
			for p, content := range monoFiles() {
				if sameFile(t, filepath.Join(dirs[0], p), filepath.Join(dirs[1], p)) {
					t.Errorf("%s is shared although linking failed", p)
				}
				if got := snapshot(t, dirs[1])[p].content; p != "compose.yaml" && got != content {
					t.Errorf("release b's %s differs from git", p)
				}
			}
			if _, err := src.Materialize(ctx(t), b); err != nil {
				t.Errorf("check of release b: %v", err)
			}
		})
	}
}

// TestPruneOfASharedRelease: pruning the release a newer one shares files
// with frees only what the newer one does not hold; the newer one keeps
// its content, and its manifest has the stat the removal left (unlink
// moves the ctime of a shared inode), so its next check hashes nothing.
func TestPruneOfASharedRelease(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	a := srv.Commit(t, "a", monoFiles())
	b := srv.Commit(t, "b", map[string]string{"compose.yaml": "services: {web: {image: nginx}}\n"})
	src, state := newSource(t, srv.URL)
	dirs := materializeAll(t, src, a, b)
	before, err := src.DiskUsage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Prune(map[string]bool{dirs[1]: true}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs[0]); err == nil {
		t.Fatal("release a was not pruned")
	}
	after, err := src.DiskUsage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// Freed: a's compose.yaml and a's directories.
	freed := blocks(t, filepath.Join(dirs[1], "compose.yaml"))
	for _, d := range []string{"", "app", "app/lib", "web", "web/static"} {
		freed += blocks(t, filepath.Join(dirs[1], d))
	}
	if got := before.ReleasesBytes - after.ReleasesBytes; got != freed {
		t.Errorf("pruning a freed %d bytes, want %d (what b does not share)", got, freed)
	}
	ino := manifestIno(t, state, b)
	if _, err := src.Materialize(ctx(t), b); err != nil {
		t.Fatalf("check of release b after pruning a: %v", err)
	}
	if manifestIno(t, state, b) != ino {
		t.Error("the check of release b after pruning a found it stale and wrote its manifest again")
	}
	got := snapshot(t, dirs[1])
	for p, content := range monoFiles() {
		if p != "compose.yaml" && got[p].content != content {
			t.Errorf("release b's %s after pruning a differs from git", p)
		}
	}
}
