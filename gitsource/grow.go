package gitsource

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// AddPaths makes paths (clean, slash-separated and relative to the
// release root, as the compose loader asks for them; "." is the whole
// tree) present in rel's release as git has them at rel.Commit: a file, a
// directory with everything under it, a symlink with what it points to,
// and the directories on the way. A path git does not have is recorded as
// absent, so that the loader finds it missing as it would in the whole
// tree. Paths the release already holds cost one read of its manifest: no
// lock, no git (a rollback to a release on disk works while git is
// unreachable). See partial.go.
//
// Each new path is written beside its final place and renamed into it,
// and the manifest is written last: a kill -9 leaves every path either
// absent or complete, and what the manifest does not list is removed by
// the next verification (checkRelease). A running container never sees a
// path appear inside what it mounts: what it mounts from the release is
// a file, or a directory that the release holds whole.
func (r *Releases) AddPaths(ctx context.Context, rel Release, paths []string) error {
	if rel.Dir == "" {
		return errors.New("add paths: the release is not materialized")
	}
	for _, p := range paths {
		if p != "." && (p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../")) {
			return fmt.Errorf("add %q to release %s: not a clean path inside the release", p, rel.Commit)
		}
	}
	// Every pass after the first of a release: answered from the manifest.
	if r.held.covers(r.src, rel.Commit, paths) {
		return nil
	}
	return r.src.addPaths(ctx, rel.Commit, rel.Dir, readFiles{compose: rel.ComposeFiles, env: rel.EnvFiles}, paths)
}

// heldPaths remembers, per release, the manifest last read with the stat
// of its file. The loader asks for each path of a release on every pass,
// one at a time, and a release that mounts a big directory has a big
// manifest: parsing it once per path would be most of a no-op pass. A
// manifest is only ever replaced by a rename, so a file with the same
// identity, size and mtime holds the same manifest.
type heldPaths struct {
	mu    sync.Mutex
	bySHA map[string]heldManifest
}

type heldManifest struct {
	fi     os.FileInfo
	m      *manifest
	byPath map[string]*manifestEntry
	absent map[string]bool
}

// covers reports whether the release of sha holds every one of paths, as
// its manifest on disk says. Any doubt (no manifest, a read error) is a
// no: addPaths then decides under the lock.
func (h *heldPaths) covers(s *Source, sha string, paths []string) bool {
	fi, err := os.Stat(s.manifestPath(sha))
	if err != nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.bySHA[sha]
	if !ok || !os.SameFile(e.fi, fi) || !e.fi.ModTime().Equal(fi.ModTime()) || e.fi.Size() != fi.Size() {
		m, err := s.readManifest(sha)
		if err != nil {
			return false
		}
		byPath, absent := m.index()
		e = heldManifest{fi: fi, m: m, byPath: byPath, absent: absent}
		if h.bySHA == nil || len(h.bySHA) >= 16 {
			h.bySHA = map[string]heldManifest{} // the releases of a few environments
		}
		h.bySHA[sha] = e
	}
	for _, p := range paths {
		if !e.m.covers(p, e.byPath, e.absent) {
			return false
		}
	}
	return true
}

// addPaths is AddPaths once the fast answer was no. Callers checked paths.
func (s *Source) addPaths(ctx context.Context, sha, dir string, rf readFiles, paths []string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.readManifest(sha)
	if err != nil {
		return fmt.Errorf("add paths to release %s: %w (materialize it first)", sha, err)
	}
	todo := m.uncovered(paths)
	if len(todo) == 0 {
		return nil // added by another process meanwhile
	}
	byPath, absent := m.index()
	sel, err := s.newSelection(ctx, sha, byPath, absent)
	if err != nil {
		return fmt.Errorf("materialize %s: %w", sha, err)
	}
	for _, p := range todo {
		if err := sel.want(p, 0); err != nil {
			return fmt.Errorf("materialize %s of %s: %w", p, sha, err)
		}
	}
	if err := s.fileSizes(ctx, sel.add); err != nil {
		return fmt.Errorf("materialize %s: %w", sha, err)
	}
	grown := m.grownBy(sel)
	if err := checkLimits(grown.Entries, rf); err != nil {
		return fmt.Errorf("materialize %s: %w", sha, err)
	}
	if err := s.writeAdditions(ctx, sha, dir, sel.add); err != nil {
		return noSpace(fmt.Errorf("materialize %s: %w", sha, err), s.opts.StateDir)
	}
	if err := s.writeManifest(grown, dir); err != nil {
		return err
	}
	s.logFor(ctx).Debug().Str("release", sha).Strs("paths", todo).Int("entries", len(sel.add)).
		Msg("added the paths compose uses to the release")
	return nil
}

