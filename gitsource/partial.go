package gitsource

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Partial releases. A monorepo's tree is mostly code the images were built
// from; a host needs only what compose reads or mounts. So a release
// starts empty (Releases.Materialize) and the compose loader asks for
// each path of it before reading or referencing it (Releases.AddPaths):
// a file, a directory with all it holds, or a symlink with what it points
// to. What the loader never asked for never reaches the disk, and what it
// asks for is there before it looks, because the asking is done by the
// code that loads, not guessed beforehand.
//
// The manifest records how far a release goes: Partial on the release
// and on every directory that holds only some of what git has in it, and
// Absent for the paths asked for that git does not have (the default
// compose file names, an optional env_file), so that a later load of the
// same release is answered from the manifest without git. A directory
// without Partial holds everything git has under it, which is also what
// a manifest written before partial releases says of every directory.

// maxLinkHops bounds the symlinks followed for one path, as the kernel's
// ELOOP does.
const maxLinkHops = 40

// covers reports whether the release m describes holds p (a clean,
// release-relative slash path; "." is the whole release) as git has it,
// or records that git has nothing there.
func (m *manifest) covers(p string, byPath map[string]*manifestEntry, absent map[string]bool) bool {
	return m.coversHops(p, byPath, absent, 0)
}

func (m *manifest) coversHops(p string, byPath map[string]*manifestEntry, absent map[string]bool, hops int) bool {
	if !m.Partial {
		return true
	}
	if p == "." || hops > maxLinkHops {
		return false
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		if absent[q] {
			return true
		}
		e, ok := byPath[q]
		if !ok {
			return false
		}
		switch e.Kind {
		case kindDir:
			if !e.Partial {
				return true
			}
		case kindSymlink:
			// Added with what it points to: follow it in the manifest.
			t, ok := linkTarget(q, e.Target)
			if !ok {
				return false
			}
			return m.coversHops(path.Join(append([]string{t}, parts[i+1:]...)...), byPath, absent, hops+1)
		default:
			return true // a file: nothing can be below it, in git either
		}
	}
	return false // p is a directory the release holds only part of
}

// linkTarget resolves the target of the symlink at link lexically from
// the link's directory, which is a real directory of the tree (paths are
// resolved component by component, symlinks restarting from the root).
// ok is false when it climbs above the release root or is absolute.
func linkTarget(link, target string) (string, bool) {
	if target == "" || strings.HasPrefix(target, "/") {
		return "", false
	}
	depth := strings.Count(path.Dir(link), "/") + 1
	if path.Dir(link) == "." {
		depth = 0
	}
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return "", false
			}
		default:
			depth++
		}
	}
	return path.Join(path.Dir(link), target), true
}

// selection is what one AddPaths adds to a release: the entries of the
// commit's tree the asked paths need that the release lacks, parents
// before children.
type selection struct {
	s    *Source
	ctx  context.Context
	root *object.Tree

	have   map[string]*manifestEntry // the release's manifest
	absent map[string]bool           // recorded as not in git

	add       []treeEntry     // new entries, parents first
	added     map[string]bool // paths in add
	whole     map[string]bool // directories (new or existing) to be recorded whole
	newAbsent []string
	wholeRoot bool
}

func (s *Source) newSelection(ctx context.Context, sha string, have map[string]*manifestEntry, absent map[string]bool) (*selection, error) {
	root, err := s.commitTree(sha)
	if err != nil {
		return nil, err
	}
	return &selection{s: s, ctx: ctx, root: root, have: have, absent: absent,
		added: map[string]bool{}, whole: map[string]bool{}}, nil
}

// want selects what path p needs: the directories on the way to it, and
// p itself whole; through a symlink, the link and, from the root again,
// what it points to.
func (sel *selection) want(p string, hops int) error {
	if err := sel.ctx.Err(); err != nil {
		return err
	}
	if hops > maxLinkHops {
		return &TreeError{Path: p, Msg: fmt.Sprintf("%s goes through more than %d symlinks (a symlink loop?)", p, maxLinkHops)}
	}
	if p == "." || p == "" {
		sel.wholeRoot = true
		return sel.addWhole("", sel.root)
	}
	parts := strings.Split(p, "/")
	t := sel.root
	for i, name := range parts {
		q := strings.Join(parts[:i+1], "/")
		if !safeName(name) {
			return &TreeError{Path: q, Msg: fmt.Sprintf("tree path %q has an unsafe component; refusing to write it", q)}
		}
		e := treeChild(t, name)
		if e == nil {
			sel.noteAbsent(q)
			return nil
		}
		last := i == len(parts)-1
		switch e.Mode {
		case filemode.Dir:
			sub, err := sel.s.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("read tree %s: %w", q, err)
			}
			if last {
				sel.addEntry(treeEntry{path: q, mode: e.Mode, hash: e.Hash})
				return sel.addWhole(q, sub)
			}
			sel.addEntry(treeEntry{path: q, mode: e.Mode, hash: e.Hash})
			t = sub
		case filemode.Symlink:
			te, err := sel.symlink(q, e.Hash)
			if err != nil {
				return err
			}
			target, _ := linkTarget(q, te.target)
			return sel.want(path.Join(append([]string{target}, parts[i+1:]...)...), hops+1)
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			sel.addEntry(treeEntry{path: q, mode: e.Mode, hash: e.Hash})
			return nil // below a file there is nothing, in git or on disk
		default:
			return unsupportedEntry(q, e.Mode)
		}
	}
	return nil
}

