package gitsource

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// Sharing unchanged files. Two releases of a monorepo differ in a few
// files; writing each release whole costs the full tree in time and disk
// on every deploy. A file whose git blob id and kind (file or exec) equal
// those of a file already in a release, or written earlier into the same
// release, is therefore hard-linked to it instead of written again.
//
// That keeps every promise a written copy made: a release is still
// immutable (its files are read-only, and all links of an inode want the
// same blob content and mode, so a repair that rewrites one in place
// restores them all), pruning is still by reference (the file system
// counts the links; removing a release frees only the inodes no other
// release holds), and a kill -9 still leaves either the old or the new
// release (links are made in the staging dir like written files).
//
// A link source is trusted only when it is provably git's content: a
// regular file with the mode its kind wants whose stat (inode, mtime,
// ctime) is the one its release's manifest recorded, or, when the stat
// differs, whose content hashes to the blob id. A file changed by hand is
// never linked from; it is written.
//
// link(2) moves the shared inode's ctime, which would make the manifests
// of every release holding it stale (the next check hashes the file and
// writes the manifest again). The deduper therefore records the new stat
// of each inode it linked in the manifests that hold it, in the same
// locked operation, so that the next check stays cheap. It only does so
// when nothing but the ctime moved (same inode and mtime). unlink(2) moves
// it too: Prune does the same for the releases that share files with the
// one it removes (see unshare).

// blobKey is what makes two files interchangeable: the same content and
// the same kind (the mode is per inode, so an exec is never linked to a
// file with the same content).
type blobKey struct {
	blob string
	kind string
}

// linkSource is one file that a new one may be linked to.
type linkSource struct {
	key  blobKey
	path string    // absolute
	size int64     // from the manifest (or the tree entry)
	want *fileStat // the stat recorded for it; zero: unknown, hash it
	rel  *loadedManifest
}

// loadedManifest is the manifest of an existing release, kept in memory
// while the deduper may record new stats in it.
type loadedManifest struct {
	m     *manifest
	dirty bool
}

// statRef is one recorded stat of an inode: in a release's manifest, or
// of a file written earlier into the release being made (rel nil).
type statRef struct {
	path string
	stat *fileStat
	key  blobKey
	rel  *loadedManifest
}

// deduper places the files of one writeTree: linked where it can, written
// where it cannot. Callers hold the lock for its whole life.
type deduper struct {
	s      *Source
	log    *zerolog.Logger
	loaded bool
	off    bool // the file system refuses hard links: write everything
	byBlob map[blobKey][]*linkSource
	byIno  map[uint64][]statRef
	rels   []*loadedManifest
	skip   string // a release not to index: the one being removed
	// Linked and Written count what was placed, for the log.
	Linked, Written int
}

func (s *Source) newDeduper(log *zerolog.Logger) *deduper {
	return &deduper{s: s, log: log, byBlob: map[blobKey][]*linkSource{}, byIno: map[uint64][]statRef{}}
}

// link is os.Link unless a test injected a failing one.
func (s *Source) link(oldname, newname string) error {
	if s.linkFile != nil {
		return s.linkFile(oldname, newname)
	}
	return os.Link(oldname, newname)
}

// load indexes the files of every release on disk that has a valid
// manifest. A release without one (an older lockstep wrote it) or with a
// damaged one offers nothing to link to.
func (d *deduper) load() {
	d.loaded = true
	entries, err := os.ReadDir(d.s.releasesDir)
	if err != nil {
		d.log.Warn().Err(err).Msg("list releases to share unchanged files with: writing every file")
		d.off = true
		return
	}
	for _, de := range entries {
		sha := de.Name()
		if !de.IsDir() || len(sha) != 40 || !hexOnly.MatchString(sha) || sha == d.skip {
			continue // staging dirs and strays
		}
		m, err := d.s.readManifest(sha)
		if err != nil {
			continue
		}
		lm := &loadedManifest{m: m}
		d.rels = append(d.rels, lm)
		root := filepath.Join(d.s.releasesDir, sha)
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Kind != kindFile && e.Kind != kindExec {
				continue
			}
			key := blobKey{blob: e.Blob, kind: e.Kind}
			full := filepath.Join(root, filepath.FromSlash(e.Path))
			d.byBlob[key] = append(d.byBlob[key], &linkSource{key: key, path: full, size: e.Size, want: &e.fileStat, rel: lm})
			if e.Ino != 0 {
				d.byIno[e.Ino] = append(d.byIno[e.Ino], statRef{path: full, stat: &e.fileStat, key: key, rel: lm})
			}
		}
	}
}

// place puts the file of e at full with mode: a hard link to an equal
// file when one can be trusted, else a written copy (writeBlob).
func (d *deduper) place(full string, e treeEntry, mode os.FileMode) error {
	key := blobKey{blob: e.hash.String(), kind: kindOf(e.mode)}
	if !d.off {
		if !d.loaded {
			d.load()
		}
		if d.tryLink(full, key, e.size, mode) {
			d.Linked++
			return nil
		}
	}
	if err := d.s.writeBlob(full, e, mode); err != nil {
		return err
	}
	d.Written++
	d.offer(full, key, e.size)
	return nil
}

// offer makes a file just written into the new release a link source for
// the files after it.
func (d *deduper) offer(full string, key blobKey, size int64) {
	fi, err := os.Lstat(full)
	if err != nil {
		return
	}
	st := statOf(fi)
	if st == (fileStat{}) {
		return // no stat on this platform: hashing every source costs what writing does
	}
	src := &linkSource{key: key, path: full, size: size, want: &st}
	d.byBlob[key] = append(d.byBlob[key], src)
	d.byIno[st.Ino] = append(d.byIno[st.Ino], statRef{path: full, stat: src.want, key: key})
}

