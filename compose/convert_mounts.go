package compose

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// volumes converts service volumes the way compose does: plain binds and
// plain named volumes use HostConfig.Binds (which, unlike the Mounts API,
// creates a missing host directory when create_host_path allows it);
// anonymous volumes, tmpfs and mounts with options only the Mounts API
// expresses use HostConfig.Mounts. The adapter fills the Source of an
// anonymous volume mount to carry it over on recreate.
func (c *converter) volumes(s types.ServiceConfig, host *container.HostConfig) ([]File, error) {
	var files []File
	for _, v := range s.Volumes {
		fail := func(msg string) error { return located(c.src, s.Name, "volumes", fmt.Sprintf("%s: %s", v.Target, msg)) }
		switch v.Type {
		case types.VolumeTypeBind:
			f, err := c.bindSource(s.Name, "volumes", v.Source)
			if err != nil {
				return nil, err
			}
			files = append(files, f...)
			if v.Bind == nil || (bool(v.Bind.CreateHostPath) && v.Bind.Propagation == "" && v.Bind.Recursive == "") {
				host.Binds = append(host.Binds, bindString(v.Source, v))
				continue
			}
			m := mount.Mount{Type: mount.TypeBind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly,
				BindOptions: &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}}
			if msg := setRecursive(m.BindOptions, v.Bind.Recursive); msg != "" {
				return nil, fail(msg)
			}
			if v.Bind.SELinux != "" {
				return nil, fail("bind.selinux cannot be combined with create_host_path: false, propagation or recursive; drop one of them")
			}
			host.Mounts = append(host.Mounts, m)
		case types.VolumeTypeVolume:
			if v.Source == "" {
				m := mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly}
				if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "" || len(v.Volume.Labels) > 0) {
					m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath, Labels: cloneMap(v.Volume.Labels)}
				}
				host.Mounts = append(host.Mounts, m)
				continue
			}
			vol, ok := c.cp.Volumes[v.Source]
			if !ok {
				return nil, fail(fmt.Sprintf("volume %q is not declared under the top-level volumes:; declare it", v.Source))
			}
			if v.Volume == nil || (!v.Volume.NoCopy && v.Volume.Subpath == "" && len(v.Volume.Labels) == 0) {
				host.Binds = append(host.Binds, bindString(vol.Name, v))
				continue
			}
			host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: vol.Name, Target: v.Target, ReadOnly: v.ReadOnly,
				VolumeOptions: &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath, Labels: cloneMap(v.Volume.Labels)}})
		case types.VolumeTypeTmpfs:
			m := mount.Mount{Type: mount.TypeTmpfs, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Tmpfs != nil && (v.Tmpfs.Size != 0 || v.Tmpfs.Mode != 0) {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
			host.Mounts = append(host.Mounts, m)
		default:
			return nil, fail(fmt.Sprintf("volume type %q is not supported by lockstep; use bind, volume or tmpfs", v.Type))
		}
	}
	return files, nil
}

// bindString renders a Binds entry as compose does: source:target:mode.
func bindString(source string, v types.ServiceVolumeConfig) string {
	opts := []string{"rw"}
	if v.ReadOnly {
		opts[0] = "ro"
	}
	if v.Bind != nil && v.Bind.SELinux != "" {
		opts = append(opts, v.Bind.SELinux)
	}
	if v.Bind != nil && v.Bind.Propagation != "" {
		opts = append(opts, v.Bind.Propagation)
	}
	if v.Volume != nil && v.Volume.NoCopy {
		opts = append(opts, "nocopy")
	}
	return source + ":" + v.Target + ":" + strings.Join(opts, ",")
}

// bindSource checks a host path the service mounts or reads. Inside the
// release it must exist (compose would create an empty directory, which
// in an immutable release is never what the operator meant) and must not
// resolve through a symlink to somewhere outside; its content becomes part
// of the service's hash. Outside the release it is a host path, left to
// policy.
func (c *converter) bindSource(service, key, source string) ([]File, error) {
	if !within(c.opts.ReleaseDir, source) {
		return nil, nil
	}
	rel, real, err := c.releaseFile(service, key, source)
	if err != nil {
		return nil, err
	}
	digest, err := c.digest(real)
	if err != nil {
		return nil, fmt.Errorf("load: service %q: digest %s: %w", service, rel, err)
	}
	return []File{{Path: rel, Digest: digest}}, nil
}

// releaseFile checks that source, a path inside the release, exists and
// does not resolve through a symlink to outside it, and returns its
// release-relative slash path and its resolved path.
func (c *converter) releaseFile(service, key, source string) (rel, real string, err error) {
	r, _ := filepath.Rel(c.opts.ReleaseDir, source)
	rel = filepath.ToSlash(r)
	if err := c.opts.needs.need(source); err != nil {
		return "", "", forService(err, service, key)
	}
	if _, err := os.Lstat(source); err != nil {
		return "", "", located(c.src, service, key, fmt.Sprintf("%s does not exist in the release at this commit; add it to the repository, or use an absolute host path", rel))
	}
	real, err = filepath.EvalSymlinks(source)
	if err != nil || !within(c.realRoot, real) {
		return "", "", located(c.src, service, key, fmt.Sprintf("%s resolves through a symlink to outside the release; only repository content can be mounted by relative path", rel))
	}
	return rel, real, nil
}

