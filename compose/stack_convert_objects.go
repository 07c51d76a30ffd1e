package compose

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/swarm"
)

// The largest config and secret a swarm takes (swarmkit's limits).
const (
	maxSwarmConfig = 1000 * 1024
	maxSwarmSecret = 500 * 1024
)

// stackObject converts a top-level config or secret into a swarm object:
// its content read now (decrypted in memory for an *.age file of the
// release), named and labelled by its content hash. kind is "configs" or
// "secrets".
func (c *converter) stackObject(kind, key string, o types.FileObjectConfig) (StackObject, error) {
	fail := func(k, msg string) error {
		path := []string{kind, key}
		if k != "" {
			path = append(path, k)
		}
		file, line := c.src.find(path...)
		if line == 0 {
			file, line = c.src.find(kind, key)
		}
		return &LoadError{File: file, Line: line, Key: strings.Join(path, "."), Msg: msg}
	}
	out := StackObject{Key: key, Name: o.Name, External: bool(o.External)}
	if out.External {
		if out.Name == "" {
			out.Name = key
		}
		return out, nil
	}
	switch {
	case o.Name != "" && o.Name != c.opts.Project+"_"+key:
		return StackObject{}, fail("name", "lockstep names a stack's "+kind+" by their content (<stack>_<key>_<hash>), so that a changed one is a new object; remove name:, or create the object yourself and declare it external: true")
	case o.Driver != "" || len(o.DriverOpts) > 0:
		return StackObject{}, fail("driver", "secret drivers (an external secret store) are not supported by lockstep; remove driver: and driver_opts:, or create the secret yourself and declare it external: true")
	case o.TemplateDriver != "":
		return StackObject{}, fail("template_driver", "templated "+kind+" are not supported by lockstep: their content would change without the file changing; remove template_driver:")
	}
	data, err := c.objectContent(kind, key, o, &out, fail)
	if err != nil {
		return StackObject{}, err
	}
	if kind == "configs" && (out.Encrypted || c.secrets.leaks(string(data))) {
		// Swarm configs are not secret: docker config inspect prints them.
		return StackObject{}, fail("", "holds a value decrypted from an age-encrypted file, and a swarm config is readable by anyone with access to a manager (docker config inspect); declare it under secrets: instead")
	}
	limit := maxSwarmConfig
	if kind == "secrets" {
		limit = maxSwarmSecret
	}
	switch {
	case len(data) == 0:
		return StackObject{}, fail("", "is empty, and the swarm refuses an empty "+strings.TrimSuffix(kind, "s")+"; give it content")
	case len(data) > limit:
		return StackObject{}, fail("", fmt.Sprintf("is %d bytes, more than the %d the swarm takes; keep large files in the image or a volume", len(data), limit))
	}
	out.data = data
	out.ContentHash = c.contentHash(data, out.Encrypted)
	name, ok := objectName(c.opts.Project, key, out.ContentHash)
	if !ok {
		return StackObject{}, fail("", fmt.Sprintf("the project name %q leaves no room for the key in a %d-character swarm name; use a shorter project name", c.opts.Project, maxObjectName))
	}
	out.Name = name
	labels, err := c.stackLabels(o.Labels, func(msg string) error { return fail("labels", msg) })
	if err != nil {
		return StackObject{}, err
	}
	labels[LabelEnvironment] = c.opts.Environment
	labels[LabelContentHash] = out.ContentHash
	out.Labels = labels
	return out, nil
}

// objectContent reads the content of a config or secret from its one
// source: a file of the release (decrypted when it is *.age), a host file
// under [policy].allowed_bind_roots, content: or environment:. It sets
// out.Source and out.Encrypted.
func (c *converter) objectContent(kind, key string, o types.FileObjectConfig, out *StackObject, fail func(k, msg string) error) ([]byte, error) {
	switch {
	case o.File != "" && within(c.opts.ReleaseDir, o.File):
		rel, real, err := c.objectReleaseFile(o.File, fail)
		if err != nil {
			return nil, err
		}
		out.Source = rel
		if isEncrypted(o.File) {
			plain, err := c.secrets.decrypt(real, rel)
			if err != nil {
				return nil, forService(err, "", kind+"."+key+".file")
			}
			out.Encrypted = true
			return plain, nil
		}
		return readObjectFile(real, fail)
	case o.File != "":
		p := filepath.Clean(o.File)
		allowed := bindRoots("", c.opts.HostFileRoots)
		if !underAny(p, allowed) || !underAny(resolve(p), allowed) {
			return nil, fail("file", fmt.Sprintf("host path %q refused: lockstep reads host files only under [policy].allowed_bind_roots = %s; add its directory there, or use a file of the repository", o.File, tomlList(c.opts.HostFileRoots)))
		}
		out.Source = p
		return readObjectFile(p, fail)
	case o.Environment != "":
		v, ok := c.cp.Environment[o.Environment]
		if !ok {
			return nil, fail("environment", fmt.Sprintf("variable %s is not set; set it in the release's .env, the pin file's [vars] or env_files, or a host env file", o.Environment))
		}
		_, out.Encrypted = c.secrets.secretVars[o.Environment]
		return []byte(v), nil
	case o.Content != "":
		return []byte(o.Content), nil
	}
	return nil, fail("", "has no source; give it file:, content: or environment:")
}

