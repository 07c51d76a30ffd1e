package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestStoreWriteOnFullDisk: a record that does not fit fails with an
// error that matches ENOSPC (so it is classified as retryable) and names
// the record, keeps the previous record whole, and leaves no temp file
// eating what little space is left.
func TestStoreWriteOnFullDisk(t *testing.T) {
	dir := harness.MountTmpfs(t, "1m")
	s := New(dir, 0, zerolog.Nop())
	rel := path("prod", "deployed.json")
	if err := s.write(rel, []byte("old\n")); err != nil {
		t.Fatal(err)
	}
	harness.ResizeTmpfs(t, dir, 64<<10)
	err := s.write(rel, make([]byte, 1<<20))
	p := filepath.Join(dir, rel)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), p) {
		t.Fatalf("write on a full disk: %v; want ENOSPC naming %s", err, p)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "old\n" {
		t.Fatalf("record after a failed write: %q, %v; want the old one", b, err)
	}
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil || len(entries) != 1 {
		t.Fatalf("left in %s after a failed write: %v, %v; want only deployed.json", filepath.Dir(p), entries, err)
	}
}
