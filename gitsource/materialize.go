package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// stagingPrefix starts the name of a release being written. Anything with
// this prefix in the releases dir while the lock is free is a crash leftover.
const stagingPrefix = ".tmp-"

// treeEntry is one entry of the flattened tree of a release.
type treeEntry struct {
	path   string // slash-separated, relative to the release root
	mode   filemode.FileMode
	hash   plumbing.Hash
	target string // symlinks only
	size   int64  // regular files: the blob's size, from its object header
}

// Materialize writes the tree of commit sha as the immutable release
// directory StateDir/releases/<sha> and returns its absolute path.
//
// The tree is written into a staging dir beside the final one, fsynced,
// made read-only (files 0444 or 0555, dirs 0555) and renamed into place, so
// a crash leaves either no release or a complete one. An existing release
// dir is verified first (see checkRelease): what was changed in it by hand
// is restored from git. Submodules, paths with ".." or absolute
// components, symlinks that are absolute or resolve outside the release,
// and trees over the release limits (MaxReleaseBytes, MaxReleaseEntries)
// are refused with an error naming the path; nothing is left behind on
// error.
func (s *Source) Materialize(ctx context.Context, sha string) (string, error) {
	return s.materialize(ctx, sha, readFiles{}, false)
}

// materialize is Materialize, also refusing the files of rf that are over
// their limits (see checkLimits). A partial release starts empty: its
// paths are added as the compose loader asks for them (see AddPaths).
func (s *Source) materialize(ctx context.Context, sha string, rf readFiles, partial bool) (string, error) {
	if len(sha) != 40 || !hexOnly.MatchString(sha) {
		return "", fmt.Errorf("materialize: %q is not a full 40-hex commit SHA", sha)
	}
	sha = strings.ToLower(sha)
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()

	if err := s.removeStaging(ctx); err != nil {
		return "", err
	}
	final := filepath.Join(s.releasesDir, sha)
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		m, err := s.checkRelease(ctx, sha, final)
		if err != nil {
			return "", err
		}
		if err := checkLimits(m.Entries, rf); err != nil {
			return "", fmt.Errorf("materialize %s: %w", sha, err)
		}
		// Touch it so that Prune counts it as recently used.
		now := time.Now()
		if err := os.Chtimes(final, now, now); err != nil {
			return "", fmt.Errorf("materialize %s: touch existing release: %w", sha, err)
		}
		return final, nil
	}

	var entries []treeEntry
	if !partial {
		if entries, err = s.flattenTree(ctx, sha); err != nil {
			return "", fmt.Errorf("materialize %s: %w", sha, err)
		}
	} else if !s.hasCommit(plumbing.NewHash(sha)) {
		return "", fmt.Errorf("materialize %s: commit is not in the cache (resolve it first)", sha)
	}
	m := manifestFrom(sha, entries)
	m.Partial = partial
	if err := checkLimits(m.Entries, rf); err != nil {
		return "", fmt.Errorf("materialize %s: %w", sha, err)
	}
	staging, err := os.MkdirTemp(s.releasesDir, stagingPrefix+sha+"-")
	if err != nil {
		return "", noSpace(fmt.Errorf("materialize %s: create staging dir: %w", sha, err), s.opts.StateDir)
	}
	done := false
	defer func() {
		if !done {
			_ = RemoveReadOnlyTree(staging)
		}
	}()
	if err := s.writeTree(ctx, staging, entries); err != nil {
		// The deferred removal takes the half-written tree away, and
		// with it the space it took.
		return "", noSpace(fmt.Errorf("materialize %s: %w", sha, err), s.opts.StateDir)
	}
	// Before the rename: a release in place always has its manifest (the
	// files keep their stat across the rename of their parent).
	if err := s.writeManifest(m, staging); err != nil {
		return "", err
	}
	if err := os.Rename(staging, final); err != nil {
		if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
			// Another writer got there first; releases are immutable, so
			// theirs is as good as ours.
			return final, nil
		}
		_ = os.Remove(s.manifestPath(sha))
		return "", fmt.Errorf("materialize %s: move staging dir into place: %w", sha, err)
	}
	done = true
	if err := syncDir(s.releasesDir); err != nil {
		return "", fmt.Errorf("materialize %s: %w", sha, err)
	}
	s.logFor(ctx).Debug().Str("release", sha).Str("dir", final).Int("entries", len(entries)).Msg("materialized release")
	return final, nil
}