// objectReleaseFile checks a file: source inside the release as
// releaseFile does for a service: asked for (Need), present, and not
// resolving through a symlink to outside the release.
func (c *converter) objectReleaseFile(p string, fail func(k, msg string) error) (rel, real string, err error) {
	r, _ := filepath.Rel(c.opts.ReleaseDir, p)
	rel = filepath.ToSlash(r)
	if err := c.opts.needs.need(p); err != nil {
		return "", "", err
	}
	if _, err := os.Lstat(p); err != nil {
		return "", "", fail("file", fmt.Sprintf("%s does not exist in the release at this commit; add it to the repository or fix file:", rel))
	}
	real, err = filepath.EvalSymlinks(p)
	if err != nil || !within(c.realRoot, real) {
		return "", "", fail("file", fmt.Sprintf("%s resolves through a symlink to outside the release; only repository content can be referenced by relative path", rel))
	}
	return rel, real, nil
}

func readObjectFile(p string, fail func(k, msg string) error) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fail("file", fmt.Sprintf("cannot read %s: %v", p, pathReason(err)))
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fail("file", fmt.Sprintf("%s is not a regular file; a config or secret is one file", p))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSwarmConfig+1))
	if err != nil {
		return nil, fail("file", fmt.Sprintf("cannot read %s: %v", p, pathReason(err)))
	}
	return b, nil
}

// contentHash is an object's ContentHash: the sha256 of its content, or,
// for content that came from an age-encrypted file, the HMAC-SHA256 keyed
// with the host's identities (as File.Digest), so that the object's name
// and labels, which anyone with access to the swarm reads, reveal nothing
// about a low-entropy secret. Managers sharing the identity file compute
// the same value.
func (c *converter) contentHash(data []byte, encrypted bool) string {
	if encrypted && c.secrets.key != nil {
		m := hmac.New(sha256.New, c.secrets.key)
		m.Write(data)
		return hex.EncodeToString(m.Sum(nil))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// stackObjectRefs converts a service's configs: and secrets: into swarm
// references as docker stack deploy does (target defaulting to /<key> for
// a config and /run/secrets/<key> for a secret, where the engine puts
// them; uid and gid "0", mode 0444), sorted by object name.
// It returns the keys used and, for the hash, each object name's content
// hash.
func (c *converter) stackObjectRefs(s types.ServiceConfig, objs map[string]StackObject, cs *swarm.ContainerSpec, out *StackService) (map[string]string, error) {
	hashes := map[string]string{}
	target := func(kind, key string, r types.FileReferenceConfig) (string, string, string, os.FileMode, *StackObject, error) {
		o, ok := objs[kind+"/"+key]
		if !ok {
			return "", "", "", 0, nil, located(c.src, s.Name, kind, fmt.Sprintf("%s: not declared under the top-level %s:; declare it", key, kind))
		}
		// compose-go already spells a secret's default target
		// /run/secrets/<key>; a config's is /<key>, where the engine puts
		// a relative one.
		name := r.Target
		if name == "" {
			name = "/" + key
			if kind == "secrets" {
				name = "/run/secrets/" + key
			}
		}
		uid, gid, mode := r.UID, r.GID, os.FileMode(0o444)
		if uid == "" {
			uid = "0"
		}
		if gid == "" {
			gid = "0"
		}
		if r.Mode != nil {
			mode = os.FileMode(*r.Mode)
		}
		return name, uid, gid, mode, &o, nil
	}
	for _, r := range s.Configs {
		name, uid, gid, mode, o, err := target("configs", r.Source, types.FileReferenceConfig(r))
		if err != nil {
			return nil, err
		}
		cs.Configs = append(cs.Configs, &swarm.ConfigReference{ConfigName: o.Name,
			File: &swarm.ConfigReferenceFileTarget{Name: name, UID: uid, GID: gid, Mode: mode}})
		hashes["configs/"+o.Name] = objectHashRef(*o)
		out.Configs = append(out.Configs, r.Source)
	}
	for _, r := range s.Secrets {
		name, uid, gid, mode, o, err := target("secrets", r.Source, types.FileReferenceConfig(r))
		if err != nil {
			return nil, err
		}
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{SecretName: o.Name,
			File: &swarm.SecretReferenceFileTarget{Name: name, UID: uid, GID: gid, Mode: mode}})
		hashes["secrets/"+o.Name] = objectHashRef(*o)
		out.Secrets = append(out.Secrets, r.Source)
	}
	slices.SortStableFunc(cs.Configs, func(a, b *swarm.ConfigReference) int { return strings.Compare(a.ConfigName, b.ConfigName) })
	slices.SortStableFunc(cs.Secrets, func(a, b *swarm.SecretReference) int { return strings.Compare(a.SecretName, b.SecretName) })
	out.Configs = slices.Compact(sortedList(out.Configs))
	out.Secrets = slices.Compact(sortedList(out.Secrets))
	return hashes, nil
}

// objectHashRef is what stands for an object in a service's hash: its
// content hash, or for an external object its name (its content is the
// swarm's).
func objectHashRef(o StackObject) string {
	if o.External {
		return "external:" + o.Name
	}
	return "content:" + o.ContentHash
}

// contentSum is the plain sha256 content hash, hex.
func contentSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
