package gitsource

// SSH signatures as git makes them with gpg.format=ssh: `ssh-keygen -Y
// sign -n git` over the commit without its gpgsig header, stored armored
// in that header. The format is OpenSSH's PROTOCOL.sshsig; this is a
// bounded parser of it, and the check of the signature over the commit.

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

const (
	sshSigMagic    = "SSHSIG"
	sshSigVersion  = 1
	sshSigBegin    = "-----BEGIN SSH SIGNATURE-----"
	sshSigEnd      = "-----END SSH SIGNATURE-----"
	gitNamespace   = "git"
	maxSSHSigBytes = 64 << 10 // armored; real ones are under 2 KiB even for RSA-4096
	minRSABits     = 2048     // x/crypto caps RSA keys at 16384 bits, as OpenSSH does
)

// sshSig is a parsed SSHSIG blob. The fields are exactly those the signed
// data is built from, so nothing outside them can influence verification.
type sshSig struct {
	pub       ssh.PublicKey
	namespace string
	reserved  []byte
	hashAlg   string // "sha256" or "sha512"
	sig       *ssh.Signature
}

// parseArmoredSSHSig reads one "-----BEGIN SSH SIGNATURE-----" block and
// nothing else (surrounding whitespace aside): a second block, or text
// after the end line, is refused rather than ignored, so what is verified
// is all that the header holds.
func parseArmoredSSHSig(armored []byte) (*sshSig, error) {
	if len(armored) > maxSSHSigBytes {
		return nil, fmt.Errorf("SSH signature is %d bytes, more than the %d a real one can need", len(armored), maxSSHSigBytes)
	}
	text := bytes.TrimSpace(armored)
	body, ok := bytes.CutPrefix(text, []byte(sshSigBegin))
	if !ok {
		return nil, fmt.Errorf("SSH signature does not start with %q", sshSigBegin)
	}
	body, ok = bytes.CutSuffix(body, []byte(sshSigEnd))
	if !ok {
		return nil, fmt.Errorf("SSH signature does not end with %q (or has data after it)", sshSigEnd)
	}
	if bytes.Contains(body, []byte("-----")) {
		return nil, errors.New("SSH signature holds more than one armored block")
	}
	b64 := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			b64 = append(b64, c)
		}
	}
	blob := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Strict().Decode(blob, b64)
	if err != nil {
		return nil, fmt.Errorf("SSH signature is not valid base64: %w", err)
	}
	return parseSSHSigBlob(blob[:n])
}

