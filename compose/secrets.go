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

// secretWrite is one decrypted config or secret a service binds: Load
// decides its path, WriteSecrets puts it there.
type secretWrite struct {
	kind, name, digest string // kind is "config" or "secret"
	target             string // <RuntimeDir>/secrets/<project>/<kind>-<name>-<digest16>
	plain              []byte
}

// secretWrites are the files WriteSecrets writes for a Project, and the
// runtime dir Load named them under. A Project holds them behind a
// pointer, so a Project printed with %v shows an address and never the
// plaintext; the fields are unexported, so encoding/json never sees them.
type secretWrites struct {
	runtimeDir string
	files      []secretWrite // sorted by target
}

// secretPath returns the bind source of a decrypted config or secret,
// <RuntimeDir>/secrets/<project>/<kind>-<name>-<digest16>, writing
// nothing. The name is content-addressed, so an unchanged secret keeps its
// bind source (no recreate) and a changed one never overwrites the file a
// running container still reads.
//
// It also makes, read-only, the checks of writeSecret that the runtime dir
// allows as it is now (see inspectRuntimeDir), so `lockstep validate`
// already refuses a runtime dir on disk or planted by another user, instead
// of the first apply.
func (k *keyring) secretPath(project, kind, name, digest string) (string, error) {
	rd := k.opts.RuntimeDir
	if rd == "" || !filepath.IsAbs(rd) {
		return "", fmt.Errorf("[secrets].runtime_dir %q is not an absolute path; set it to a tmpfs such as /run/lockstep", rd)
	}
	if strings.ContainsAny(name, "/\\\x00") || name == "" {
		return "", fmt.Errorf("%s name %q cannot name a file", kind, name)
	}
	hexDigest := strings.TrimPrefix(digest, digestPrefix)
	base := fmt.Sprintf("%s-%s-%s", kind, name, hexDigest[:16])
	if len(base) > maxFileName {
		return "", fmt.Errorf("%s name %q is too long: the decrypted file %s-<name>-<digest16> must fit in %d bytes; shorten the name", kind, name, kind, maxFileName)
	}
	rd = filepath.Clean(rd)
	if err := inspectRuntimeDir(rd, project); err != nil {
		return "", err
	}
	return filepath.Join(rd, "secrets", project, base), nil
}

// inspectRuntimeDir makes the checks of writeSecret that need no write:
// the runtime dir, or the directory it would be created in, is a tmpfs;
// and the runtime dir, secrets/ and secrets/<project>, as far as they
// exist, are trusted directories. What does not exist yet, WriteSecrets
// creates and checks.
func inspectRuntimeDir(rd, project string) error {
	if _, err := os.Lstat(rd); errors.Is(err, os.ErrNotExist) {
		return checkTmpfsAs(existingAncestor(rd), rd)
	}
	if err := checkTmpfs(rd); err != nil {
		return err
	}
	if err := checkRuntimeDir(rd); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), filepath.Join(rd, "secrets", project)} {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err := checkOwnDir(rd, d); err != nil {
			return err
		}
	}
	return nil
}

// WriteSecrets materializes p's decrypted configs and secrets on the tmpfs
// under opts.RuntimeDir, at the paths Load chose (Project.SecretFiles). It
// is a step of apply, run after the policy check, so `lockstep plan` and
// `lockstep validate` never write a decrypted file. Idempotent: files
// already present with the same content are left as they are. opts must
// name the runtime dir p was loaded with. No error carries the plaintext.
func WriteSecrets(p *Project, opts SecretOptions) error {
	w := p.secrets
	if w == nil || len(w.files) == 0 {
		return nil
	}
	rd := filepath.Clean(opts.RuntimeDir)
	if opts.RuntimeDir == "" || rd != w.runtimeDir {
		return fmt.Errorf("write secrets of %s: [secrets].runtime_dir %q is not the one the project was loaded with (%s); load it again", p.Name, opts.RuntimeDir, w.runtimeDir)
	}
	// Only paths and names should reach an error, but a write error is
	// the one place the plaintext is at hand: scrub it all the same.
	k := newKeyring(opts)
	for _, f := range w.files {
		if len(f.plain) >= minRedactLen {
			k.values = append(k.values, secretValue{value: string(f.plain), file: f.name})
		}
	}
	for _, f := range w.files {
		if err := writeSecret(rd, p.Name, f); err != nil {
			err = fmt.Errorf("write secrets of %s: %w", p.Name, err)
			if k.leaks(err.Error()) {
				return errors.New(k.scrub(err.Error()))
			}
			return err
		}
	}
	return nil
}

