package gitsource

// Compaction by rebuild. Every fetch adds one pack to the cache and go-git
// opens every pack's index, so left alone the cache grows without bound
// and lookups slow down with it. go-git cannot repack a shallow, partial
// cache (RepackObjects walks history the cache does not have), so instead
// the cache is rebuilt: the branch head is fetched afresh, exactly as a
// first sync, into a sibling directory, which then replaces the cache.
// Nothing is lost that matters: releases verify against their manifests,
// not the cache; blobs are fetched on demand (ensureBlobs) and a pinned
// commit not in the cache is fetched again by Resolve.
//
// The swap is two renames, git -> git.old and git.new -> git, so that at
// any instant (a kill -9 included) the state dir holds one of: git alone;
// git and an unfinished git.new; git.new and git.old (between the
// renames); git and git.old. recoverCache turns each back into git alone,
// keeping the old cache whenever the new one may be unfinished.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// DefaultMaxPacks is how many packs the cache may hold before the branch
// fetch rebuilds it instead of adding one more. A rebuild costs one first
// sync of the head (commits and trees only from a partial-clone server),
// so it is rare enough to be cheap; 64 indexes keep lookups fast.
const DefaultMaxPacks = 64

// Suffixes of the cache's sibling dirs during a rebuild.
const (
	newCacheSuffix = ".new" // the rebuild being fetched; unfinished until renamed to git
	oldCacheSuffix = ".old" // the replaced cache, until it is removed
)

// maxPackCount is the bound in force (Source.maxPacks, settable by tests).
func (s *Source) maxPackCount() int {
	if s.maxPacks > 0 {
		return s.maxPacks
	}
	return DefaultMaxPacks
}

// packCount is the number of packs in the cache's objects/pack.
func packCount(gitDir string) int {
	packs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "pack", "pack-*.pack"))
	return len(packs)
}