// index maps m's entries by path, and its absent paths.
func (m *manifest) index() (map[string]*manifestEntry, map[string]bool) {
	byPath := make(map[string]*manifestEntry, len(m.Entries))
	for i := range m.Entries {
		byPath[m.Entries[i].Path] = &m.Entries[i]
	}
	absent := make(map[string]bool, len(m.Absent))
	for _, a := range m.Absent {
		absent[a] = true
	}
	return byPath, absent
}

// uncovered returns the paths the release m describes does not hold yet.
func (m *manifest) uncovered(paths []string) []string {
	if !m.Partial {
		return nil
	}
	byPath, absent := m.index()
	var out []string
	for _, p := range paths {
		if !m.covers(p, byPath, absent) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// grownBy is m with sel added (sizes known, stats filled in by
// writeManifest).
func (m *manifest) grownBy(sel *selection) *manifest {
	g := &manifest{Version: m.Version, Commit: m.Commit, Partial: m.Partial,
		Entries: slices.Clone(m.Entries), Absent: slices.Clone(m.Absent)}
	for i := range g.Entries {
		if sel.whole[g.Entries[i].Path] {
			g.Entries[i].Partial = false
		}
	}
	for _, e := range sel.add {
		me := manifestEntry{Path: e.path, Kind: kindOf(e.mode), Size: e.size, Target: e.target}
		if e.mode == filemode.Dir {
			me.Partial = !sel.whole[e.path]
		} else {
			me.Blob = e.hash.String()
		}
		g.Entries = append(g.Entries, me)
	}
	g.Absent = append(g.Absent, sel.newAbsent...)
	slices.Sort(g.Absent)
	if sel.wholeRoot {
		g.Partial, g.Absent = false, nil
	}
	return g
}

// writeAdditions writes the new entries into the release dir: each one
// whose parent is already there (a top) is built under a temporary name
// in that parent, with everything new below it, and renamed into place.
func (s *Source) writeAdditions(ctx context.Context, sha, dir string, add []treeEntry) error {
	// Unchanged files are linked from other releases (see dedupe.go); the
	// release being grown is not indexed: its manifest is written after.
	dd := s.newDeduper(s.logFor(ctx))
	dd.skip = sha
	defer dd.finish()
	isNew := make(map[string]bool, len(add))
	for _, e := range add {
		isNew[e.path] = true
	}
	opened := map[string]bool{}
	var err error
	for _, top := range add {
		if isNew[path.Dir(top.path)] {
			continue
		}
		parent := filepath.Join(dir, filepath.FromSlash(path.Dir(top.path)))
		if !opened[parent] {
			if err = os.Chmod(parent, 0o755); err != nil {
				break
			}
			opened[parent] = true
		}
		var below []treeEntry
		for _, e := range add {
			if rest, ok := strings.CutPrefix(e.path, top.path+"/"); ok {
				e.path = rest
				below = append(below, e)
			}
		}
		if err = s.writeTop(ctx, parent, filepath.Join(dir, filepath.FromSlash(top.path)), top, below, dd); err != nil {
			break
		}
	}
	return errors.Join(err, closeDirs(opened))
}

// writeTop writes one new entry (and, for a directory, below: what is new
// under it, relative to it) at dest, through a temporary name in parent.
func (s *Source) writeTop(ctx context.Context, parent, dest string, top treeEntry, below []treeEntry, dd *deduper) error {
	if _, err := os.Lstat(dest); err == nil {
		// Left by an interrupted AddPaths: not in the manifest, so no
		// load has seen it and no container uses it.
		if err := RemoveReadOnlyTree(dest); err != nil {
			return fmt.Errorf("remove leftover %s: %w", top.path, err)
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(parent, stagingPrefix+filepath.Base(dest)+"-"+hex.EncodeToString(suffix[:]))
	var err error
	switch top.mode {
	case filemode.Dir:
		if err = os.Mkdir(tmp, 0o700); err == nil {
			err = s.writeTreeWith(ctx, tmp, below, dd)
		}
	case filemode.Symlink:
		err = os.Symlink(top.target, tmp)
	default:
		mode := os.FileMode(0o444)
		if top.mode == filemode.Executable {
			mode = 0o555
		}
		err = dd.place(tmp, top, mode)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		_ = RemoveReadOnlyTree(tmp)
		return fmt.Errorf("write %s: %w", top.path, err)
	}
	return nil
}