// repoFile records a file the service reads at load time (env_file,
// label_file): its content is already folded into the config; the digest
// makes "file X changed" explainable. An encrypted env file's digest is
// keyed (see keyring.secretDigest), never a hash of the ciphertext, which
// changes on every re-encryption.
func (c *converter) repoFile(service, key, p string, optional bool) ([]File, error) {
	if optional {
		if err := c.opts.needs.need(p); err != nil {
			return nil, forService(err, service, key)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, nil
		}
	}
	if key == "env_file" && isEncrypted(p) && within(c.opts.ReleaseDir, p) {
		f, _, err := c.encryptedFile(service, key, p)
		if err != nil {
			return nil, err
		}
		return []File{f}, nil
	}
	return c.bindSource(service, key, p)
}

// encryptedFile checks an encrypted repository file like bindSource and
// returns it with its keyed digest, and its plaintext.
func (c *converter) encryptedFile(service, key, p string) (File, []byte, error) {
	rel, real, err := c.releaseFile(service, key, p)
	if err != nil {
		return File{}, nil, err
	}
	plain, err := c.secrets.decrypt(real, rel)
	if err != nil {
		return File{}, nil, forService(err, service, key)
	}
	return File{Path: rel, Digest: c.secrets.secretDigest(plain)}, plain, nil
}

// fileObjects mounts configs and secrets with a file: source read-only, as
// compose does for a non-Swarm deployment: configs at /<name> (or target),
// secrets at /run/secrets/<name> (or target, relative ones under
// /run/secrets). An encrypted source of the release (*.age) is decrypted
// and its plaintext bound from the runtime dir's tmpfs instead, where
// WriteSecrets puts it (see keyring.secretPath); a host path is bound as
// it is.
func (c *converter) fileObjects(s types.ServiceConfig, host *container.HostConfig) ([]File, error) {
	type ref struct {
		kind, source, target, uid, gid string
		mode                           *types.FileMode
	}
	var refs []ref
	for _, r := range s.Configs {
		refs = append(refs, ref{"configs", r.Source, r.Target, r.UID, r.GID, r.Mode})
	}
	for _, r := range s.Secrets {
		refs = append(refs, ref{"secrets", r.Source, r.Target, r.UID, r.GID, r.Mode})
	}
	var files []File
	for _, r := range refs {
		fail := func(msg string) error { return located(c.src, s.Name, r.kind, fmt.Sprintf("%s: %s", r.source, msg)) }
		var obj types.FileObjectConfig
		if r.kind == "configs" {
			o, ok := c.cp.Configs[r.source]
			if !ok {
				return nil, fail("not declared under the top-level configs:; declare it")
			}
			obj = types.FileObjectConfig(o)
		} else {
			o, ok := c.cp.Secrets[r.source]
			if !ok {
				return nil, fail("not declared under the top-level secrets:; declare it")
			}
			obj = types.FileObjectConfig(o)
		}
		switch {
		case bool(obj.External):
			return nil, fail("external " + r.kind + " live in Swarm, which lockstep does not use; use a file: source")
		case obj.File == "":
			return nil, fail("only file: sources are supported by lockstep; put the content in a file of the repository (or an absolute host path) and use file:")
		case r.uid != "" || r.gid != "" || r.mode != nil:
			return nil, fail("uid, gid and mode cannot be honoured for a bind-mounted file: source; remove them and set the file's mode in the repository")
		}
		target := fileObjectTarget(r.kind, r.source, r.target)
		if !within(c.opts.ReleaseDir, obj.File) {
			// A host file (a secret kept out of git): the Mounts API would
			// fail at create time, after the old container is gone.
			if _, err := os.Stat(obj.File); err != nil {
				return nil, fail(fmt.Sprintf("host file %s does not exist; create it on the host or fix file:", obj.File))
			}
		}
		source := obj.File
		if isEncrypted(obj.File) && within(c.opts.ReleaseDir, obj.File) {
			f, plain, err := c.encryptedFile(s.Name, r.kind, obj.File)
			if err != nil {
				return nil, err
			}
			kind := strings.TrimSuffix(r.kind, "s")
			if source, err = c.secrets.secretPath(c.opts.Project, kind, r.source, f.Digest); err != nil {
				return nil, fail(err.Error())
			}
			c.secretFiles[source] = secretWrite{kind: kind, name: r.source, digest: f.Digest, target: source, plain: plain}
			files = append(files, f)
		} else {
			f, err := c.bindSource(s.Name, r.kind, obj.File)
			if err != nil {
				return nil, err
			}
			files = append(files, f...)
		}
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: source, Target: target, ReadOnly: true})
	}
	return files, nil
}

// fileObjectTarget is where a config or secret is mounted in the
// container, as compose mounts them outside Swarm: configs at /<name>
// unless target is set, secrets under /run/secrets unless target is
// absolute.
func fileObjectTarget(kind, source, target string) string {
	if kind == "configs" && target == "" {
		return "/" + source
	}
	if kind == "secrets" {
		if target == "" {
			target = source
		}
		if !path.IsAbs(target) {
			return "/run/secrets/" + target
		}
	}
	return target
}

// setRecursive sets a bind mount's recursive options from compose's
// bind.recursive; it returns what is wrong with a value it does not know.
func setRecursive(o *mount.BindOptions, recursive string) string {
	switch recursive {
	case "", "enabled":
	case "disabled":
		o.NonRecursive = true
	case "writable":
		o.ReadOnlyNonRecursive = true
	case "readonly":
		o.ReadOnlyForceRecursive = true
	default:
		return fmt.Sprintf("unknown bind.recursive %q; use enabled, disabled, writable or readonly", recursive)
	}
	return ""
}
