package gitsource_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// mountTmpfs mounts a tmpfs of size (mount's syntax: "1m") on a fresh
// temp dir and unmounts it at cleanup. It skips, loudly, where mounting is
// not allowed (not root, no CAP_SYS_ADMIN), except under CI=true, which
// runs as root and must run the test.
func mountTmpfs(t *testing.T, size string) string {
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
		makeWritable(t, dir)
		// Lazily: go-git leaks the descriptors of a pack it failed to
		// write until they are garbage collected.
		if out, err := exec.Command("umount", "--lazy", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// remountTmpfs grows (or shrinks) a tmpfs mountTmpfs made.
func remountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s size=%s: %v: %s", dir, size, err, out)
	}
}

// bigCommit commits a file that does not compress, so that its pack is
// larger than a tiny tmpfs and than a pipe's buffer.
func bigCommit(t *testing.T, srv *gitserver.Server, n int) string {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return srv.Commit(t, "big", map[string]string{"big.txt": base64.StdEncoding.EncodeToString(raw), "compose.yaml": "services: {}\n"})
}

// TestFetchOnFullDiskReturnsAndRecovers: a fetch into a state dir on a
// full file system returns within its deadline, says "no space left on
// device" with the path, and succeeds once there is room, over each
// transport that writes a pack (file:// runs git-upload-pack as a child
// process; http does not).
func TestFetchOnFullDiskReturnsAndRecovers(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := bigCommit(t, srv, 1<<20)
	for _, url := range []string{"file://" + srv.BareDir, srv.URL} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			state := mountTmpfs(t, "256k")
			src, err := gitsource.New(gitsource.Options{URL: url, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			done := make(chan error, 1)
			go func() { _, err := src.Fetch(ctx(t)); done <- err }()
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				t.Fatalf("Fetch on a full disk did not return within 90s (its timeout is 30s)")
			}
			t.Logf("Fetch returned after %s: %v", time.Since(start), err)
			if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), state) {
				t.Fatalf("Fetch on a full disk: %v; want an error saying \"no space left on device\" and naming a path under %s", err, state)
			}
			remountTmpfs(t, state, "32m")
			got, err := src.Fetch(ctx(t))
			if err != nil || got != head {
				t.Fatalf("Fetch after freeing space = %s, %v; want %s", got, err, head)
			}
			if !cacheHas(t, state, head) {
				t.Fatalf("head not in cache after the retry")
			}
		})
	}
}

// fill writes a file into dir until the file system has about free bytes
// left, and returns it.
func fill(t *testing.T, dir string, free int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	p := filepath.Join(dir, "filler")
	if err := os.WriteFile(p, make([]byte, max(avail-free, 0)), 0o600); err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	return p
}

// TestMaterializeOnFullDiskLeavesNothing: a release that does not fit
// fails with "no space left on device" and the file it was writing, leaves
// no staging dir behind (which would keep the disk full), and is written
// whole once there is room.
func TestMaterializeOnFullDiskLeavesNothing(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := bigCommit(t, srv, 1<<20)
	state := mountTmpfs(t, "8m")
	src, err := gitsource.New(gitsource.Options{URL: srv.URL, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, state, 256<<10)
	_, err = src.Materialize(ctx(t), head)
	releases := filepath.Join(state, "releases")
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), filepath.Join(releases, ".tmp-"+head)) ||
		!strings.Contains(err.Error(), "state dir "+state+" is full") {
		t.Fatalf("Materialize on a full disk: %v; want \"no space left on device\" naming the file under %s", err, releases)
	}
	if left := releaseEntries(t, state); len(left) != 0 {
		t.Fatalf("Materialize on a full disk left %v in %s", left, releases)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dir, err := src.Materialize(ctx(t), head)
	if err != nil {
		t.Fatalf("Materialize after freeing space: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "compose.yaml")); err != nil {
		t.Fatalf("release after freeing space: %v", err)
	}
}
