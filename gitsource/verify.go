package gitsource

// Commit signature verification ([repo.verify]): a commit is trusted when
// its gpgsig header holds exactly one signature, OpenPGP or SSH, that
// verifies over the commit without that header and comes from a key the
// operator listed. Anything else is a *SignatureError naming the commit,
// the role it plays and the signer found, so the operator can tell an
// unsigned push from a stranger's key from a tampered commit.

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// VerifyOptions name the files of trusted keys. Both empty means
// verification is off.
type VerifyOptions struct {
	OpenPGPKeyring    string // OpenPGP public keys, armored or binary (gpg --export [--armor])
	SSHAllowedSigners string // ssh-keygen ALLOWED SIGNERS format
}

// Roles a verified commit plays, for messages.
const (
	RoleHead   = "branch head"
	RolePinned = "pinned commit"
)

// Signer is who signed a trusted commit.
type Signer struct {
	Kind      string // "openpgp" or "ssh"
	Key       string // SSH: "SHA256:..." fingerprint; OpenPGP: primary key fingerprint, upper-case hex
	Principal string // SSH: the allowed_signers principals; OpenPGP: the key's primary user ID
}

func (s Signer) String() string {
	kind := "ssh key"
	if s.Kind == "openpgp" {
		kind = "OpenPGP key"
	}
	if s.Principal == "" {
		return kind + " " + s.Key
	}
	return fmt.Sprintf("%s %s (%s)", kind, s.Key, s.Principal)
}

// SignatureError says a commit was refused because it does not carry a
// valid signature from a trusted key.
type SignatureError struct {
	Commit string // full SHA
	Role   string // RoleHead or RolePinned
	// Signer is what was found: "unsigned", "ssh-ed25519 SHA256:...",
	// "OpenPGP key 0x... (fingerprint ...)", or a description of an
	// unreadable signature.
	Signer string
	Reason string // what is wrong and what to do; completes "... refused: "
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("%s %s (%s) refused: %s", e.Role, shortSHA(e.Commit), e.Commit, e.Reason)
}

// Permanent is true: a commit's signature never changes, so retrying is
// pointless; the agent waits for the branch to move.
func (e *SignatureError) Permanent() bool { return true }

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// trustedKeys are the keys loaded from VerifyOptions.
type trustedKeys struct {
	pgpFile string
	pgp     openpgp.EntityList
	ssh     *allowedSigners // nil when no file is set
}

// maxKeyringBytes bounds the keyring read at startup.
const maxKeyringBytes = 16 << 20

// loadTrustedKeys reads and parses the trusted key files, or returns nil
// when none is set. Every problem is an error naming the file, so a bad
// [repo.verify] stops the agent at startup, not at the first deploy.
func loadTrustedKeys(opts VerifyOptions) (*trustedKeys, error) {
	if opts.OpenPGPKeyring == "" && opts.SSHAllowedSigners == "" {
		return nil, nil
	}
	k := &trustedKeys{}
	if f := opts.OpenPGPKeyring; f != "" {
		data, err := readKeyFile(f, "openpgp_keyring", maxKeyringBytes)
		if err != nil {
			return nil, err
		}
		if k.pgp, err = parseKeyring(f, data); err != nil {
			return nil, err
		}
		k.pgpFile = f
	}
	if f := opts.SSHAllowedSigners; f != "" {
		data, err := readKeyFile(f, "ssh_allowed_signers", maxSignersFileBytes)
		if err != nil {
			return nil, err
		}
		if k.ssh, err = parseAllowedSigners(f, data); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func readKeyFile(file, key string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("[repo.verify] %s: %w", key, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("[repo.verify] %s: read %s: %w", key, file, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("[repo.verify] %s: %s is larger than %d bytes; is it the right file?", key, file, limit)
	}
	return data, nil
}

// parseKeyring reads OpenPGP public keys, binary or armored. An armored
// file may hold several blocks (exports concatenated with cat); each is
// read, and a bad one is reported with the line it starts on.
func parseKeyring(file string, data []byte) (openpgp.EntityList, error) {
	const how = "export trusted keys with: gpg --export --armor KEYID... > FILE"
	var list openpgp.EntityList
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("openpgp_keyring file %s is empty; %s", file, how)
	}
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		l, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("openpgp_keyring file %s is not an OpenPGP keyring (%v); note that gpg's own pubring.kbx is not one: %s", file, err, how)
		}
		list = l
	} else {
		const begin = "-----BEGIN "
		for off := 0; off < len(data); {
			i := bytes.Index(data[off:], []byte(begin))
			if i < 0 {
				break
			}
			start := off + i
			next := bytes.Index(data[start+len(begin):], []byte(begin))
			end := len(data)
			if next >= 0 {
				end = start + len(begin) + next
			}
			line := 1 + bytes.Count(data[:start], []byte("\n"))
			block, err := armor.Decode(bytes.NewReader(data[start:end]))
			if err != nil {
				return nil, fmt.Errorf("openpgp_keyring file %s: armored block at line %d: %v; %s", file, line, err, how)
			}
			switch block.Type {
			case openpgp.PublicKeyType:
			case openpgp.PrivateKeyType:
				return nil, fmt.Errorf("openpgp_keyring file %s: the block at line %d is a PRIVATE key; lockstep needs only public keys: remove it (and consider it exposed), then %s", file, line, how)
			default:
				return nil, fmt.Errorf("openpgp_keyring file %s: the block at line %d is a %q, not a public key block; %s", file, line, block.Type, how)
			}
			l, err := openpgp.ReadKeyRing(block.Body)
			if err != nil {
				return nil, fmt.Errorf("openpgp_keyring file %s: public key block at line %d: %v; %s", file, line, err, how)
			}
			list = append(list, l...)
			off = end
		}
	}
	for _, e := range list {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("openpgp_keyring file %s holds the PRIVATE key %X; lockstep needs only public keys: remove it (and consider it exposed), then %s", file, e.PrimaryKey.Fingerprint, how)
		}
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("openpgp_keyring file %s holds no usable public key; %s", file, how)
	}
	return list, nil
}