// flattenTree lists every entry of the commit's tree, parents before
// children, refusing what cannot be written safely.
func (s *Source) flattenTree(ctx context.Context, sha string) ([]treeEntry, error) {
	tree, err := s.commitTree(sha)
	if err != nil {
		return nil, err
	}
	if err := s.ensureTreeBlobs(ctx, tree); err != nil {
		return nil, err
	}
	var out []treeEntry
	var walk func(t *object.Tree, dir string) error
	walk = func(t *object.Tree, dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, e := range t.Entries {
			if len(out) >= MaxReleaseEntries {
				// Refused before a larger tree is listed in memory.
				return &LimitError{What: "release tree", Size: int64(len(out) + 1), Limit: MaxReleaseEntries, Unit: "entries"}
			}
			p := path.Join(dir, e.Name)
			if !safeName(e.Name) {
				return &TreeError{Path: p, Msg: fmt.Sprintf("tree path %q has an unsafe component; refusing to write it", p)}
			}
			switch e.Mode {
			case filemode.Dir:
				sub, err := s.repo.TreeObject(e.Hash)
				if err != nil {
					return fmt.Errorf("read tree %s: %w", p, err)
				}
				out = append(out, treeEntry{path: p, mode: e.Mode, hash: e.Hash})
				if err := walk(sub, p); err != nil {
					return err
				}
			case filemode.Regular, filemode.Deprecated, filemode.Executable:
				out = append(out, treeEntry{path: p, mode: e.Mode, hash: e.Hash})
			case filemode.Symlink:
				if err := s.ensureBlobs(ctx, []plumbing.Hash{e.Hash}); err != nil {
					return fmt.Errorf("read symlink %s: %w", p, err)
				}
				blob, err := s.repo.BlobObject(e.Hash)
				if err != nil {
					return fmt.Errorf("read symlink %s: %w", p, err)
				}
				target, err := readAllBlob(blob)
				if err != nil {
					return fmt.Errorf("read symlink %s: %w", p, err)
				}
				out = append(out, treeEntry{path: p, mode: e.Mode, hash: e.Hash, target: target})
			case filemode.Submodule:
				return &TreeError{Path: p, Msg: fmt.Sprintf("%s is a git submodule; submodules are not supported, vendor the files into the repository instead", p)}
			default:
				return &TreeError{Path: p, Msg: fmt.Sprintf("%s has unsupported git file mode %s", p, e.Mode)}
			}
		}
		return nil
	}
	if err := walk(tree, ""); err != nil {
		return nil, err
	}
	if err := checkSymlinks(out); err != nil {
		return nil, err
	}
	return out, s.fileSizes(ctx, out)
}

// fileSizes fills in the sizes of the regular files of entries, fetching
// their blobs first where the cache lacks them (a partial clone).
func (s *Source) fileSizes(ctx context.Context, entries []treeEntry) error {
	var hashes []plumbing.Hash
	for _, e := range entries {
		if e.mode != filemode.Dir && e.mode != filemode.Symlink {
			hashes = append(hashes, e.hash)
		}
	}
	if err := s.ensureBlobs(ctx, hashes); err != nil {
		return err
	}
	for i := range entries {
		e := &entries[i]
		if e.mode == filemode.Dir || e.mode == filemode.Symlink {
			continue
		}
		size, err := s.blobSize(e.hash)
		if err != nil {
			return fmt.Errorf("read %s: %w", e.path, err)
		}
		e.size = size
	}
	return nil
}

// commitTree is the root tree of commit sha, from the cache.
func (s *Source) commitTree(sha string) (*object.Tree, error) {
	commit, err := s.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("commit is not in the cache (resolve it first): %w", err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree: %w", err)
	}
	return tree, nil
}

