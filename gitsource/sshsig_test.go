package gitsource

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

func runIn(t *testing.T, dir string, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, name, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sshSigFields are the parts of an SSHSIG blob, so tests can build broken
// ones field by field.
type sshSigFields struct {
	magic     string
	version   uint32
	pub       []byte
	namespace string
	reserved  string
	hashAlg   string
	sig       []byte
	trailing  []byte
}

func (f sshSigFields) blob() []byte {
	b := []byte(f.magic)
	b = binary.BigEndian.AppendUint32(b, f.version)
	for _, s := range [][]byte{f.pub, []byte(f.namespace), []byte(f.reserved), []byte(f.hashAlg), f.sig} {
		b = appendSSHString(b, s)
	}
	return append(b, f.trailing...)
}

// armorSSHSig wraps a blob as ssh-keygen does: 70 base64 characters a line.
func armorSSHSig(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b strings.Builder
	b.WriteString(sshSigBegin + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + sshSigEnd + "\n")
	return []byte(b.String())
}

// signFields signs message as ssh-keygen -Y sign would, with the signature
// algorithm algo ("" for the key's default), and returns the fields.
func signFields(t testing.TB, signer ssh.Signer, namespace, hashAlg, algo string, message []byte) sshSigFields {
	t.Helper()
	var digest []byte
	if hashAlg == "sha256" {
		d := sha256.Sum256(message)
		digest = d[:]
	} else {
		d := sha512.Sum512(message)
		digest = d[:]
	}
	signed := []byte(sshSigMagic)
	for _, s := range [][]byte{[]byte(namespace), nil, []byte(hashAlg), digest} {
		signed = appendSSHString(signed, s)
	}
	var sig *ssh.Signature
	var err error
	if algo != "" {
		sig, err = signer.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, signed, algo)
	} else {
		sig, err = signer.Sign(rand.Reader, signed)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sshSigFields{magic: sshSigMagic, version: 1, pub: signer.PublicKey().Marshal(), namespace: namespace, hashAlg: hashAlg, sig: ssh.Marshal(sig)}
}

// fixedSSHSigner is a deterministic ed25519 key (the fuzz targets need
// the same key on every run).
func fixedSSHSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifyArmored(armored, message []byte) (*sshSig, error) {
	s, err := parseArmoredSSHSig(armored)
	if err != nil {
		return nil, err
	}
	return s, s.verify(message)
}

// Signatures made by the real ssh-keygen verify, over the right message
// only; and signatures this test makes are accepted by ssh-keygen, so the
// signer the fuzz seeds use writes the real format.
func TestSSHSigAgainstSSHKeygen(t *testing.T) {
	keygen := harness.RequireTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	msg := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@x> 1 +0000\ncommitter a <a@x> 1 +0000\n\nsigned\n")
	if err := os.WriteFile(filepath.Join(dir, "msg"), msg, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kt := range [][]string{{"-t", "ed25519"}, {"-t", "rsa", "-b", "3072"}, {"-t", "ecdsa", "-b", "256"}} {
		t.Run(kt[1], func(t *testing.T) {
			key := filepath.Join(dir, kt[1])
			if out, err := runIn(t, dir, nil, keygen, append([]string{"-q", "-N", "", "-f", key}, kt...)...); err != nil {
				t.Fatalf("ssh-keygen: %v\n%s", err, out)
			}
			for _, ns := range []string{"git", "file"} {
				_ = os.Remove(filepath.Join(dir, "msg.sig"))
				if out, err := runIn(t, dir, nil, keygen, "-Y", "sign", "-f", key, "-n", ns, "msg"); err != nil {
					t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
				}
				armored, err := os.ReadFile(filepath.Join(dir, "msg.sig"))
				if err != nil {
					t.Fatal(err)
				}
				s, err := verifyArmored(armored, msg)
				if err != nil {
					t.Fatalf("ssh-keygen's %s signature does not verify: %v", kt[1], err)
				}
				if s.namespace != ns {
					t.Errorf("namespace = %q, want %q", s.namespace, ns)
				}
				pub, _ := os.ReadFile(key + ".pub")
				want, _, _, _, _ := ssh.ParseAuthorizedKey(pub)
				if !bytes.Equal(s.pub.Marshal(), want.Marshal()) {
					t.Errorf("the signature names key %s, want %s", sshKeyName(s.pub), sshKeyName(want))
				}
				if _, err := verifyArmored(armored, append(msg, 'x')); err == nil {
					t.Error("the signature verifies over another message")
				}
			}
		})
	}

	// The other way round: ssh-keygen accepts what signFields makes.
	signer := fixedSSHSigner(t, 7)
	for _, h := range []string{"sha256", "sha512"} {
		sigFile := filepath.Join(dir, "ours-"+h+".sig")
		if err := os.WriteFile(sigFile, armorSSHSig(signFields(t, signer, "git", h, "", msg).blob()), 0o644); err != nil {
			t.Fatal(err)
		}
		allowed := filepath.Join(dir, "allowed")
		line := "me@example.com " + string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
		if err := os.WriteFile(allowed, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := runIn(t, dir, msg, keygen, "-Y", "verify", "-f", allowed, "-I", "me@example.com", "-n", "git", "-s", sigFile); err != nil {
			t.Fatalf("ssh-keygen refuses the test's own %s signature: %v\n%s", h, err, out)
		}
	}
}

func TestSSHSigRefusals(t *testing.T) {
	msg := []byte("the commit\n")
	ed := fixedSSHSigner(t, 1)
	good := signFields(t, ed, "git", "sha512", "", msg)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakSigner, err := ssh.NewSignerFromKey(weakKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: ed.PublicKey(), CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, fixedSSHSigner(t, 2)); err != nil {
		t.Fatal(err)
	}

	edit := func(f func(*sshSigFields)) []byte {
		c := good
		f(&c)
		return armorSSHSig(c.blob())
	}
	goodArmored := armorSSHSig(good.blob())
	tests := []struct {
		name    string
		armored []byte
		want    string // in the parse or verify error
	}{
		{"oversize", append(goodArmored, bytes.Repeat([]byte(" "), maxSSHSigBytes)...), "more than the"},
		{"no begin line", goodArmored[len(sshSigBegin):], "does not start with"},
		{"text after the end", append(bytes.Clone(goodArmored), "trailing"...), "does not end with"},
		{"two blocks", append(bytes.Clone(goodArmored), goodArmored...), "more than one armored block"},
		{"bad base64", []byte(sshSigBegin + "\n!!!!\n" + sshSigEnd), "not valid base64"},
		{"bad magic", edit(func(f *sshSigFields) { f.magic = "SSHSIX" }), `"SSHSIG" magic`},
		{"version 2", edit(func(f *sshSigFields) { f.version = 2 }), "version 2"},
		{"truncated", armorSSHSig(good.blob()[:40]), "truncated"},
		{"trailing bytes", edit(func(f *sshSigFields) { f.trailing = []byte{0} }), "after its signature field"},
		{"sha1", edit(func(f *sshSigFields) { f.hashAlg = "sha1" }), `"sha1"`},
		{"certificate", edit(func(f *sshSigFields) { f.pub = cert.Marshal() }), "certificate"},
		{"garbage key", edit(func(f *sshSigFields) { f.pub = []byte("nope") }), "public key"},
		{"garbage signature", edit(func(f *sshSigFields) { f.sig = []byte{0, 0, 0, 9} }), "signature field"},
		{"other message", edit(func(f *sshSigFields) { *f = signFields(t, ed, "git", "sha512", "", []byte("another commit\n")) }), "did not verify"},
		{"hash swapped", edit(func(f *sshSigFields) { f.hashAlg = "sha256" }), "did not verify"},
		{"namespace swapped", edit(func(f *sshSigFields) { f.namespace = "file" }), "did not verify"},
		{"reserved added", edit(func(f *sshSigFields) { f.reserved = "x" }), "did not verify"},
		{"key swapped", edit(func(f *sshSigFields) { f.pub = fixedSSHSigner(t, 3).PublicKey().Marshal() }), "did not verify"},
		{"rsa with sha1", edit(func(f *sshSigFields) { *f = signFields(t, rsaSigner, "git", "sha512", ssh.KeyAlgoRSA, msg) }), "only rsa-sha2-256 and rsa-sha2-512"},
		{"rsa 1024", edit(func(f *sshSigFields) { *f = signFields(t, weakSigner, "git", "sha512", ssh.KeyAlgoRSASHA512, msg) }), "1024 bits"},
		{"format of another key type", edit(func(f *sshSigFields) {
			var s ssh.Signature
			_ = ssh.Unmarshal(f.sig, &s)
			s.Format = ssh.KeyAlgoECDSA256
			f.sig = ssh.Marshal(&s)
		}), "does not belong"},
		{"trailing signature data", edit(func(f *sshSigFields) {
			var s ssh.Signature
			_ = ssh.Unmarshal(f.sig, &s)
			s.Rest = []byte{1, 0, 0, 0, 1}
			f.sig = ssh.Marshal(&s)
		}), "trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifyArmored(tt.armored, msg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	// The untouched signature, and RSA with either SHA-2, verify.
	if _, err := verifyArmored(goodArmored, msg); err != nil {
		t.Errorf("good signature: %v", err)
	}
	for _, algo := range []string{ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512} {
		if _, err := verifyArmored(armorSSHSig(signFields(t, rsaSigner, "git", "sha256", algo, msg).blob()), msg); err != nil {
			t.Errorf("RSA %s signature: %v", algo, err)
		}
	}
}