// parseSSHSigBlob parses the binary SSHSIG structure:
//
//	byte[6] "SSHSIG"; uint32 version; string publickey; string namespace;
//	string reserved; string hash_algorithm; string signature
//
// with nothing after it.
func parseSSHSigBlob(blob []byte) (*sshSig, error) {
	r := sshReader{buf: blob}
	magic, ok := r.bytes(len(sshSigMagic))
	if !ok || string(magic) != sshSigMagic {
		return nil, errors.New(`SSH signature does not start with the "SSHSIG" magic`)
	}
	version, ok := r.uint32()
	if !ok {
		return nil, errors.New("SSH signature is truncated before its version")
	}
	if version != sshSigVersion {
		return nil, fmt.Errorf("SSH signature has version %d; only version %d exists", version, sshSigVersion)
	}
	fields := [5][]byte{}
	names := [5]string{"public key", "namespace", "reserved field", "hash algorithm", "signature"}
	for i := range fields {
		if fields[i], ok = r.string(); !ok {
			return nil, fmt.Errorf("SSH signature is truncated in its %s", names[i])
		}
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("SSH signature has %d bytes after its signature field", len(r.buf))
	}
	pub, err := ssh.ParsePublicKey(fields[0])
	if err != nil {
		return nil, fmt.Errorf("SSH signature's public key: %w", err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("SSH signature is made with a certificate; certificates are not supported, sign with the plain key")
	}
	s := &sshSig{pub: pub, namespace: string(fields[1]), reserved: fields[2], hashAlg: string(fields[3])}
	if s.hashAlg != "sha256" && s.hashAlg != "sha512" {
		return nil, fmt.Errorf("SSH signature uses hash algorithm %q; only sha256 and sha512 are defined", s.hashAlg)
	}
	s.sig = new(ssh.Signature)
	if err := ssh.Unmarshal(fields[4], s.sig); err != nil {
		return nil, fmt.Errorf("SSH signature's signature field: %w", err)
	}
	return s, nil
}

// verify checks the signature over message (the commit without its
// signature header). It does not check the namespace or who the key
// belongs to: the caller does, to say precisely what is wrong.
func (s *sshSig) verify(message []byte) error {
	if err := checkSSHSigAlgorithm(s.pub, s.sig); err != nil {
		return err
	}
	var digest []byte
	switch s.hashAlg {
	case "sha256":
		d := sha256.Sum256(message)
		digest = d[:]
	case "sha512":
		d := sha512.Sum512(message)
		digest = d[:]
	default: // parseSSHSigBlob lets no other through
		return fmt.Errorf("hash algorithm %q", s.hashAlg)
	}
	signed := make([]byte, 0, len(sshSigMagic)+4*4+len(s.namespace)+len(s.reserved)+len(s.hashAlg)+len(digest))
	signed = append(signed, sshSigMagic...)
	signed = appendSSHString(signed, []byte(s.namespace))
	signed = appendSSHString(signed, s.reserved)
	signed = appendSSHString(signed, []byte(s.hashAlg))
	signed = appendSSHString(signed, digest)
	return s.pub.Verify(signed, s.sig)
}

// checkSSHSigAlgorithm refuses signature algorithms that are weak or do
// not belong to the key: RSA only with SHA-2 (never "ssh-rsa", SHA-1) and
// a modulus of at least minRSABits; every other key signs with its own
// algorithm; only security-key signatures carry trailing data (flags and
// counter).
func checkSSHSigAlgorithm(pub ssh.PublicKey, sig *ssh.Signature) error {
	switch pub.Type() {
	case ssh.KeyAlgoRSA:
		if sig.Format != ssh.KeyAlgoRSASHA256 && sig.Format != ssh.KeyAlgoRSASHA512 {
			return fmt.Errorf("RSA signature of type %q refused: only rsa-sha2-256 and rsa-sha2-512 are accepted (ssh-rsa signs with SHA-1)", sig.Format)
		}
		if bits := rsaBits(pub); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits refused: at least %d are required", bits, minRSABits)
		}
	case ssh.InsecureKeyAlgoDSA:
		return errors.New("DSA keys are refused: they sign with SHA-1 and OpenSSH has dropped them")
	default:
		if sig.Format != pub.Type() {
			return fmt.Errorf("signature of type %q does not belong to a %s key", sig.Format, pub.Type())
		}
	}
	switch pub.Type() {
	case ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
	default:
		if len(sig.Rest) != 0 {
			return fmt.Errorf("%s signature has %d unexpected trailing bytes", sig.Format, len(sig.Rest))
		}
	}
	return nil
}

func rsaBits(pub ssh.PublicKey) int {
	if c, ok := pub.(ssh.CryptoPublicKey); ok {
		if k, ok := c.CryptoPublicKey().(*rsa.PublicKey); ok && k.N != nil {
			return k.N.BitLen()
		}
	}
	return 0
}

// sshKeyName is how messages name an SSH key: its type and SHA256
// fingerprint, as `ssh-keygen -l` prints them.
func sshKeyName(pub ssh.PublicKey) string {
	return pub.Type() + " " + ssh.FingerprintSHA256(pub)
}

func appendSSHString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// sshReader reads SSH wire types from buf, never past its end.
type sshReader struct{ buf []byte }

func (r *sshReader) bytes(n int) ([]byte, bool) {
	if n < 0 || n > len(r.buf) {
		return nil, false
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b, true
}

func (r *sshReader) uint32() (uint32, bool) {
	b, ok := r.bytes(4)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

func (r *sshReader) string() ([]byte, bool) {
	n, ok := r.uint32()
	if !ok || uint64(n) > uint64(len(r.buf)) {
		return nil, false
	}
	return r.bytes(int(n))
}