// blobSize is a blob's size from its object header, without inflating
// its content where the storage allows.
func (s *Source) blobSize(h plumbing.Hash) (int64, error) {
	if sz, ok := s.repo.Storer.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		return sz.EncodedObjectSize(h)
	}
	b, err := s.repo.BlobObject(h)
	if err != nil {
		return 0, err
	}
	return b.Size, nil
}

// safeName reports whether one tree entry name can be a path component.
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func readAllBlob(b *object.Blob) (string, error) {
	r, err := b.Reader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	const maxTarget = 4096 // PATH_MAX on Linux
	data, err := io.ReadAll(io.LimitReader(r, maxTarget+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxTarget {
		return "", fmt.Errorf("target is longer than %d bytes", maxTarget)
	}
	return string(data), nil
}

// checkSymlinks refuses symlinks that are absolute or that, resolved the way
// the kernel would inside the release (following other symlinks of the
// tree), leave it. A lexical check of each link alone is not enough: with
// a -> "." a link "a/../.." climbs out although it reads as staying in.
func checkSymlinks(entries []treeEntry) error {
	byPath := make(map[string]treeEntry, len(entries))
	for _, e := range entries {
		byPath[e.path] = e
	}
	for _, e := range entries {
		if e.mode != filemode.Symlink {
			continue
		}
		if e.target == "" || strings.HasPrefix(e.target, "/") || strings.Contains(e.target, "\x00") {
			return &TreeError{Path: e.path, Msg: fmt.Sprintf("symlink %s -> %q is absolute or empty; only relative links inside the repository are allowed", e.path, e.target)}
		}
		if err := resolveInside(byPath, e.path); err != nil {
			return &TreeError{Path: e.path, Msg: fmt.Sprintf("symlink %s -> %q %v; only links inside the repository are allowed", e.path, e.target, err)}
		}
	}
	return nil
}

// resolveInside follows the symlink at link within the tree and fails if
// any step climbs above the root. Components that do not exist in the tree
// are taken lexically, which can only refuse more, never less: the kernel
// would fail on them rather than go anywhere.
func resolveInside(byPath map[string]treeEntry, link string) error {
	stack := strings.Split(path.Dir(link), "/")
	if path.Dir(link) == "." {
		stack = nil
	}
	todo := strings.Split(byPath[link].target, "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return errors.New("points outside the release")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		e, ok := byPath[strings.Join(stack, "/")]
		if !ok || e.mode != filemode.Symlink {
			continue
		}
		if hops++; hops > 40 {
			return errors.New("is part of a symlink loop")
		}
		if strings.HasPrefix(e.target, "/") {
			return fmt.Errorf("goes through absolute symlink %s", e.path)
		}
		stack = stack[:len(stack)-1]
		todo = append(strings.Split(e.target, "/"), todo...)
	}
	return nil
}

// writeTree writes entries under root, syncs them, then makes everything
// read-only, children before parents.
func (s *Source) writeTree(ctx context.Context, root string, entries []treeEntry) error {
	dd := s.newDeduper(s.logFor(ctx))
	defer dd.finish()
	return s.writeTreeWith(ctx, root, entries, dd)
}

// writeTreeWith is writeTree placing files through dd.
func (s *Source) writeTreeWith(ctx context.Context, root string, entries []treeEntry, dd *deduper) error {
	var dirs []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		full := filepath.Join(root, filepath.FromSlash(e.path))
		switch e.mode {
		case filemode.Dir:
			if err := os.Mkdir(full, 0o700); err != nil {
				return fmt.Errorf("create dir %s: %w", e.path, err)
			}
			dirs = append(dirs, full)
		case filemode.Symlink:
			if err := os.Symlink(e.target, full); err != nil {
				return fmt.Errorf("create symlink %s: %w", e.path, err)
			}
		default:
			mode := os.FileMode(0o444)
			if e.mode == filemode.Executable {
				mode = 0o555
			}
			if err := dd.place(full, e, mode); err != nil {
				return err
			}
		}
	}
	// Deepest first, so a dir is still writable while its children are
	// finished, and each dir is synced after its entries.
	slices.Reverse(dirs)
	for _, d := range append(dirs, root) {
		if err := os.Chmod(d, 0o555); err != nil {
			return fmt.Errorf("make %s read-only: %w", d, err)
		}
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Source) writeBlob(full string, e treeEntry, mode os.FileMode) (err error) {
	blob, err := s.repo.BlobObject(e.hash)
	if err != nil {
		return fmt.Errorf("read %s: %w", e.path, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return fmt.Errorf("read %s: %w", e.path, err)
	}
	defer r.Close()
	// O_EXCL: never write through something already there (a symlink).
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", e.path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write %s: %w", e.path, cerr)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", e.path, err)
	}
	// Explicit chmod: the process umask must not decide whether a
	// container user can read its config.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", e.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", e.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// removeStaging removes staging dirs left by a crash. Callers hold the
// lock, so no live writer owns them.
func (s *Source) removeStaging(ctx context.Context) error {
	entries, err := os.ReadDir(s.releasesDir)
	if err != nil {
		return fmt.Errorf("list releases: %w", err)
	}
	manifests, err := os.ReadDir(s.manifestsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list release manifests: %w", err)
	}
	for _, e := range manifests {
		if strings.HasPrefix(e.Name(), stagingPrefix) {
			if err := os.Remove(filepath.Join(s.manifestsDir, e.Name())); err != nil {
				return fmt.Errorf("remove leftover manifest: %w", err)
			}
		}
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), stagingPrefix) {
			continue
		}
		p := filepath.Join(s.releasesDir, e.Name())
		if err := RemoveReadOnlyTree(p); err != nil {
			return fmt.Errorf("remove leftover staging dir: %w", err)
		}
		s.logFor(ctx).Info().Str("dir", p).Msg("removed leftover staging dir of an interrupted materialize")
	}
	return nil
}

