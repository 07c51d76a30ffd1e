package gitsource

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// A release's manifest says what git put in it: every entry with its kind,
// size, git blob id and, for files, the stat lockstep saw right after
// writing it. It lives outside the release (StateDir/release-manifests),
// where no container and no compose file can see it, is written
// atomically and carries a digest of itself, so that a damaged manifest is
// told from a modified release.
//
// Checking a release against it is cheap: a file whose inode, size, mtime
// and ctime are all as recorded has not been written since (ctime cannot
// be set back by hand); only a file whose stat differs is hashed and
// compared with its blob id.
type manifest struct {
	Version int             `json:"version"`
	Commit  string          `json:"commit"`
	Entries []manifestEntry `json:"entries"`
	// Partial says the release holds only the paths the compose loader
	// asked for (see partial.go); Absent lists those git does not have.
	// Both are omitted for a release of the whole tree, whose manifest
	// reads as before partial releases.
	Partial bool     `json:"partial,omitempty"`
	Absent  []string `json:"absent,omitempty"`
	Digest  string   `json:"digest"` // sha256 of the manifest with Digest empty
}

const manifestVersion = 1

// The kinds of manifest entries, after git's file modes.
const (
	kindDir     = "dir"
	kindFile    = "file"
	kindExec    = "exec"
	kindSymlink = "symlink"
)

type manifestEntry struct {
	Path   string `json:"path"` // slash-separated, relative to the release root
	Kind   string `json:"kind"`
	Size   int64  `json:"size,omitempty"`
	Blob   string `json:"blob,omitempty"` // git blob id of files and symlinks
	Target string `json:"target,omitempty"`
	// MountPoint marks an empty directory that is not in git: the mount
	// point of a volume nested in a bind from the release (see
	// AddMountPoints). omitempty keeps the manifests of releases without
	// one byte for byte as before.
	MountPoint bool `json:"mount_point,omitempty"`
	// Partial marks a directory of a partial release that holds only some
	// of what git has in it.
	Partial bool `json:"partial,omitempty"`
	fileStat
}

// fileStat is what a write leaves behind on a file: unchanged, the file was
// not written since. Zero (a manifest built from git, not from disk) means
// unknown: the content is hashed.
type fileStat struct {
	Ino   uint64 `json:"ino,omitempty"`
	Mtime int64  `json:"mtime_ns,omitempty"`
	Ctime int64  `json:"ctime_ns,omitempty"`
}

func kindOf(m filemode.FileMode) string {
	switch m {
	case filemode.Dir:
		return kindDir
	case filemode.Executable:
		return kindExec
	case filemode.Symlink:
		return kindSymlink
	}
	return kindFile
}

// manifestFrom is the manifest of a tree as git has it, without stats.
func manifestFrom(sha string, entries []treeEntry) *manifest {
	m := &manifest{Version: manifestVersion, Commit: sha, Entries: make([]manifestEntry, 0, len(entries))}
	for _, e := range entries {
		me := manifestEntry{Path: e.path, Kind: kindOf(e.mode), Size: e.size, Target: e.target}
		if e.mode != filemode.Dir {
			me.Blob = e.hash.String()
		}
		m.Entries = append(m.Entries, me)
	}
	return m
}

func (s *Source) manifestPath(sha string) string {
	return filepath.Join(s.manifestsDir, sha+".json")
}

func (m *manifest) digest() string {
	c := *m
	c.Digest = ""
	b, _ := json.Marshal(&c)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// errNoManifest is readManifest's answer for a release written by a
// lockstep that kept none, or whose manifest is damaged.
var errNoManifest = errors.New("no manifest")

func (s *Source) readManifest(sha string) (*manifest, error) {
	b, err := os.ReadFile(s.manifestPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoManifest
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest of release %s: %w", sha, err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Version != manifestVersion || m.Commit != sha || m.Digest != m.digest() {
		return nil, fmt.Errorf("%w: manifest %s is damaged", errNoManifest, s.manifestPath(sha))
	}
	return &m, nil
}

// writeManifest records m with the stats of the files under dir as they
// are now, atomically (temp file, fsync, rename).
func (s *Source) writeManifest(m *manifest, dir string) error {
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Kind != kindFile && e.Kind != kindExec {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return fmt.Errorf("write manifest of release %s: %w", m.Commit, err)
		}
		e.fileStat = statOf(fi)
	}
	return s.saveManifest(m)
}

// saveManifest writes m as it is, atomically (temp file, fsync, rename).
func (s *Source) saveManifest(m *manifest) error {
	m.Digest = m.digest()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.manifestsDir, 0o700); err != nil {
		return fmt.Errorf("write manifest of release %s: %w", m.Commit, err)
	}
	f, err := os.CreateTemp(s.manifestsDir, stagingPrefix+m.Commit+"-")
	if err != nil {
		return fmt.Errorf("write manifest of release %s: %w", m.Commit, err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.manifestPath(m.Commit))
	}
	if err == nil {
		err = syncDir(s.manifestsDir)
	}
	if err != nil {
		return fmt.Errorf("write manifest of release %s: %w", m.Commit, err)
	}
	return nil
}

// mismatch is one way a release dir differs from what git says.
type mismatch struct {
	Path     string // slash-separated, relative to the release root
	Problem  string // what differs, for the log and errors
	modeOnly bool   // content as git has it; only the permissions differ
}

