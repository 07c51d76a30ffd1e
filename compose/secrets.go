package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Age-encrypted files.
//
// A release may hold files encrypted with age (https://age-encryption.org)
// to the host's identity, recognised by the ".age" suffix: dotenv files
// (the release's .env.age, the pin's env_files, a service's env_file) and
// the file: sources of configs and secrets. They are decrypted in memory
// with the identities of [secrets].age_identity, read again at every Load
// so an operator can rotate it without a restart.
//
// What the plaintext may reach: the container's environment (unavoidable),
// and, for configs and secrets, one file on a tmpfs under the runtime
// directory that is bind-mounted into the container, written by
// WriteSecrets at apply (never by Load). Nothing else: not a
// *LoadError, not a label, not a File digest (those are keyed with the
// host's identity, see secretDigest), not the release directory.

// SecretOptions say how to decrypt the age-encrypted files a release uses.
type SecretOptions struct {
	// IdentityFile is [secrets].age_identity: a file of AGE-SECRET-KEY-1...
	// lines as age-keygen writes them (# comments and blank lines allowed).
	// "" means none: a release that uses a .age file is refused.
	IdentityFile string
	// RuntimeDir is [secrets].runtime_dir, which must be a tmpfs (or
	// ramfs): decrypted configs and secrets are written under
	// <RuntimeDir>/secrets/<project>/, and nowhere else.
	RuntimeDir string
}

// MaxSecretSize bounds the plaintext of one encrypted file, so a hostile
// file in the repository cannot make the agent exhaust memory or tmpfs.
const MaxSecretSize = 1 << 20

// minRedactLen is the shortest decrypted value scrubbed from errors:
// shorter ones ("1", "yes") would mangle every message and are no secret
// anyway.
const minRedactLen = 4

// digestPrefix marks a File.Digest keyed with the host's identity.
const digestPrefix = "hmac-sha256:"

func isEncrypted(path string) bool { return strings.HasSuffix(path, ".age") }

// checkLabels refuses labels (of services, networks and volumes) whose
// value interpolates a variable that comes from an encrypted file: labels
// are readable by anyone who can list containers, and are shown by
// `docker inspect` and `docker ps --format`. The check is on the
// references in the compose files, not on the values, so a label that
// happens to spell a decrypted value literally (already in git, in clear)
// is not refused.
func (k *keyring) checkLabels(src *sources) error {
	if len(k.secretVars) == 0 {
		return nil
	}
	names := sortedKeys(k.secretVars)
	var refs []*regexp.Regexp
	for _, name := range names {
		refs = append(refs, variableRef(name))
	}
	for _, f := range src.files {
		for _, doc := range f.docs {
			root := docRoot(doc)
			for _, kind := range []string{"services", "networks", "volumes"} {
				objs := deref(mapValue(root, kind))
				if objs == nil || objs.Kind != yaml.MappingNode {
					continue
				}
				for i := 0; i+1 < len(objs.Content); i += 2 {
					obj := objs.Content[i].Value
					for _, l := range labelValues(mapValue(deref(objs.Content[i+1]), "labels")) {
						for j, re := range refs {
							if !re.MatchString(l.value.Value) {
								continue
							}
							le := &LoadError{File: f.rel, Line: l.value.Line, Key: kind + "." + obj + ".labels",
								Msg: fmt.Sprintf("label %q uses %s, which comes from the encrypted file %s; labels are readable by anyone who can list containers, pass the value through environment: instead", l.name, names[j], k.secretVars[names[j]])}
							if kind == "services" {
								le.Service, le.Key = obj, "labels"
							}
							return le
						}
					}
				}
			}
		}
	}
	return nil
}

type labelValue struct {
	name  string
	value *yaml.Node
}

// labelValues lists the label values of a labels: node, in the mapping
// form (merge keys followed) or the list form ("key=value").
func labelValues(n *yaml.Node) []labelValue {
	n = deref(n)
	if n == nil {
		return nil
	}
	var out []labelValue
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "<<" {
				for _, m := range scalarOrList(deref(n.Content[i+1])) {
					out = append(out, labelValues(m)...)
				}
				continue
			}
			if v := deref(n.Content[i+1]); v != nil && v.Kind == yaml.ScalarNode {
				out = append(out, labelValue{n.Content[i].Value, v})
			}
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item = deref(item); item != nil && item.Kind == yaml.ScalarNode {
				name, _, _ := strings.Cut(item.Value, "=")
				out = append(out, labelValue{name, item})
			}
		}
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// variableRef matches $NAME or ${NAME...} (also nested in a default),
// not the escaped $$NAME.
func variableRef(name string) *regexp.Regexp {
	q := regexp.QuoteMeta(name)
	return regexp.MustCompile(`(^|[^$])\$(\{` + q + `([^A-Za-z0-9_]|$)|` + q + `([^A-Za-z0-9_]|$))`)
}

// refuseEncryptedIncludeEnv refuses `include: env_file:` entries naming a
// .age file: compose-go reads those itself while loading, as plain text.
func refuseEncryptedIncludeEnv(src *sources) error {
	for _, f := range src.files {
		for _, doc := range f.docs {
			inc := mapValue(docRoot(doc), "include")
			if inc == nil || inc.Kind != yaml.SequenceNode {
				continue
			}
			for _, item := range inc.Content {
				ef := mapValue(item, "env_file")
				if ef == nil {
					continue
				}
				for _, n := range scalarOrList(ef) {
					if isEncrypted(n.Value) {
						return &LoadError{File: f.rel, Line: n.Line, Key: "include.env_file",
							Msg: fmt.Sprintf("%s is encrypted, and include env files are read as plain text; name it in the pin file's env_files instead", n.Value)}
					}
				}
			}
		}
	}
	return nil
}

// PriorFiles returns the digests that files (paths of a desired service)
// have in another release directory, typically the one a running container
// came from, so a plan can name the file that changed. A path that does not
// exist there is absent from the result. Encrypted files are digested the
// way Load keys them, with the identities of secrets.IdentityFile as they
// are now; one that cannot be decrypted there (another identity, a broken
// file) gets a digest that matches nothing, so the plan says it changed.
func PriorFiles(releaseDir string, files []File, secrets SecretOptions) map[string]string {
	out := make(map[string]string, len(files))
	k := newKeyring(secrets)
	for _, f := range files {
		p := filepath.Join(releaseDir, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(f.Digest, digestPrefix) {
			if d, err := digestPath(p); err == nil {
				out[f.Path] = d
			}
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue
		}
		plain, err := k.decrypt(p, f.Path)
		if err != nil {
			out[f.Path] = digestPrefix + "undecryptable"
			continue
		}
		out[f.Path] = k.secretDigest(plain)
	}
	return out
}