// files names the configured trust files, for messages.
func (k *trustedKeys) files() string {
	var f []string
	if k.pgpFile != "" {
		f = append(f, "openpgp_keyring "+k.pgpFile)
	}
	if k.ssh != nil {
		f = append(f, "ssh_allowed_signers "+k.ssh.file)
	}
	return strings.Join(f, " or ")
}

// CheckVerifyOptions reads and parses the key files of opts as New does,
// so that a config reload can refuse a missing or broken key file while
// the running agent goes on with the keys it has.
func CheckVerifyOptions(opts VerifyOptions) error {
	_, err := loadTrustedKeys(opts)
	return err
}

// VerifyCommit checks that commit sha, already in the cache (after Fetch or
// Resolve), carries a valid signature from a trusted key, and returns who
// signed it. role (RoleHead or RolePinned) is only for messages. A refusal
// is a *SignatureError; other errors (verification not configured, the
// commit not in the cache) are the caller's to fix.
func (s *Source) VerifyCommit(sha, role string) (Signer, error) {
	if s.trust == nil {
		return Signer{}, fmt.Errorf("verify %s %s: no trusted keys are configured ([repo.verify] is off)", role, sha)
	}
	if len(sha) != 40 || !hexOnly.MatchString(sha) {
		return Signer{}, fmt.Errorf("verify %s: %q is not a full 40-hex commit SHA", role, sha)
	}
	sha = strings.ToLower(sha)
	// The lock guards reading the cache against a concurrent fetch. The
	// operations that hold it are bounded by opts.Timeout, so waiting is
	// too.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	unlock, err := s.lock(ctx)
	if err != nil {
		return Signer{}, fmt.Errorf("verify %s %s: %w", role, sha, err)
	}
	defer unlock()
	commit, err := s.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return Signer{}, fmt.Errorf("verify %s %s: the commit is not in the cache (fetch or resolve it first): %w", role, sha, err)
	}
	// The signature is checked over go-git's re-encoding of the commit
	// (EncodeWithoutSignature). That is what git checks only when the
	// re-encoding gives back the stored object: a header go-git drops (an
	// unknown or repeated one) would make a copy of a signed commit under
	// a new SHA that still verifies, slipping past quarantine. Refuse it.
	if err := canonical(s.repo.Storer, commit); err != nil {
		return Signer{}, &SignatureError{Commit: sha, Role: role, Signer: "a non-canonical commit object", Reason: err.Error()}
	}
	return verifyCommit(s.trust, commit, role, time.Now())
}