// addWhole selects everything git has under the directory at p (tree t),
// and what its symlinks point to.
func (sel *selection) addWhole(p string, t *object.Tree) error {
	if p != "" {
		if e := sel.have[p]; e == nil || e.Partial {
			sel.whole[p] = true
		} else {
			return nil // already whole in the release
		}
	}
	for _, e := range t.Entries {
		if err := sel.ctx.Err(); err != nil {
			return err
		}
		q := path.Join(p, e.Name)
		if !safeName(e.Name) {
			return &TreeError{Path: q, Msg: fmt.Sprintf("tree path %q has an unsafe component; refusing to write it", q)}
		}
		if len(sel.add)+len(sel.have) >= MaxReleaseEntries {
			return &LimitError{What: "release tree", Size: int64(len(sel.add) + len(sel.have) + 1), Limit: MaxReleaseEntries, Unit: "entries"}
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := sel.s.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("read tree %s: %w", q, err)
			}
			sel.addEntry(treeEntry{path: q, mode: e.Mode, hash: e.Hash})
			if err := sel.addWhole(q, sub); err != nil {
				return err
			}
		case filemode.Symlink:
			te, err := sel.symlink(q, e.Hash)
			if err != nil {
				return err
			}
			target, _ := linkTarget(q, te.target)
			if err := sel.want(target, 1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			sel.addEntry(treeEntry{path: q, mode: e.Mode, hash: e.Hash})
		default:
			return unsupportedEntry(q, e.Mode)
		}
	}
	return nil
}

// symlink selects the symlink at p, refusing one that is absolute or
// points outside the release.
func (sel *selection) symlink(p string, h plumbing.Hash) (treeEntry, error) {
	if e := sel.have[p]; e != nil && e.Kind == kindSymlink {
		return treeEntry{path: p, mode: filemode.Symlink, hash: h, target: e.Target}, nil
	}
	if err := sel.s.ensureBlobs(sel.ctx, []plumbing.Hash{h}); err != nil {
		return treeEntry{}, fmt.Errorf("read symlink %s: %w", p, err)
	}
	blob, err := sel.s.repo.BlobObject(h)
	if err != nil {
		return treeEntry{}, fmt.Errorf("read symlink %s: %w", p, err)
	}
	target, err := readAllBlob(blob)
	if err != nil {
		return treeEntry{}, fmt.Errorf("read symlink %s: %w", p, err)
	}
	if target == "" || strings.HasPrefix(target, "/") || strings.Contains(target, "\x00") {
		return treeEntry{}, &TreeError{Path: p, Msg: fmt.Sprintf("symlink %s -> %q is absolute or empty; only relative links inside the repository are allowed", p, target)}
	}
	if _, ok := linkTarget(p, target); !ok {
		return treeEntry{}, &TreeError{Path: p, Msg: fmt.Sprintf("symlink %s -> %q points outside the release; only links inside the repository are allowed", p, target)}
	}
	te := treeEntry{path: p, mode: filemode.Symlink, hash: h, target: target}
	sel.addEntry(te)
	return te, nil
}

func (sel *selection) addEntry(te treeEntry) {
	if sel.have[te.path] != nil || sel.added[te.path] {
		return
	}
	sel.added[te.path] = true
	sel.add = append(sel.add, te)
}

func (sel *selection) noteAbsent(p string) {
	if !sel.absent[p] && !sel.added["absent:"+p] {
		sel.added["absent:"+p] = true
		sel.newAbsent = append(sel.newAbsent, p)
	}
}

func treeChild(t *object.Tree, name string) *object.TreeEntry {
	for i := range t.Entries {
		if t.Entries[i].Name == name {
			return &t.Entries[i]
		}
	}
	return nil
}

func unsupportedEntry(p string, mode filemode.FileMode) error {
	if mode == filemode.Submodule {
		return &TreeError{Path: p, Msg: fmt.Sprintf("%s is a git submodule; submodules are not supported, vendor the files into the repository instead", p)}
	}
	return &TreeError{Path: p, Msg: fmt.Sprintf("%s has unsupported git file mode %s", p, mode)}
}