// tryLink links full to a trusted source of key, cheapest check first:
// sources whose stat is as recorded, then sources whose content is
// hashed. It reports whether full was made.
func (d *deduper) tryLink(full string, key blobKey, size int64, mode os.FileMode) bool {
	srcs := d.byBlob[key]
	for _, hashing := range []bool{false, true} {
		for i := 0; i < len(srcs); i++ {
			src := srcs[i]
			before, ok := d.trusted(src, size, mode, hashing)
			if !ok {
				if hashing {
					// Not git's content, or not checkable: never again
					// in this release.
					srcs = append(srcs[:i:i], srcs[i+1:]...)
					d.byBlob[key] = srcs
					i--
				}
				continue
			}
			err := d.s.link(src.path, full)
			if err == nil {
				d.refresh(src.path, before, key)
				return true
			}
			d.log.Debug().Err(err).Str("source", src.path).Msg("hard link refused: writing the file")
			if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) {
				d.off = true // the file system, not this source: stop trying
				return false
			}
			// EMLINK (too many links) or anything else: not this source.
			srcs = append(srcs[:i:i], srcs[i+1:]...)
			d.byBlob[key] = srcs
			i--
		}
	}
	return false
}

// trusted reports whether src holds git's content for a file of size and
// mode, and returns its stat. With hashing false only the recorded stat
// is checked; with hashing true only sources whose stat differs are
// checked, by hashing them, and only when their path goes through no
// symlink (a directory replaced by a link to elsewhere must not make
// lockstep link to a file outside its releases).
func (d *deduper) trusted(src *linkSource, size int64, mode os.FileMode, hashing bool) (fileStat, bool) {
	fi, err := os.Lstat(src.path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size || fi.Mode().Perm() != mode {
		return fileStat{}, false
	}
	st := statOf(fi)
	matches := st != (fileStat{}) && st == *src.want
	if !hashing {
		return st, matches
	}
	if matches {
		return fileStat{}, false // tried already, and refused
	}
	if !d.noSymlinks(src.path) {
		return fileStat{}, false
	}
	blob, err := blobID(src.path, size)
	if err != nil || blob != src.key.blob {
		return fileStat{}, false
	}
	return st, true
}

// noSymlinks reports whether p, a path under the releases dir, reaches
// its file through no symlink below the releases dir (the releases dir
// itself may be reached through one, e.g. /var/lib -> /data).
func (d *deduper) noSymlinks(p string) bool {
	rel, err := filepath.Rel(d.s.releasesDir, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return false
	}
	root, err := filepath.EvalSymlinks(d.s.releasesDir)
	if err != nil {
		return false
	}
	real, err := filepath.EvalSymlinks(p)
	return err == nil && real == filepath.Join(root, rel)
}

// refresh records the stat of the source at path after a link moved its
// ctime, in every record of its inode with the same blob (in memory; see
// finish). It only does so when the inode number, size and mtime are as
// verified before the link: anything else may be a write by hand, left
// for the next check to hash. Every record with that blob is right again,
// as the inode was just verified to hold it; a record of another file
// that merely had this inode number once only ever fails its next stat
// check, which hashes (stale, never wrong).
func (d *deduper) refresh(path string, before fileStat, key blobKey) {
	fi, err := os.Lstat(path)
	if err != nil {
		return
	}
	now := statOf(fi)
	if now.Ino != before.Ino || now.Mtime != before.Mtime {
		return
	}
	for _, r := range d.byIno[now.Ino] {
		if r.key != key || *r.stat == now {
			continue
		}
		*r.stat = now
		if r.rel != nil {
			r.rel.dirty = true
		}
	}
}

// finish writes the manifests whose stats refresh changed, so that the
// next check of those releases stays cheap. A manifest not written is
// stale, not wrong: its release is hashed and the manifest written again
// at its next check.
func (d *deduper) finish() {
	if d.Linked > 0 {
		d.log.Debug().Int("linked", d.Linked).Int("written", d.Written).Msg("shared unchanged files with existing releases")
	}
	for _, rel := range d.rels {
		if !rel.dirty {
			continue
		}
		if err := d.s.saveManifest(rel.m); err != nil {
			d.log.Warn().Err(err).Str("release", rel.m.Commit).
				Msg("record the new stat of files shared with other releases: the next check of this one hashes them")
		}
	}
}

// unshare keeps the releases that share files with one being removed
// cheap to check: unlink(2) moves the ctime of an inode that keeps other
// links, as link(2) does. Before the removal it verifies, by their
// recorded stat, the files of the other releases that hold an inode of
// the removed one; after it, it records their new stat (see refresh).
type unshare struct {
	d    *deduper
	todo []verifiedFile
}

type verifiedFile struct {
	path   string
	before fileStat
	key    blobKey
}

// beforeRemove prepares the removal of release sha. Callers hold the lock
// until afterRemove.
func (s *Source) beforeRemove(sha string) *unshare {
	d := s.newDeduper(&s.log)
	d.skip = sha
	d.load()
	u := &unshare{d: d}
	m, err := s.readManifest(sha)
	if err != nil {
		return u
	}
	for _, e := range m.Entries {
		if e.Ino == 0 {
			continue
		}
		for _, r := range d.byIno[e.Ino] {
			fi, err := os.Lstat(r.path)
			if err != nil {
				continue
			}
			if st := statOf(fi); st == *r.stat {
				u.todo = append(u.todo, verifiedFile{path: r.path, before: st, key: r.key})
			}
		}
	}
	return u
}

// afterRemove records the new stats and writes the manifests that changed.
func (u *unshare) afterRemove() {
	for _, f := range u.todo {
		u.d.refresh(f.path, f.before, f.key)
	}
	u.d.finish()
}