// canonical says why c, as stored, is not exactly what go-git encodes
// from it, or nil.
func canonical(st interface {
	EncodedObject(plumbing.ObjectType, plumbing.Hash) (plumbing.EncodedObject, error)
}, c *object.Commit) error {
	stored, err := st.EncodedObject(plumbing.CommitObject, c.Hash)
	if err != nil {
		return fmt.Errorf("cannot read the commit object: %v", err)
	}
	raw, err := readObject(stored)
	if err != nil {
		return fmt.Errorf("cannot read the commit object: %v", err)
	}
	var again plumbing.MemoryObject
	if err := c.Encode(&again); err != nil {
		return fmt.Errorf("cannot encode the commit: %v", err)
	}
	encoded, err := readObject(&again)
	if err != nil {
		return fmt.Errorf("cannot encode the commit: %v", err)
	}
	if !bytes.Equal(raw, encoded) {
		return errors.New("non-canonical commit object: it holds headers lockstep cannot account for (unknown, repeated or out of order), which a signature may not cover; git commit writes none of these, so the commit was crafted by hand: do not deploy it, and find out who pushed it")
	}
	return nil
}

// verifyCommit is VerifyCommit on a decoded commit, with now the time
// OpenPGP key expiry and revocation are judged at. SSH validity windows
// are judged at the committer time instead, as git does.
func verifyCommit(k *trustedKeys, c *object.Commit, role string, now time.Time) (Signer, error) {
	refuse := func(signer, format string, args ...any) (Signer, error) {
		return Signer{}, &SignatureError{Commit: c.Hash.String(), Role: role, Signer: signer, Reason: fmt.Sprintf(format, args...)}
	}
	sig := c.PGPSignature
	if strings.TrimSpace(sig) == "" {
		return refuse("unsigned", "not signed; with [repo.verify] on, the %s must be signed by a key in %s; sign it (git commit -S) with a trusted key", role, k.files())
	}
	if n := strings.Count(sig, "-----BEGIN "); n > 1 {
		return refuse("several signatures", "its gpgsig header holds %d signature blocks; lockstep accepts exactly one, so that which key vouches for the commit is never ambiguous", n)
	}
	var payload plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&payload); err != nil {
		return Signer{}, fmt.Errorf("verify %s %s: encode the signed part of the commit: %w", role, c.Hash, err)
	}
	signed, err := readObject(&payload)
	if err != nil {
		return Signer{}, fmt.Errorf("verify %s %s: read the signed part of the commit: %w", role, c.Hash, err)
	}
	trimmed := strings.TrimLeft(sig, " \t\r\n")
	switch {
	case strings.HasPrefix(trimmed, sshSigBegin):
		return verifySSHCommit(k, c, []byte(sig), signed, refuse)
	case strings.HasPrefix(trimmed, "-----BEGIN PGP SIGNATURE-----"):
		return verifyPGPCommit(k, []byte(sig), signed, now, refuse)
	default:
		kind := "an unknown format"
		if strings.HasPrefix(trimmed, "-----BEGIN SIGNED MESSAGE-----") || strings.HasPrefix(trimmed, "-----BEGIN CERTIFICATE-----") {
			kind = "X.509 (gpgsm)"
		}
		return refuse("a signature in "+kind, "signed with %s, which lockstep does not verify; sign with an OpenPGP or SSH key listed in %s", kind, k.files())
	}
}

func readObject(o plumbing.EncodedObject) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type refuseFunc func(signer, format string, args ...any) (Signer, error)

func verifySSHCommit(k *trustedKeys, c *object.Commit, armored, signed []byte, refuse refuseFunc) (Signer, error) {
	sig, err := parseArmoredSSHSig(armored)
	if err != nil {
		return refuse("a malformed SSH signature", "its SSH signature cannot be read: %v; the commit was damaged or forged", err)
	}
	who := sshKeyName(sig.pub)
	if k.ssh == nil {
		return refuse(who, "signed by %s, but no ssh_allowed_signers file is set in [repo.verify] (only %s); add one listing the key, or deploy a commit signed by a trusted key", who, k.files())
	}
	entries := k.ssh.lookup(sig.pub)
	if len(entries) == 0 {
		return refuse(who, "signed by %s, which is not in %s; add the key there or deploy a commit signed by a trusted key", who, k.ssh.file)
	}
	if sig.namespace != gitNamespace {
		return refuse(who, "signed by %s in namespace %q, not %q: that is not a git commit signature; the signature was copied from elsewhere", who, sig.namespace, gitNamespace)
	}
	if err := sig.verify(signed); err != nil {
		return refuse(who, "signed by %s (%s), but the signature does not match the commit (%v): the commit was altered after signing, or the signature was copied from another commit; do not deploy it, and find out who pushed it", who, entries[0].principals, err)
	}
	var why []string
	for _, e := range entries {
		if reason := e.permits(gitNamespace, c.Committer.When); reason != "" {
			why = append(why, reason)
			continue
		}
		return Signer{Kind: "ssh", Key: ssh.FingerprintSHA256(sig.pub), Principal: e.principals}, nil
	}
	return refuse(who, "signed by %s, but %s %s; fix the key's line there, or deploy a commit signed by a trusted key", who, k.ssh.file, strings.Join(why, "; "))
}