// writeSecret writes the plaintext of a config or secret to f.target,
// under <rd>/secrets/<project>/.
//
// The runtime dir may sit on a tmpfs other users can write to (/dev/shm):
// one of them could create secrets/<project> first, and a chmod by the
// agent would not take it from them. So every directory on the way is
// checked to be a real directory owned by the agent (or, for the runtime
// dir, by root and writable by no one else) before anything is written,
// and the checks hold by path afterwards because no other user can then
// rename or replace an entry in them.
func writeSecret(rd, project string, f secretWrite) error {
	dir := filepath.Join(rd, "secrets", project)
	if filepath.Dir(f.target) != dir {
		return fmt.Errorf("%s %q: %s is not under %s", f.kind, f.name, f.target, dir)
	}
	if err := ensureTmpfs(rd); err != nil {
		return err
	}
	if err := checkRuntimeDir(rd); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return runtimeDirError(rd, "create the directory "+d, err)
		}
		if err := checkOwnDir(rd, d); err != nil {
			return err
		}
		// Root only: the container reaches its file through the bind,
		// nobody else on the host needs to list or open it.
		if err := os.Chmod(d, 0o700); err != nil {
			return runtimeDirError(rd, "chmod 0700 "+d, err)
		}
	}
	if err := checkTmpfs(dir); err != nil {
		return err
	}
	target := f.target
	if st, err := os.Lstat(target); err == nil && st.Mode().IsRegular() && ownedByAgent(st) && st.Mode().Perm() == 0o444 && st.Size() == int64(len(f.plain)) {
		if have, err := os.ReadFile(target); err == nil && bytes.Equal(have, f.plain) {
			return nil
		}
	}
	// Temp file and rename: a container never binds a half-written file,
	// and a crash leaves at most a temp file, which PruneSecrets removes.
	// CreateTemp opens with O_CREATE|O_EXCL, which fails on an existing
	// name, symlinks included: what O_NOFOLLOW would add. No fsync: on a
	// tmpfs there is nothing to make durable.
	tmp, err := os.CreateTemp(dir, ".tmp-"+f.kind+"-")
	if err != nil {
		return runtimeDirError(rd, "create a temporary file in "+dir, err)
	}
	_, werr := tmp.Write(f.plain)
	cerr := tmp.Chmod(0o444)
	if err := errors.Join(werr, cerr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return runtimeDirError(rd, fmt.Sprintf("write the decrypted %s %q to %s", f.kind, f.name, tmp.Name()), err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		os.Remove(tmp.Name())
		return runtimeDirError(rd, "rename "+tmp.Name()+" to "+target, err)
	}
	st, err := os.Lstat(target)
	if err != nil {
		return runtimeDirError(rd, "check "+target, err)
	}
	if !st.Mode().IsRegular() || !ownedByAgent(st) {
		return fmt.Errorf("[secrets].runtime_dir %s: %s is not the regular file the agent just wrote (%v, owner %s); remove %s (lockstep creates it)", rd, target, st.Mode().Type(), ownerOf(st), dir)
	}
	return nil
}

// maxFileName is NAME_MAX on Linux file systems, tmpfs included.
const maxFileName = 255

// runtimeDirError wraps an error from writing under the runtime dir with
// the key to check. Only paths and names reach it, never plaintext.
func runtimeDirError(rd, what string, err error) error {
	return fmt.Errorf("%s under [secrets].runtime_dir %s: %w; check the directory is writable by the agent's user (uid %d) and the tmpfs is not full", what, rd, pathReason(err), os.Geteuid())
}

func ownedByAgent(st fs.FileInfo) bool {
	uid, ok := fileOwner(st)
	return ok && int64(uid) == int64(os.Geteuid())
}

func ownerOf(st fs.FileInfo) string {
	if uid, ok := fileOwner(st); ok {
		return fmt.Sprintf("uid %d", uid)
	}
	return "unknown"
}

// lstatDir returns what is at d, refusing anything but a real directory.
func lstatDir(rd, d string) (fs.FileInfo, error) {
	st, err := os.Lstat(d)
	if err != nil {
		return nil, runtimeDirError(rd, "check "+d, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: %s is a symlink, not a directory: it could send the decrypted secrets anywhere; remove it (lockstep creates it)", rd, d)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: %s is not a directory (%v); remove it (lockstep creates it)", rd, d, st.Mode().Type())
	}
	if _, ok := fileOwner(st); !ok {
		return nil, fmt.Errorf("[secrets].runtime_dir %s: cannot tell who owns %s on this system", rd, d)
	}
	return st, nil
}

// checkOwnDir refuses d (secrets/ or secrets/<project>) unless it is a
// real directory owned by the agent's user: whoever owns it can read the
// decrypted files in it or swap them, whatever mode the agent sets.
func checkOwnDir(rd, d string) error {
	st, err := lstatDir(rd, d)
	if err != nil {
		return err
	}
	if !ownedByAgent(st) {
		return fmt.Errorf("[secrets].runtime_dir %s: %s is owned by %s, not by the agent's user (uid %d): that user could read or swap the decrypted secrets; remove it (lockstep creates it)", rd, d, ownerOf(st), os.Geteuid())
	}
	return nil
}

