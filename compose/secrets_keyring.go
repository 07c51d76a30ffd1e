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
	"regexp"
	"slices"
	"sort"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

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
