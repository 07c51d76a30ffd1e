package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Disk use. The state dir holds the git cache (StateDir/git), the
// release directories (StateDir/releases) and their manifests. A release
// shares every file git did not change with the releases already on disk
// (see dedupe), so what the releases take is not their count times a
// tree: it is measured, on disk, each inode once.

// DiskUsage is what the state dir takes on disk: allocated blocks
// (st_blocks × 512), each inode counted once however many hard links it
// has. Off Linux it is file sizes with every link counted, an upper bound.
type DiskUsage struct {
	GitBytes      int64 `json:"git_bytes"`      // the git cache, and its rebuild while one runs
	ReleasesBytes int64 `json:"releases_bytes"` // every release dir; a file shared by several counts once
	Releases      int   `json:"releases"`       // release directories
	OtherBytes    int64 `json:"other_bytes"`    // manifests, the lock, leftovers of an interrupted write
}

// TotalBytes is the whole state dir.
func (u DiskUsage) TotalBytes() int64 { return u.GitBytes + u.ReleasesBytes + u.OtherBytes }

// DiskUsage measures the Source's state dir (see MeasureDiskUsage).
func (s *Source) DiskUsage(ctx context.Context) (DiskUsage, error) {
	return MeasureDiskUsage(ctx, s.opts.StateDir)
}

// MeasureDiskUsage walks stateDir and adds up what it takes on disk. It
// takes no lock: a release written or pruned meanwhile makes the figure
// a moment old, not wrong, and a status query must not wait for a fetch.
func MeasureDiskUsage(ctx context.Context, stateDir string) (DiskUsage, error) {
	var u DiskUsage
	seen := map[[2]uint64]bool{}
	releases := filepath.Join(stateDir, "releases")
	err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		id, bytes, ok := diskStat(fi)
		if ok && seen[id] {
			return nil
		}
		if ok && fi.Mode().IsRegular() {
			seen[id] = true // only files can have several links
		}
		rel, _ := filepath.Rel(stateDir, p)
		switch top, _, _ := strings.Cut(filepath.ToSlash(rel), "/"); {
		case top == "git", top == "git"+newCacheSuffix, top == "git"+oldCacheSuffix: // a rebuild under way (see compact)
			u.GitBytes += bytes
		case top == "releases" && !strings.HasPrefix(relUnder(releases, p), stagingPrefix):
			if d.IsDir() && filepath.Dir(p) == releases && len(d.Name()) == 40 && hexOnly.MatchString(d.Name()) {
				u.Releases++
			}
			u.ReleasesBytes += bytes
		default:
			u.OtherBytes += bytes
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("measure disk use of state dir %s: %w", stateDir, err)
	}
	return u, nil
}

// relUnder is p relative to dir, "" for dir itself.
func relUnder(dir, p string) string {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." {
		return ""
	}
	return filepath.ToSlash(rel)
}