func verifyPGPCommit(k *trustedKeys, armored, signed []byte, now time.Time, refuse refuseFunc) (Signer, error) {
	sig, body, err := readPGPSignature(armored)
	if err != nil {
		return refuse("a malformed OpenPGP signature", "its OpenPGP signature cannot be read: %v; the commit was damaged or forged", err)
	}
	who := pgpSignerName(sig)
	if k.pgpFile == "" {
		return refuse(who, "signed by %s, but no openpgp_keyring is set in [repo.verify] (only %s); add one holding the key, or deploy a commit signed by a trusted key", who, k.files())
	}
	if len(k.pgp.KeysById(*sig.IssuerKeyId)) == 0 {
		return refuse(who, "signed by %s, which is not in %s; add the key there (gpg --export --armor KEYID >> FILE) or deploy a commit signed by a trusted key", who, k.pgpFile)
	}
	switch sig.Hash {
	case crypto.MD5, crypto.SHA1, crypto.RIPEMD160:
		return refuse(who, "signed by %s with the weak hash %s; re-sign with SHA-256 or better (gpg's default)", who, sig.Hash)
	}
	config := &packet.Config{Time: func() time.Time { return now }}
	_, entity, err := openpgp.VerifyDetachedSignature(k.pgp, bytes.NewReader(signed), bytes.NewReader(body), config)
	switch {
	case err == nil:
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return refuse(who, "signed by %s, which %s holds but not as a signing key (its key flags exclude signing); deploy a commit signed by a trusted signing key", who, k.pgpFile)
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return refuse(who, "signed by %s, which has expired according to %s; extend the key's expiry and re-export it there, or deploy a commit signed by a trusted key", who, k.pgpFile)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return refuse(who, "signed by %s, which is revoked according to %s; deploy a commit signed by a trusted key", who, k.pgpFile)
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return refuse(who, "signed by %s, but the signature itself has expired; re-sign the commit", who)
	case entity != nil:
		// The signature matched but a detail (a critical notation) did not.
		return refuse(who, "signed by %s, but the signature is not acceptable: %v", who, err)
	default:
		return refuse(who, "signed by %s, but the signature does not match the commit (%v): the commit was altered after signing, or the signature was copied from another commit; do not deploy it, and find out who pushed it", who, err)
	}
	signer := Signer{Kind: "openpgp", Key: fmt.Sprintf("%X", entity.PrimaryKey.Fingerprint)}
	if id := entity.PrimaryIdentity(); id != nil {
		signer.Principal = id.Name
	}
	return signer, nil
}

// readPGPSignature dearmors an OpenPGP signature and checks that it is
// exactly one signature packet with an issuer, returning that packet (to
// name the signer, known or not) and the binary body to verify.
func readPGPSignature(armored []byte) (*packet.Signature, []byte, error) {
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		return nil, nil, fmt.Errorf("armor: %v", err)
	}
	if block.Type != openpgp.SignatureType {
		return nil, nil, fmt.Errorf("armored block is a %q, not a signature", block.Type)
	}
	body, err := io.ReadAll(io.LimitReader(block.Body, maxSSHSigBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("armor: %v", err)
	}
	if len(body) > maxSSHSigBytes {
		return nil, nil, fmt.Errorf("signature is more than %d bytes", maxSSHSigBytes)
	}
	packets := packet.NewReader(bytes.NewReader(body))
	p, err := packets.Next()
	if err != nil {
		return nil, nil, fmt.Errorf("signature packet: %v", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, nil, fmt.Errorf("first packet is a %T, not a signature", p)
	}
	if _, err := packets.Next(); err != io.EOF {
		return nil, nil, errors.New("more than one packet; git signs with exactly one signature packet")
	}
	if sig.IssuerKeyId == nil {
		return nil, nil, errors.New("signature names no issuer key")
	}
	return sig, body, nil
}

// pgpSignerName names the key a signature claims to come from.
func pgpSignerName(sig *packet.Signature) string {
	name := fmt.Sprintf("OpenPGP key 0x%016X", *sig.IssuerKeyId)
	if len(sig.IssuerFingerprint) > 0 {
		name += fmt.Sprintf(" (fingerprint %X)", sig.IssuerFingerprint)
	}
	return name
}
