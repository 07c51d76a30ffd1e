package harness

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of size (mount's syntax: "256k", "8m") on a
// fresh temp dir, for tests of a full file system, and unmounts it at
// cleanup; register it before whatever uses the dir, so that cleanup runs
// after theirs. It skips loudly where mounting is not allowed (not root),
// except under CI=true, which runs as root and must run the test.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("SKIPPED: cannot mount a tmpfs to fill (needs root): %v: %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		// Releases are read-only; t.TempDir removes the dir after.
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		// Lazily: go-git keeps the descriptors of a pack it failed to
		// write open until they are garbage collected.
		if out, err := exec.Command("umount", "--lazy", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// ResizeTmpfs sets the size of a tmpfs MountTmpfs made to what it holds
// plus free bytes: a small free fills it, a large one grows it.
func ResizeTmpfs(t testing.TB, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	size := fmt.Sprintf("size=%dk", (used+free+1023)/1024)
	if out, err := exec.Command("mount", "-o", "remount,"+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, size, err, out)
	}
}
