package compose

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
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

// keyring decrypts the .age files of one Load. It reads the identity file
// once, on first use, and remembers what it decrypted so a file used by
// several services is decrypted once and the values can be kept out of
// errors and labels.
type keyring struct {
	opts   SecretOptions
	loaded bool
	ids    []age.Identity
	key    []byte // HMAC key for digests, derived from the identities
	err    error  // why the identities could not be loaded (sticky)

	plain  map[string][]byte // abs path -> plaintext
	values []secretValue     // decrypted dotenv values
	// secretVars maps the interpolation variables whose value comes from
	// an encrypted file to that file.
	secretVars map[string]string
}

// secretValue is one decrypted dotenv value and the file it came from.
type secretValue struct {
	value, file string
}

func newKeyring(opts SecretOptions) *keyring {
	return &keyring{opts: opts, plain: map[string][]byte{}, secretVars: map[string]string{}}
}

// identities loads [secrets].age_identity. rel names the encrypted file
// that needs it, for the message.
func (k *keyring) identities(rel string) error {
	if k.loaded {
		return k.err
	}
	k.loaded = true
	idFile := k.opts.IdentityFile
	if idFile == "" {
		k.err = &LoadError{File: rel, Msg: "is age-encrypted, but this host has no age identity to decrypt it; set [secrets].age_identity in the agent config to the host's identity file (age-keygen -o)"}
		return k.err
	}
	b, err := readIdentityFile(idFile)
	if err != nil {
		var le *LoadError
		if !errors.As(err, &le) {
			le = &LoadError{File: idFile, Key: "[secrets].age_identity", Msg: fmt.Sprintf("cannot read the age identity file (needed for %s): %v; check [secrets].age_identity and the file's permissions", rel, pathReason(err)), Err: err}
		}
		k.err = le
		return k.err
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		// age's messages avoid key material, but the bech32 ones quote
		// single characters: keep only where the problem is.
		where := ""
		if m := regexp.MustCompile(`line \d+`).FindString(err.Error()); m != "" {
			where = " (" + m + ")"
		}
		k.err = &LoadError{File: idFile, Key: "[secrets].age_identity", Msg: fmt.Sprintf("holds no usable age identity%s: it must hold AGE-SECRET-KEY-1... lines as age-keygen writes them, # comments and blank lines allowed", where)}
		return k.err
	}
	k.ids = ids
	k.key = identityKey(b)
	return nil
}

// maxIdentitySize bounds what is read of [secrets].age_identity: an
// identity file is a few lines, and the path may name anything.
const maxIdentitySize = 64 << 10