// checkRuntimeDir refuses a runtime dir another user could use to reach
// the secrets under it.
func checkRuntimeDir(rd string) error {
	st, err := lstatDir(rd, rd)
	if err != nil {
		return err
	}
	uid, _ := fileOwner(st)
	return runtimeDirTrusted(rd, uid, uint32(os.Geteuid()), st.Mode())
}

// runtimeDirTrusted says whether a runtime dir owned by uid, with mode,
// is safe for the agent running as euid. It must belong to the agent, or
// to root with nobody else allowed to write (systemd's RuntimeDirectory=
// hands the service user its own; a root-made /run/lockstep is fine too).
// And nobody else may replace the secrets/ entry in it: writable by group
// or others is refused unless the sticky bit keeps them to their own
// entries (/dev/shm itself, for an agent running as root).
func runtimeDirTrusted(rd string, uid, euid uint32, mode fs.FileMode) error {
	othersWrite := mode.Perm()&0o022 != 0
	if uid != euid && (uid != 0 || othersWrite) {
		return fmt.Errorf("[secrets].runtime_dir %s is owned by uid %d (mode %04o), not by the agent's user (uid %d) nor root without group or world write: that user could read or swap the decrypted secrets; remove it (lockstep creates it) or chown it to uid %d (systemd's RuntimeDirectory= does)", rd, uid, mode.Perm(), euid, euid)
	}
	if othersWrite && mode&fs.ModeSticky == 0 {
		return fmt.Errorf("[secrets].runtime_dir %s is writable by other users (mode %04o) without the sticky bit: they could replace its secrets/ directory; chmod go-w it", rd, mode.Perm())
	}
	return nil
}

// ensureTmpfs checks that runtimeDir is a tmpfs, creating it (mode 0700)
// when missing, but only after checking that the directory it would be
// created in is one: nothing is ever created on persistent disk.
func ensureTmpfs(runtimeDir string) error {
	if _, err := os.Stat(runtimeDir); errors.Is(err, os.ErrNotExist) {
		if err := checkTmpfsAs(existingAncestor(runtimeDir), runtimeDir); err != nil {
			return err
		}
		if err := os.MkdirAll(runtimeDir, 0o700); err != nil {
			return fmt.Errorf("create [secrets].runtime_dir %s: %w", runtimeDir, err)
		}
	}
	return checkTmpfs(runtimeDir)
}

// existingAncestor returns the nearest parent of dir that exists: where
// dir would be created.
func existingAncestor(dir string) string {
	parent := filepath.Dir(dir)
	for {
		if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
			return parent
		}
		parent = filepath.Dir(parent)
	}
}

func checkTmpfs(dir string) error { return checkTmpfsAs(dir, dir) }

// checkTmpfsAs checks the file system of dir, naming shown in the message.
func checkTmpfsAs(dir, shown string) error {
	ok, err := isTmpfs(dir)
	if err != nil {
		return fmt.Errorf("[secrets].runtime_dir %s: %w", shown, err)
	}
	if !ok {
		return fmt.Errorf("[secrets].runtime_dir %s is not a tmpfs: decrypted secrets must never be written to persistent disk; use /run/lockstep (systemd RuntimeDirectory=)", shown)
	}
	return nil
}

// PruneSecrets removes the decrypted files materialized for project under
// runtimeDir that are not in keep (host paths). keep must hold every bind
// source still in use: Project.SecretFiles of the project being deployed
// and those of containers that still run from an older release, since a
// container whose bind source is gone cannot be restarted. Leftover temp
// files of an interrupted write are removed too. A project without
// materialized files is not an error.
func PruneSecrets(runtimeDir, project string, keep map[string]bool) error {
	if !filepath.IsAbs(runtimeDir) {
		return fmt.Errorf("prune secrets: runtime dir %q is not absolute", runtimeDir)
	}
	if !projectNameRE.MatchString(project) {
		return fmt.Errorf("prune secrets: invalid project name %q", project)
	}
	rd := filepath.Clean(runtimeDir)
	dir := filepath.Join(rd, "secrets", project)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The checks writeSecret makes: removing by path through a directory
	// another user planted (a symlink to /etc) would delete what it names.
	if err := checkRuntimeDir(rd); err != nil {
		return fmt.Errorf("prune secrets of %s: %w", project, err)
	}
	for _, d := range []string{filepath.Join(rd, "secrets"), dir} {
		if err := checkOwnDir(rd, d); err != nil {
			return fmt.Errorf("prune secrets of %s: %w", project, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune secrets of %s: %w", project, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("prune secrets of %s: %w", project, err))
		}
	}
	return errors.Join(errs...)
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
