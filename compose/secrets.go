package compose

import (
	"os"
	"path/filepath"
	"strings"
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