// recoverCache brings the cache dir back to a single gitDir after a
// rebuild was interrupted (see the file comment). Callers hold the file
// lock, or are the only user of the state dir.
func recoverCache(gitDir string) error {
	newDir, oldDir := gitDir+newCacheSuffix, gitDir+oldCacheSuffix
	if exists(oldDir) {
		if exists(gitDir) {
			// The swap finished; only removing the old cache did not.
			if err := os.RemoveAll(oldDir); err != nil {
				return fmt.Errorf("remove replaced git cache %s: %w", oldDir, err)
			}
		} else if err := os.Rename(oldDir, gitDir); err != nil {
			// Killed between the two renames: git.new may be whole, but
			// the old cache is known to be.
			return fmt.Errorf("restore git cache from %s: %w", oldDir, err)
		}
	}
	if exists(newDir) {
		if err := os.RemoveAll(newDir); err != nil {
			return fmt.Errorf("remove unfinished git cache rebuild %s: %w", newDir, err)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// recoverCacheLocked runs recoverCache under the file lock when a rebuild
// left something behind; otherwise it takes no lock, so that a New during
// another process's fetch does not wait for it.
func (s *Source) recoverCacheLocked() error {
	if !exists(s.gitDir+newCacheSuffix) && !exists(s.gitDir+oldCacheSuffix) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	unlock, err := lockFile(ctx, s.lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	return recoverCache(s.gitDir)
}

// compact rebuilds the cache when it holds too many packs (rebuildCache)
// and reports whether it did. A failed rebuild leaves the old cache, into
// which the caller then fetches as usual; only an abandoned one, which may
// still be writing, is an error. Callers hold the lock.
func (s *Source) compact(ctx context.Context) (bool, error) {
	rebuilt, err := s.rebuildCache(ctx)
	if err == nil {
		return rebuilt, nil
	}
	if s.pending != nil {
		return false, fmt.Errorf("rebuild git cache: %w", err)
	}
	s.logFor(ctx).Warn().Str("reason", err.Error()).Int("packs", packCount(s.gitDir)).
		Msg("could not rebuild the git cache; fetching into the old one, the next fetch tries again")
	return false, nil
}

// rebuildCache replaces the cache with a fresh shallow fetch of the branch
// head when it holds more packs than the bound. It reports whether it did;
// on any failure the old cache stays, as it was. Callers hold the lock.
func (s *Source) rebuildCache(ctx context.Context) (bool, error) {
	packs := packCount(s.gitDir)
	if packs <= s.maxPackCount() {
		return false, nil
	}
	before := treeBytes(s.gitDir)
	if err := recoverCache(s.gitDir); err != nil {
		return false, err
	}
	newDir := s.gitDir + newCacheSuffix
	if err := s.fillCache(ctx, newDir); err != nil {
		// An abandoned fetch may still write newDir: the next rebuild,
		// which waits for it (see lock), or New removes it.
		if s.pending == nil {
			_ = os.RemoveAll(newDir)
		}
		return false, err
	}
	if err := s.swapCache(newDir); err != nil {
		return false, err
	}
	s.logFor(ctx).Info().Int("packs_before", packs).Int64("bytes_before", before).
		Int64("bytes_after", treeBytes(s.gitDir)).Int("max_packs", s.maxPackCount()).
		Msg("rebuilt the git cache from a fresh fetch of the branch head")
	return true, nil
}

// fillCache makes a new cache in dir holding the branch head, fetched as a
// first sync is, and synced to disk.
func (s *Source) fillCache(ctx context.Context, dir string) error {
	repo, err := openCache(dir)
	if err != nil {
		return err
	}
	// A Source on the new cache: every fetch helper reads s.repo and
	// s.gitDir. It shares the lock and credentials.
	fresh := *s
	fresh.gitDir, fresh.repo, fresh.pending = dir, repo, nil
	if s.marked(noFilterMarker) {
		// The server would not send blobs by id: keep fetching in full.
		if err := fresh.mark(noFilterMarker); err != nil {
			return err
		}
	}
	local := plumbing.NewRemoteReferenceName("origin", s.opts.Branch)
	spec := config.RefSpec(fmt.Sprintf("+%s:%s", plumbing.NewBranchReferenceName(s.opts.Branch), local))
	err = fresh.fetch(ctx, spec, 1)
	s.abandon(fresh.pending)
	if err != nil {
		return err
	}
	if _, err := repo.Reference(local, false); err != nil {
		return fmt.Errorf("read fetched ref: %w", err)
	}
	return syncTree(dir)
}

// swapCache puts the cache filled in newDir in place of the current one.
// Until the second rename the old cache is the one recoverCache keeps.
func (s *Source) swapCache(newDir string) error {
	oldDir := s.gitDir + oldCacheSuffix
	if err := os.Rename(s.gitDir, oldDir); err != nil {
		return fmt.Errorf("swap in rebuilt git cache: %w", err)
	}
	if err := os.Rename(newDir, s.gitDir); err != nil {
		if rerr := os.Rename(oldDir, s.gitDir); rerr != nil {
			return fmt.Errorf("swap in rebuilt git cache: %w (and restoring the old one: %w; lockstep restores it at its next start)", err, rerr)
		}
		return fmt.Errorf("swap in rebuilt git cache: %w", err)
	}
	if err := s.openRepo(); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(s.gitDir)); err != nil {
		return err
	}
	if err := os.RemoveAll(oldDir); err != nil {
		// Harmless but for the space: the next rebuild or New removes it.
		s.log.Warn().Err(err).Msg("could not remove the replaced git cache")
	}
	return nil
}

// openRepo (re)opens the cache at s.gitDir and records which directory it
// is, so that lock notices a rebuild by another process.
// Callers hold the lock.
func (s *Source) openRepo() error {
	repo, err := openCache(s.gitDir)
	if err != nil {
		return err
	}
	fi, err := os.Stat(s.gitDir)
	if err != nil {
		return fmt.Errorf("open git cache: %w", err)
	}
	s.repo, s.cacheDir = repo, fi
	return nil
}

// followRebuild reopens the cache when another process (or a Source of
// this one made before a reload) rebuilt it: go-git keeps the list of
// packs it read, and those are gone. Callers hold the lock.
func (s *Source) followRebuild() error {
	fi, err := os.Stat(s.gitDir)
	if err == nil && s.cacheDir != nil && os.SameFile(fi, s.cacheDir) {
		return nil
	}
	if err := recoverCache(s.gitDir); err != nil {
		return err
	}
	return s.openRepo()
}

// syncTree fsyncs every file and directory under dir, so that the renames
// that follow never expose a cache whose contents a power loss dropped.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("sync rebuilt git cache: %w", err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync rebuilt git cache: %w", err)
		}
		return nil
	})
}

// treeBytes is what dir takes on disk (see DiskUsage), 0 when unreadable:
// it is only logged.
func treeBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			_, b, _ := diskStat(fi)
			n += b
		}
		return nil
	})
	return n
}
