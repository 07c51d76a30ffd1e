package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// A mount whose target is nested inside a bind mount from the release
// (./src:/srv/src plus an anonymous volume at /srv/src/node_modules) needs
// its mount point inside the release directory: the engine (runc) creates
// a missing one there, on the host, when the container starts. That would
// change an immutable release under a running container (and a later
// verification would take the directory away again, detaching the mount
// inside the container), or fail outright on a read-only bind.
//
// So Load works out the mount points each release needs from the same
// service volumes, tmpfs, configs and secrets it converts into mounts, and
// the pass has gitsource create the missing ones as empty, read-only
// directories of the release before any container uses it (see
// gitsource.Releases.AddMountPoints): the engine then finds them and
// creates nothing. Git cannot hold an empty directory, so they never
// collide with repository content, and directory digests leave empty
// directories out (see digestPath): a service's hash is the same whether
// they exist yet or not.

// mountRef is one mount of a service, as far as nesting is concerned.
type mountRef struct {
	key    string // compose key, for messages: volumes, tmpfs, configs, secrets
	target string // cleaned absolute container path
	source string // host path of a bind, "" for volumes and tmpfs
	file   bool   // the mount is a file (a bind of a file, a config, a secret)
}

// mountRefs lists s's mounts: its volumes (binds, volumes, tmpfs), its
// tmpfs key and its configs and secrets, which are file binds.
func (c *converter) mountRefs(s types.ServiceConfig) []mountRef {
	var refs []mountRef
	add := func(r mountRef) {
		if !path.IsAbs(r.target) {
			return // refused or resolved elsewhere; nothing nests in it
		}
		r.target = path.Clean(r.target)
		refs = append(refs, r)
	}
	for _, v := range s.Volumes {
		r := mountRef{key: "volumes", target: v.Target}
		if v.Type == types.VolumeTypeBind {
			r.source = v.Source
			// Already asked for (LoadOptions.Need) by c.service, which
			// converts the service before its mount points are listed.
			if fi, err := os.Stat(v.Source); err == nil && !fi.IsDir() {
				r.file = true
			}
		}
		add(r)
	}
	for _, t := range s.Tmpfs {
		target, _, _ := strings.Cut(t, ":")
		add(mountRef{key: "tmpfs", target: target})
	}
	for _, r := range s.Configs {
		add(mountRef{key: "configs", target: fileObjectTarget("configs", r.Source, r.Target), file: true})
	}
	for _, r := range s.Secrets {
		add(mountRef{key: "secrets", target: fileObjectTarget("secrets", r.Source, r.Target), file: true})
	}
	return refs
}

// nesting pairs a mount with the mount it is nested in.
type nesting struct {
	inner, outer mountRef
	sub          string // inner's target relative to outer's, slash-separated
}

// nestedMounts pairs every mount of refs with the mount its target lies
// in: the one whose target is the longest strict prefix of it, which the
// engine mounts first (it mounts by target depth). Mounts nested in none
// are left out.
func nestedMounts(refs []mountRef) []nesting {
	var out []nesting
	for _, in := range refs {
		best := -1
		for j, o := range refs {
			if o.target == in.target || !under(o.target, in.target) {
				continue
			}
			if best < 0 || len(o.target) > len(refs[best].target) {
				best = j
			}
		}
		if best >= 0 {
			o := refs[best]
			sub := strings.TrimPrefix(strings.TrimPrefix(in.target, o.target), "/")
			out = append(out, nesting{inner: in, outer: o, sub: sub})
		}
	}
	return out
}

// under reports whether container path p lies strictly below dir.
func under(dir, p string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// mountPoints returns the release-relative paths of the directories s's
// mounts need inside the release (existing or not), or a load error when
// the release cannot hold one: nested in a file, or a path in the release
// that is a symlink, a file where a directory is needed, or missing where
// a file is needed (the engine would create an empty file there).
func (c *converter) mountPoints(s types.ServiceConfig) ([]string, error) {
	var out []string
	for _, n := range nestedMounts(c.mountRefs(s)) {
		if n.outer.source == "" || !within(c.opts.ReleaseDir, n.outer.source) {
			continue // inside a volume, a tmpfs or a host path: not the release's
		}
		fail := func(msg string) error {
			return located(c.src, s.Name, n.inner.key, fmt.Sprintf("%s: %s", n.inner.target, msg))
		}
		outerRel, _ := filepath.Rel(c.opts.ReleaseDir, n.outer.source)
		outerRel = filepath.ToSlash(outerRel)
		if n.outer.file {
			return nil, fail(fmt.Sprintf("is nested inside %s, the bind of the file %s from the release; a file cannot hold a mount point, mount it elsewhere", n.outer.target, outerRel))
		}
		real, err := filepath.EvalSymlinks(n.outer.source)
		if err != nil || !within(c.realRoot, real) {
			return nil, fail(fmt.Sprintf("is nested inside the bind of %s, which does not resolve inside the release", outerRel))
		}
		base, _ := filepath.Rel(c.realRoot, real)
		p := path.Join(filepath.ToSlash(base), n.sub)
		if err := c.checkMountPoint(p, n.inner.file); err != nil {
			return nil, fail(fmt.Sprintf("is nested inside the bind %s:%s from the release, so the engine needs %s in the release as its mount point, but %v", outerRel, n.outer.target, p, err))
		}
		if !n.inner.file {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkMountPoint checks that release path p (slash-separated, relative
// to the resolved release root) can be the mount point of a file or a
// directory: every component below the root is a directory or missing,
// none is a symlink (the engine would follow it inside the container), and
// a file mount point exists already (lockstep creates directories only).
func (c *converter) checkMountPoint(p string, file bool) error {
	parts := strings.Split(p, "/")
	cur := c.realRoot
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		rel := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			if file {
				return fmt.Errorf("%s does not exist and the engine would create an empty file inside the immutable release; add %s (it may be empty) to the repository", rel, p)
			}
			return nil // created, with the rest of the path, before it is used
		}
		if err != nil {
			return err
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink; a mount point must not go through one (the engine would follow it inside the container)", rel)
		case last && file && fi.IsDir():
			return fmt.Errorf("%s is a directory, and a file is mounted there", rel)
		case last && file:
			return nil
		case !fi.IsDir():
			return fmt.Errorf("%s is a file, not a directory", rel)
		}
	}
	return nil
}

// contentDirs returns the directories under root (root included, by their
// walk paths) that hold a file, symlink or other non-directory somewhere
// below them. The others hold only directories: git cannot hold such a
// tree, so in a release they are mount points (lockstep's, or the
// engine's in a release an older lockstep wrote), and the digest of a
// directory leaves them out. That keeps it the digest of the repository
// content, the same before and after a mount point is made.
func contentDirs(root string) (map[string]bool, error) {
	full := map[string]bool{root: true}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for dir := filepath.Dir(p); !full[dir]; dir = filepath.Dir(dir) {
			full[dir] = true
		}
		return nil
	})
	return full, err
}
