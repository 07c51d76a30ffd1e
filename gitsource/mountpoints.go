package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"
)

// Mount points. A volume, tmpfs or bind nested inside a bind mount from
// the release (./src:/srv/src plus /srv/src/node_modules) is mounted on a
// directory of the release. When it is missing, the engine creates it on
// the host as the container starts: the release would change under a
// running container, and the next verification would remove the
// directory as "added by hand", which detaches the mount inside the
// container. compose.Load lists the directories a release needs
// (Project.MountPoints); AddMountPoints creates the missing ones, empty
// and read-only like the rest of the release, and records them in its
// manifest, before any container uses the release. The engine then finds
// them and creates nothing.
//
// Git cannot hold an empty directory, so a mount point never collides
// with the content of the commit, and a directory that holds only
// directories is never repository content. verifyTree therefore keeps
// such directories where it finds them instead of restoring "git's"
// tree: that is how a release written by an older lockstep, where the
// engine made the mount points under running containers, converges
// without a directory being pulled from under a mount (they are recorded
// once, see acceptHollow). Directory digests (compose) leave them out, so
// a service's hash is the same with or without them.
//
// Mount points come from the model, and the model also depends on the
// pin (its vars and compose_files), which is not part of the release: a
// pin change can ask a release already in use for a new mount point. It
// is added then too, rather than materializing a second copy of the same
// commit: an empty directory appears where a container binding its parent
// may see it, which changes no file, no digest and nothing git says.

// AddMountPoints creates the directories paths (slash-separated, relative
// to rel.Dir; see compose.Project.MountPoints) that rel's release lacks,
// with their missing parents, empty and mode 0555, and records them in
// its manifest. A path that goes through a symlink, a file or anything
// else than a directory, or that is not a clean relative path, is refused
// with nothing changed. Paths already there are left as they are.
func (r *Releases) AddMountPoints(ctx context.Context, rel Release, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if rel.Dir == "" {
		return errors.New("add mount points: the release is not materialized")
	}
	return r.src.addMountPoints(ctx, rel.Commit, rel.Dir, paths)
}

func (s *Source) addMountPoints(ctx context.Context, sha, dir string, paths []string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.readManifest(sha)
	if err != nil {
		return fmt.Errorf("add mount points to release %s: %w", sha, err)
	}
	byPath := make(map[string]*manifestEntry, len(m.Entries))
	for i := range m.Entries {
		byPath[m.Entries[i].Path] = &m.Entries[i]
	}
	// Every path is checked before the first directory is made.
	var todo []string
	for _, p := range paths {
		missing, err := mountPointTodo(dir, p, byPath)
		if err != nil {
			return &TreeError{Path: p, Msg: fmt.Sprintf("mount point %s in release %s: %v; nothing was changed", p, sha, err)}
		}
		for _, q := range missing {
			if !slices.Contains(todo, q) {
				todo = append(todo, q)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	slices.Sort(todo) // parents first
	opened := map[string]bool{}
	var mkErr error
	for _, q := range todo {
		full := filepath.Join(dir, filepath.FromSlash(q))
		parent := filepath.Dir(full)
		if !opened[parent] {
			if mkErr = os.Chmod(parent, 0o755); mkErr != nil {
				break
			}
			opened[parent] = true
		}
		if mkErr = os.Mkdir(full, 0o755); mkErr != nil && !errors.Is(mkErr, fs.ErrExist) {
			break
		}
		mkErr = nil
		opened[full] = true
		m.Entries = append(m.Entries, manifestEntry{Path: q, Kind: kindDir, MountPoint: true})
	}
	if err := errors.Join(mkErr, closeDirs(opened)); err != nil {
		// Directories made so far hold nothing: the next verification
		// keeps them (see verifyTree), and the next pass makes the rest.
		return fmt.Errorf("add mount points to release %s: %w", sha, err)
	}
	if err := s.writeManifest(m, dir); err != nil {
		return err
	}
	s.logFor(ctx).Info().Str("release", sha).Strs("mount_points", todo).
		Msg("created the mount points of nested volumes in the release, before any container uses it")
	return nil
}

// mountPointTodo checks the components of mount point p under dir and
// returns those that are neither in the manifest nor on disk yet, parents
// first. A component in the manifest must be a directory there; one that
// is on disk but not in the manifest cannot be (verification accepted or
// restored everything before), except a directory made by an interrupted
// AddMountPoints, which verifyTree keeps: it is recorded again.
func mountPointTodo(dir, p string, byPath map[string]*manifestEntry) ([]string, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." || p == "." {
		return nil, errors.New("is not a clean path inside the release")
	}
	var out []string
	parts := strings.Split(p, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		if e, ok := byPath[q]; ok {
			if e.Kind != kindDir {
				return nil, fmt.Errorf("%s is a %s in the release, not a directory", q, kindWord(e.Kind))
			}
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(q)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		case !fi.IsDir():
			return nil, fmt.Errorf("%s is a %s not in git, not a directory", q, kindWord(kindOnDisk(fi)))
		}
		out = append(out, q)
	}
	return out, nil
}

// onlyDirs reports whether the directory at p (release path rel) holds
// nothing but directories, and lists them (rel first).
func onlyDirs(p, rel string) (dirs []string, only bool, err error) {
	only = true
	err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			only = false
			return filepath.SkipAll
		}
		r, _ := filepath.Rel(p, q)
		dirs = append(dirs, path.Join(rel, filepath.ToSlash(r)))
		return nil
	})
	if err != nil || !only {
		return nil, false, err
	}
	return dirs, true, nil
}

// acceptHollow records in m the directories verifyTree found that are not
// in git and hold only directories: mount points, made by the engine in a
// release an older lockstep wrote (or by an interrupted AddMountPoints).
// Removing one would detach the volume mounted on it in a running
// container, and it holds nothing that git could restore or a container
// could read, so it is kept once and for all: made read-only like the
// rest (a mode does not change what is mounted on it) and listed in the
// manifest, which checkRelease writes again.
func acceptHollow(log *zerolog.Logger, sha, dir string, m *manifest, hollow []string) error {
	for _, h := range hollow {
		full := filepath.Join(dir, filepath.FromSlash(h))
		if err := os.Chmod(full, 0o555); err != nil {
			return fmt.Errorf("release %s: mount point %s: %w", sha, h, err)
		}
		m.Entries = append(m.Entries, manifestEntry{Path: h, Kind: kindDir, MountPoint: true})
	}
	log.Info().Str("release", sha).Strs("mount_points", hollow).
		Msg("release directory has empty directories that are not in git: mount points of nested volumes, kept and recorded")
	return nil
}