// readIdentityFile reads the identity file through one handle, so the
// mode checked is that of the file read, not of whatever the path names a
// moment later.
func readIdentityFile(idFile string) ([]byte, error) {
	f, err := os.Open(idFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	refuse := func(msg string) error {
		return &LoadError{File: idFile, Key: "[secrets].age_identity", Msg: msg}
	}
	if !st.Mode().IsRegular() {
		return nil, refuse(fmt.Sprintf("is not a regular file (%v); point [secrets].age_identity at the file age-keygen -o wrote", st.Mode().Type()))
	}
	// Like ssh with an unprotected private key: an identity every local
	// user can read decrypts every secret of the repository. Group access
	// is allowed (root:lockstep 0440 is the usual way to hand it to the
	// agent's user).
	if st.Mode().Perm()&0o007 != 0 {
		return nil, refuse(fmt.Sprintf("the age identity file is accessible to every user on this host (mode %04o): anyone could decrypt the repository's secrets; chmod o-rwx it (0400, or 0440 for a group the agent is in)", st.Mode().Perm()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIdentitySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIdentitySize {
		clear(b)
		return nil, refuse(fmt.Sprintf("is larger than %d bytes, which no age identity file is (age-keygen writes 3 lines); check [secrets].age_identity names the identity file", maxIdentitySize))
	}
	return b, nil
}

// pathReason strips the operation and path from an *fs.PathError or
// *os.LinkError, for messages that name the path themselves.
func pathReason(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}

// identityKey derives the digest key from the identity lines, sorted, with
// comments and blank lines left out: editing a comment or reordering the
// file must not change every digest (and recreate every container using a
// secret), but a different set of identities does.
func identityKey(file []byte) []byte {
	var lines []string
	for _, l := range strings.Split(string(file), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte("lockstep secret digest key v1\n" + strings.Join(lines, "\n")))
	return sum[:]
}

// decrypt returns the plaintext of the encrypted file abs (rel names it in
// messages).
func (k *keyring) decrypt(abs, rel string) ([]byte, error) {
	if p, ok := k.plain[abs]; ok {
		return p, nil
	}
	if err := k.identities(rel); err != nil {
		return nil, err
	}
	plain, err := decryptFile(abs, k.ids)
	if err != nil {
		return nil, k.decryptError(rel, err)
	}
	k.plain[abs] = plain
	return plain, nil
}

var (
	errTooLarge = errors.New("plaintext too large")
	errPayload  = errors.New("payload")
)

func decryptFile(abs string, ids []age.Identity) ([]byte, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var src io.Reader = br
	if armored(br) {
		src = armor.NewReader(br)
	}
	r, err := age.Decrypt(src, ids...)
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(io.LimitReader(r, MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPayload, err)
	}
	if len(plain) > MaxSecretSize {
		clear(plain)
		return nil, errTooLarge
	}
	return plain, nil
}

// armored tells an ASCII-armored age file (age -a) from a binary one by
// its first line, leading whitespace allowed as age's own reader does.
func armored(br *bufio.Reader) bool {
	const begin = "-----BEGIN AGE ENCRYPTED FILE-----"
	head, _ := br.Peek(512)
	return bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte(begin))
}

func (k *keyring) decryptError(rel string, err error) error {
	var noMatch *age.NoIdentityMatchError
	idFile := k.opts.IdentityFile
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &LoadError{File: rel, Msg: "encrypted file not found in the release at this commit; add it or fix the reference", Err: err}
	case errors.As(err, &noMatch):
		return &LoadError{File: rel, Msg: fmt.Sprintf("cannot be decrypted with the identities in %s: it was encrypted to other recipients; re-encrypt it to this host's recipient (age-keygen -y %s prints it)", idFile, idFile), Err: err}
	case errors.Is(err, errTooLarge):
		return &LoadError{File: rel, Msg: fmt.Sprintf("decrypts to more than %d bytes; lockstep refuses larger secrets, keep big files out of the encrypted ones", MaxSecretSize)}
	case errors.Is(err, errPayload):
		return &LoadError{File: rel, Msg: fmt.Sprintf("the identity in %s matches, but the encrypted content is corrupted or truncated (%v); encrypt the file again", idFile, err), Err: err}
	}
	// age's header errors quote the offending line, which in a file
	// committed in clear by mistake is the secret: say only what it is not.
	return &LoadError{File: rel, Msg: "is not a valid age file (its header does not parse); encrypt it with age -r <this host's recipient>, binary or armored (-a)"}
}

// secretDigest is the File.Digest of an encrypted file: an HMAC-SHA256 of
// its plaintext keyed with the host's identities. It changes when the value
// changes, stays the same when the file is merely encrypted again (age
// output is randomised), and cannot be used to guess the value by anyone
// who does not hold the identity.
func (k *keyring) secretDigest(plain []byte) string {
	m := hmac.New(sha256.New, k.key)
	m.Write(plain)
	return digestPrefix + hex.EncodeToString(m.Sum(nil))
}

// setVars copies vars into the interpolation environment env, recording
// which variables now hold a value from an encrypted file (file, when it
// ends in .age) and which a later plain source overrode.
func (k *keyring) setVars(env, vars map[string]string, file string) {
	for name, v := range vars {
		env[name] = v
		if isEncrypted(file) {
			k.secretVars[name] = file
		} else {
			delete(k.secretVars, name)
		}
	}
}

// markDerived marks the plain variables whose value holds a decrypted one
// (REF=${SECRET} in a plain env file) as secret too.
func (k *keyring) markDerived(env map[string]string) {
	for _, name := range sortedKeys(env) {
		if _, ok := k.secretVars[name]; ok {
			continue
		}
		for _, v := range k.values {
			if strings.Contains(env[name], v.value) {
				k.secretVars[name] = v.file
				break
			}
		}
	}
}

// remember records the decrypted dotenv values of file, to keep them out
// of errors (and to find plain variables derived from them).
func (k *keyring) remember(file string, vars map[string]string) {
	for _, name := range sortedKeys(vars) {
		if v := vars[name]; len(v) >= minRedactLen {
			k.values = append(k.values, secretValue{value: v, file: file})
		}
	}
}

// redact returns err with every decrypted value replaced by "<redacted>".
// compose-go quotes offending values in its messages (an invalid port, a
// malformed image reference), and such a value may come from an encrypted
// file. Errors that quote none are returned unchanged.
func (k *keyring) redact(err error) error {
	if err == nil || len(k.values) == 0 {
		return err
	}
	text := err.Error()
	if !k.leaks(text) {
		return err
	}
	var le *LoadError
	if errors.As(err, &le) {
		out := *le
		out.Msg = k.scrub(le.Msg)
		out.Err = nil
		if le.Err != nil {
			out.Err = errors.New(k.scrub(le.Err.Error()))
		}
		if !k.leaks(out.Error()) {
			return &out
		}
	}
	return &LoadError{Msg: k.scrub(text)}
}

func (k *keyring) leaks(s string) bool {
	for _, v := range k.values {
		if strings.Contains(s, v.value) {
			return true
		}
	}
	return false
}

func (k *keyring) scrub(s string) string {
	// Longest first, so a value containing another is replaced whole.
	vals := slices.Clone(k.values)
	slices.SortFunc(vals, func(a, b secretValue) int { return len(b.value) - len(a.value) })
	for _, v := range vals {
		s = strings.ReplaceAll(s, v.value, "<redacted>")
	}
	return s
}

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
