package gitsource_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// blocks is what p takes on disk.
func blocks(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestMeasureDiskUsageCountsEachInodeOnce: a file hard-linked into two
// releases counts once; a staging dir left by a crash is not a release.
func TestMeasureDiskUsageCountsEachInodeOnce(t *testing.T) {
	state := t.TempDir()
	a := filepath.Join(state, "releases", strings.Repeat("a", 40))
	b := filepath.Join(state, "releases", strings.Repeat("b", 40))
	staging := filepath.Join(state, "releases", ".tmp-"+strings.Repeat("c", 40)+"-1")
	for _, d := range []string{filepath.Join(state, "git"), a, b, staging, filepath.Join(state, "release-manifests")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	big := []byte(strings.Repeat("x", 1<<20))
	for _, p := range []string{filepath.Join(state, "git", "pack"), filepath.Join(a, "f"), filepath.Join(staging, "f")} {
		if err := os.WriteFile(p, big, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(a, "f"), filepath.Join(b, "f")); err != nil {
		t.Fatal(err)
	}
	u, err := gitsource.MeasureDiskUsage(ctx(t), state)
	if err != nil {
		t.Fatal(err)
	}
	file := blocks(t, filepath.Join(a, "f"))
	dirs := blocks(t, filepath.Join(state, "releases")) + blocks(t, a) + blocks(t, b)
	if u.Releases != 2 || u.ReleasesBytes != file+dirs {
		t.Errorf("releases = %d, %d bytes; want 2, %d (one file, three dirs)", u.Releases, u.ReleasesBytes, file+dirs)
	}
	if u.GitBytes != blocks(t, filepath.Join(state, "git", "pack"))+blocks(t, filepath.Join(state, "git")) {
		t.Errorf("git = %d bytes", u.GitBytes)
	}
	if u.OtherBytes < file {
		t.Errorf("other = %d bytes, want at least the staging dir's file (%d)", u.OtherBytes, file)
	}
	if u.TotalBytes() != u.GitBytes+u.ReleasesBytes+u.OtherBytes {
		t.Error("TotalBytes is not the sum")
	}
}