// RemoveReadOnlyTree restores write permission on every directory under
// root (files need none to be unlinked) and removes it. Release directories
// are read-only, so anything holding them (a state dir, the demo's temp
// dir) is removed with this, not os.RemoveAll.
func RemoveReadOnlyTree(root string) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(root)
}

// Prune removes release dirs that are not in keep (absolute paths, as
// Materialize returned them), except the retain most recently used (by
// mtime) of those. A dir in keep is never removed; Prune only considers
// entries named like a release (40 hex digits).
func (s *Source) Prune(keep map[string]bool, retain int) error {
	unlock, err := s.lock(context.Background())
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := os.ReadDir(s.releasesDir)
	if err != nil {
		return fmt.Errorf("prune releases: %w", err)
	}
	kept := make(map[string]bool, len(keep))
	for p, k := range keep {
		if k {
			kept[filepath.Clean(p)] = true
		}
	}
	type release struct {
		path  string
		mtime time.Time
	}
	var candidates []release
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != 40 || !hexOnly.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(s.releasesDir, e.Name())
		if kept[p] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("prune releases: %w", err)
		}
		candidates = append(candidates, release{path: p, mtime: info.ModTime()})
	}
	slices.SortFunc(candidates, func(a, b release) int { return b.mtime.Compare(a.mtime) })
	var errs []error
	for i, r := range candidates {
		if i < retain {
			continue
		}
		shared := s.beforeRemove(filepath.Base(r.path))
		err := RemoveReadOnlyTree(r.path)
		shared.afterRemove()
		if err != nil {
			errs = append(errs, fmt.Errorf("prune release %s: %w", r.path, err))
			continue
		}
		if err := os.Remove(s.manifestPath(filepath.Base(r.path))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("prune manifest of release %s: %w", r.path, err))
		}
		s.log.Debug().Str("dir", r.path).Msg("pruned release")
	}
	return errors.Join(append(errs, s.pruneManifests())...)
}

// pruneManifests removes the manifests of releases no longer on disk (a
// release dir removed by hand). Callers hold the lock.
func (s *Source) pruneManifests() error {
	entries, err := os.ReadDir(s.manifestsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prune release manifests: %w", err)
	}
	for _, e := range entries {
		sha, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || len(sha) != 40 || !hexOnly.MatchString(sha) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.releasesDir, sha)); errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(filepath.Join(s.manifestsDir, e.Name())); err != nil {
				return fmt.Errorf("prune manifest of release %s: %w", sha, err)
			}
		}
	}
	return nil
}