func (m mismatch) String() string { return m.Path + ": " + m.Problem }

// verifyTree compares the release dir with m: every entry of m present
// with its kind, permissions and content, and nothing else. stale is true
// when everything matched but some file's stat differs from the one
// recorded (the manifest should be written again to keep the next check
// cheap). Directories not in m that hold only directories are not
// mismatches but mount points, returned in hollow (see acceptHollow).
func verifyTree(dir string, m *manifest) (bad []mismatch, hollow []string, stale bool, err error) {
	byPath := make(map[string]*manifestEntry, len(m.Entries))
	for i := range m.Entries {
		byPath[m.Entries[i].Path] = &m.Entries[i]
	}
	seen := make(map[string]bool, len(m.Entries))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			if fi, err := d.Info(); err == nil && fi.Mode().Perm() != 0o555 {
				bad = append(bad, mismatch{Path: ".", Problem: fmt.Sprintf("mode %04o, want 0555", fi.Mode().Perm()), modeOnly: true})
			}
			return nil
		}
		rel = filepath.ToSlash(rel)
		e, ok := byPath[rel]
		// A staging name is what an interrupted AddPaths left: never a
		// mount point, whatever it holds.
		if !ok && d.IsDir() && !strings.HasPrefix(d.Name(), stagingPrefix) {
			dirs, only, err := onlyDirs(p, rel)
			if err != nil {
				return err
			}
			if only {
				hollow = append(hollow, dirs...)
				return filepath.SkipDir
			}
		}
		if !ok {
			problem := "not in git (added by hand)"
			if strings.HasPrefix(d.Name(), stagingPrefix) {
				problem = "left by an interrupted write of the release (a crash), not in its manifest"
			}
			bad = append(bad, mismatch{Path: rel, Problem: problem})
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[rel] = true
		fi, err := d.Info()
		if err != nil {
			return err
		}
		problem, modeOnly, restat, err := checkEntry(p, fi, e)
		if err != nil {
			return err
		}
		if problem != "" {
			bad = append(bad, mismatch{Path: rel, Problem: problem, modeOnly: modeOnly})
			if d.IsDir() && e.Kind != kindDir {
				return filepath.SkipDir // replaced whole by the repair
			}
		}
		stale = stale || restat
		return nil
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("verify release %s: %w", dir, err)
	}
	for _, e := range m.Entries {
		if !seen[e.Path] {
			bad = append(bad, mismatch{Path: e.Path, Problem: "missing (git has a " + kindWord(e.Kind) + ")"})
		}
	}
	slices.SortFunc(bad, func(a, b mismatch) int { return strings.Compare(a.Path, b.Path) })
	return bad, hollow, stale, nil
}

func kindWord(kind string) string {
	switch kind {
	case kindDir:
		return "directory"
	case kindSymlink:
		return "symlink"
	}
	return "file"
}

func kindOnDisk(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return kindDir
	case fi.Mode()&fs.ModeSymlink != 0:
		return kindSymlink
	case fi.Mode().IsRegular():
		return kindFile
	}
	return "special file"
}

// checkEntry compares one entry on disk with the manifest's. restat says
// the content matched by hash although the stat differed.
func checkEntry(p string, fi fs.FileInfo, e *manifestEntry) (problem string, modeOnly, restat bool, err error) {
	want := e.Kind
	if want == kindExec {
		want = kindFile
	}
	if got := kindOnDisk(fi); got != want {
		return fmt.Sprintf("is a %s, git has a %s", kindWord(got), kindWord(e.Kind)), false, false, nil
	}
	switch e.Kind {
	case kindSymlink:
		target, err := os.Readlink(p)
		if err != nil {
			return "", false, false, err
		}
		if target != e.Target {
			return fmt.Sprintf("symlink points to %q, git has %q", target, e.Target), false, false, nil
		}
		return "", false, false, nil
	case kindDir:
		if fi.Mode().Perm() != 0o555 {
			return fmt.Sprintf("mode %04o, want 0555", fi.Mode().Perm()), true, false, nil
		}
		return "", false, false, nil
	}
	if fi.Size() != e.Size {
		return fmt.Sprintf("content differs from git: %d bytes, git has %d", fi.Size(), e.Size), false, false, nil
	}
	if e.fileStat == (fileStat{}) || statOf(fi) != e.fileStat {
		blob, err := blobID(p, fi.Size())
		if err != nil {
			return "", false, false, err
		}
		if blob != e.Blob {
			return fmt.Sprintf("content differs from git: blob %s, git has %s", blob[:12], e.Blob[:12]), false, false, nil
		}
		restat = true
	}
	perm := os.FileMode(0o444)
	if e.Kind == kindExec {
		perm = 0o555
	}
	if fi.Mode().Perm() != perm {
		return fmt.Sprintf("mode %04o, want %04o", fi.Mode().Perm(), perm), true, restat, nil
	}
	return "", false, restat, nil
}

// blobID is the git blob id of the file at p, as git hashes it.
func blobID(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, size)
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("%s changed while being read", p)
	}
	return h.Sum().String(), nil
}

// describe lists mismatches for a message: the first few, then a count.
func describe(bad []mismatch) string {
	const shown = 5
	var b bytes.Buffer
	for i, m := range bad {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(bad)-shown)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(m.String())
	}
	return b.String()
}
