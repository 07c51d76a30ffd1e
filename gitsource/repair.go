package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
)

// ModifiedError says a release directory was changed by hand (a file
// edited, deleted or added under StateDir/releases/<sha>) and could not be
// restored from git, so nothing was deployed from it.
type ModifiedError struct {
	Commit   string
	Dir      string
	Problems []string // "worker/config.txt: content differs from git: ..."
	Err      error    // why it could not be restored
}

func (e *ModifiedError) Error() string {
	return fmt.Sprintf("release directory %s was modified by hand (%s) and cannot be restored from git: %v; nothing was deployed from it. Make git reachable again (the next pass restores it), or remove the directory",
		e.Dir, describeStrings(e.Problems), e.Err)
}

func (e *ModifiedError) Unwrap() error { return e.Err }

func describeStrings(ps []string) string {
	out := ""
	for i, p := range ps {
		if i == 5 {
			return out + fmt.Sprintf("; and %d more", len(ps)-5)
		}
		if i > 0 {
			out += "; "
		}
		out += p
	}
	return out
}

// checkRelease verifies the existing release dir of sha against its
// manifest, or against the commit's tree in the cache when it has none (a
// release written by an older lockstep, or a damaged manifest), and
// restores from git what differs. It returns the manifest the release now
// matches. Callers hold the lock.
//
// A repair rewrites a changed file in place (the same inode), so a
// container that bind-mounts it sees git's content again at once; a file
// added by hand is removed, one deleted is written again. When the git
// objects needed are not in the cache, the release is left as it is and
// the error is a *ModifiedError: content that is not in git is never
// handed out.
func (s *Source) checkRelease(ctx context.Context, sha, dir string) (*manifest, error) {
	log := s.logFor(ctx)
	m, err := s.readManifest(sha)
	if err != nil {
		if !errors.Is(err, errNoManifest) {
			return nil, err
		}
		entries, ferr := s.flattenTree(ctx, sha)
		if ferr != nil {
			return nil, fmt.Errorf("release directory %s has no valid manifest (%v) and cannot be verified against git: %w", dir, err, ferr)
		}
		log.Info().Str("release", sha).Str("reason", err.Error()).Msg("verifying the release directory against git and writing its manifest")
		m = manifestFrom(sha, entries)
	}
	bad, hollow, stale, err := verifyTree(dir, m)
	if err != nil {
		return nil, err
	}
	if len(hollow) > 0 {
		if err := acceptHollow(log, sha, dir, m, hollow); err != nil {
			return nil, err
		}
		stale = true
	}
	if len(bad) == 0 {
		if stale || m.Digest == "" {
			if err := s.writeManifest(m, dir); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	for _, b := range bad {
		log.Warn().Str("release", sha).Str("path", b.Path).Str("problem", b.Problem).
			Msg("release directory modified by hand: restoring it from git")
	}
	if err := s.repairTree(ctx, dir, m, bad); err != nil {
		problems := make([]string, len(bad))
		for i, b := range bad {
			problems[i] = b.String()
		}
		return nil, &ModifiedError{Commit: sha, Dir: dir, Problems: problems, Err: err}
	}
	if again, _, _, err := verifyTree(dir, m); err != nil || len(again) > 0 {
		return nil, fmt.Errorf("release directory %s still differs from git after restoring it (%s): %v", dir, describe(again), err)
	}
	if err := s.writeManifest(m, dir); err != nil {
		return nil, err
	}
	log.Info().Str("release", sha).Int("paths", len(bad)).Msg("release directory restored from git")
	return m, nil
}

// repairTree makes dir match m again where bad says it differs. Every blob
// needed is read first, so that a cache lacking one leaves dir untouched.
func (s *Source) repairTree(ctx context.Context, dir string, m *manifest, bad []mismatch) error {
	byPath := make(map[string]manifestEntry, len(m.Entries))
	for _, e := range m.Entries {
		byPath[e.Path] = e
	}
	var blobs []plumbing.Hash
	for _, b := range bad {
		if e, ok := byPath[b.Path]; ok && !b.modeOnly && (e.Kind == kindFile || e.Kind == kindExec) {
			blobs = append(blobs, plumbing.NewHash(e.Blob))
		}
	}
	// A partial cache may never have had them; fetched (or found missing)
	// before dir is touched.
	if err := s.ensureBlobs(ctx, blobs); err != nil {
		return err
	}
	opened := map[string]bool{} // dirs made writable, made read-only again at the end
	open := func(d string) error {
		if opened[d] {
			return nil
		}
		opened[d] = true
		return os.Chmod(d, 0o755)
	}
	var err error
	for _, b := range bad {
		if err = ctx.Err(); err != nil {
			break
		}
		if b.Path == "." {
			// The root's own permissions: read-only again with the others.
			opened[dir] = true
			continue
		}
		full := filepath.Join(dir, filepath.FromSlash(b.Path))
		if err = open(filepath.Dir(full)); err != nil {
			break
		}
		e, inGit := byPath[b.Path]
		if err = s.repairEntry(full, e, inGit, b.modeOnly); err != nil {
			err = fmt.Errorf("restore %s: %w", b.Path, err)
			break
		}
		if inGit && e.Kind == kindDir {
			opened[full] = true
		}
	}
	return errors.Join(err, closeDirs(opened))
}

// repairEntry puts one entry back as git has it.
func (s *Source) repairEntry(full string, e manifestEntry, inGit, modeOnly bool) error {
	fi, lerr := os.Lstat(full)
	exists := lerr == nil
	if !inGit {
		return RemoveReadOnlyTree(full)
	}
	perm := os.FileMode(0o444)
	if e.Kind == kindExec {
		perm = 0o555
	}
	if modeOnly {
		if e.Kind == kindDir {
			return os.Chmod(full, 0o755) // read-only again with the others
		}
		return os.Chmod(full, perm)
	}
	if exists && (e.Kind != kindFile && e.Kind != kindExec || !fi.Mode().IsRegular()) {
		if err := RemoveReadOnlyTree(full); err != nil {
			return err
		}
		exists = false
	}
	switch e.Kind {
	case kindDir:
		if exists {
			return nil
		}
		return os.Mkdir(full, 0o755)
	case kindSymlink:
		return os.Symlink(e.Target, full)
	}
	if !exists {
		return s.writeBlob(full, treeEntry{path: e.Path, hash: plumbing.NewHash(e.Blob)}, perm)
	}
	return s.rewriteBlob(full, e, perm)
}

// rewriteBlob writes git's content into the existing file at full, keeping
// its inode: a container that bind-mounts the file sees it at once.
func (s *Source) rewriteBlob(full string, e manifestEntry, perm os.FileMode) (err error) {
	blob, err := s.repo.BlobObject(plumbing.NewHash(e.Blob))
	if err != nil {
		return err
	}
	r, err := blob.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := os.Chmod(full, 0o600); err != nil {
		return err
	}
	// O_NOFOLLOW: full was a regular file a moment ago; never write through
	// a symlink put there since.
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	return f.Sync()
}

// closeDirs makes the dirs a repair opened read-only again, deepest first,
// and syncs them.
func closeDirs(opened map[string]bool) error {
	dirs := make([]string, 0, len(opened))
	for d := range opened {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, d := range dirs {
		if _, err := os.Lstat(d); err != nil {
			continue // removed with an entry added by hand
		}
		if err := os.Chmod(d, 0o555); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := syncDir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
