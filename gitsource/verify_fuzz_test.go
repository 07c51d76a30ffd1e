package gitsource

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// The fuzz targets below attack what a pusher controls (signatures and
// commit objects) and what an operator writes (allowed_signers). Keys are
// fixed (ed25519 from a constant seed, an OpenPGP key checked in under
// testdata/verify), so a run is repeatable and each iteration is cheap: no
// subprocess, no disk.

// fuzzNow is when the fuzz targets judge OpenPGP key validity: after the
// fixture signature was made, and fixed, so runs are repeatable.
var fuzzNow = time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)

const fuzzSeedMessage = "tree 08585692ce06452da6f82ae66b90d98b55536fca\nauthor a <a@x> 1704067200 +0000\ncommitter a <a@x> 1704067200 +0000\n\nseed\n"

// fuzzSSHSeed is a signature the fuzzer starts from, and so the only kind
// of signature it may ever get verified.
type fuzzSSHSeed struct {
	message string
	fields  sshSigFields
}

func fuzzSSHSeeds(t testing.TB) []fuzzSSHSeed {
	signer := fixedSSHSigner(t, 42)
	var seeds []fuzzSSHSeed
	for _, s := range []struct{ ns, hash, msg string }{
		{"git", "sha512", fuzzSeedMessage},
		{"git", "sha256", fuzzSeedMessage},
		{"git", "sha512", ""},
		{"file", "sha512", fuzzSeedMessage},
	} {
		seeds = append(seeds, fuzzSSHSeed{message: s.msg, fields: signFields(t, signer, s.ns, s.hash, "", []byte(s.msg))})
	}
	return seeds
}

// FuzzSSHSig feeds signature bytes (armored, or the raw SSHSIG blob) and a
// message to the SSHSIG parser and verifier, against a fixed key. It must
// never panic, never read past its input, and never accept a signature it
// was not given: whatever verifies under the fixed key is a seed's
// signature over that seed's message and namespace.
//
// Seeds: f.Add below and testdata/fuzz/FuzzSSHSig.
func FuzzSSHSig(f *testing.F) {
	seeds := fuzzSSHSeeds(f)
	for _, s := range seeds {
		f.Add(armorSSHSig(s.fields.blob()), []byte(s.message))
		f.Add(s.fields.blob(), []byte(s.message))
	}
	f.Add(armorSSHSig(seeds[0].fields.blob()), []byte(fuzzSeedMessage+"x"))
	f.Add([]byte(sshSigBegin+"\nU1NIU0lH\n"+sshSigEnd), []byte(""))
	trusted := fixedSSHSigner(f, 42).PublicKey().Marshal()

	f.Fuzz(func(t *testing.T, sigBytes, message []byte) {
		var sig *sshSig
		var err error
		if bytes.HasPrefix(bytes.TrimSpace(sigBytes), []byte("-----")) {
			sig, err = parseArmoredSSHSig(sigBytes)
		} else {
			sig, err = parseSSHSigBlob(sigBytes)
		}
		if err != nil {
			if sig != nil {
				t.Fatalf("a refused signature came with a value: %+v", sig)
			}
			return
		}
		if sig.pub == nil || sig.sig == nil || (sig.hashAlg != "sha256" && sig.hashAlg != "sha512") {
			t.Fatalf("an accepted signature lacks a part: %+v", sig)
		}
		verr := sig.verify(message)
		if again := sig.verify(message); (verr == nil) != (again == nil) {
			t.Fatalf("verification is not deterministic: %v, then %v", verr, again)
		}
		if verr != nil || !bytes.Equal(sig.pub.Marshal(), trusted) {
			return
		}
		for _, s := range seeds {
			if string(message) == s.message && sig.namespace == s.fields.namespace && sig.hashAlg == s.fields.hashAlg &&
				len(sig.reserved) == 0 && bytes.Equal(ssh.Marshal(sig.sig), s.fields.sig) {
				return
			}
		}
		t.Fatalf("forgery: a signature the fuzzer made verifies under the fixed key\nnamespace %q hash %s message %q", sig.namespace, sig.hashAlg, message)
	})
}

// FuzzAllowedSigners feeds allowed_signers files to the parser. It must
// never panic; it answers the same twice; an accepted file has at least
// one key, each line findable by its own key, with the same verdict each
// time it is asked whether a signature at a fixed time is allowed.
//
// Seeds: f.Add below and testdata/fuzz/FuzzAllowedSigners.
func FuzzAllowedSigners(f *testing.F) {
	k1 := authorizedKey(fixedSSHSigner(f, 1))
	k2 := authorizedKey(fixedSSHSigner(f, 2))
	f.Add([]byte("alice@example.com " + k1 + "\n"))
	f.Add([]byte("# team\n\"Bob B <b@x>,ops@*\" namespaces=\"git,file\",valid-after=\"20240101\",valid-before=\"202501021530Z\" " + k2 + " laptop\r\n"))
	f.Add([]byte("a@x cert-authority " + k1 + "\nb@x namespaces=\"fi\\\"le\" " + k2 + "\n"))
	f.Add([]byte("a@x namespaces=\"*,!git\" " + k1 + "\na@x " + k1 + "\n"))
	f.Add([]byte("\"unterminated " + k1))
	f.Add([]byte("a@x ssh-ed25519 AAAA\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAllowedSigners("allowed_signers", data)
		a2, err2 := parseAllowedSigners("allowed_signers", data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("two parses disagree: %v / %v", err, err2)
		}
		if err != nil {
			if a != nil {
				t.Fatal("a refused file came with a value")
			}
			if !strings.Contains(err.Error(), "allowed_signers") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if !reflect.DeepEqual(a, a2) {
			t.Fatalf("two parses of the same file differ:\n%+v\n%+v", a, a2)
		}
		if len(a.entries) == 0 {
			t.Fatal("an accepted file has no keys")
		}
		at := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
		for _, e := range a.entries {
			if e.principals == "" || e.key == nil || e.keyBlob != string(e.key.Marshal()) || e.line < 1 {
				t.Fatalf("incomplete entry %+v", e)
			}
			if !e.validAfter.IsZero() && !e.validBefore.IsZero() && !e.validBefore.After(e.validAfter) {
				t.Fatalf("entry at line %d can never sign: %v..%v", e.line, e.validAfter, e.validBefore)
			}
			found := false
			for _, m := range a.lookup(e.key) {
				found = found || m.line == e.line
			}
			if !found {
				t.Fatalf("line %d is not found by its own key", e.line)
			}
			if e.permits("git", at) != e.permits("git", at) {
				t.Fatal("permits is not deterministic")
			}
		}
	})
}

// fuzzTrust is the fixed trust of FuzzVerifyCommit: the OpenPGP fixture
// key and the seed-42 SSH key.
func fuzzTrust(t testing.TB) (*trustedKeys, [][]byte) {
	keyring, err := os.ReadFile("testdata/verify/pgp-trusted.asc")
	if err != nil {
		t.Fatal(err)
	}
	pgp, err := parseKeyring("pgp-trusted.asc", keyring)
	if err != nil {
		t.Fatal(err)
	}
	signers, err := parseAllowedSigners("allowed_signers", []byte("fuzz@example.com "+authorizedKey(fixedSSHSigner(t, 42))+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	pgpCommit, err := os.ReadFile("testdata/verify/pgp-signed.commit")
	if err != nil {
		t.Fatal(err)
	}
	return &trustedKeys{pgpFile: "pgp-trusted.asc", pgp: pgp, ssh: signers}, [][]byte{pgpCommit, fuzzSSHCommit(t)}
}

// fuzzSSHCommit is fuzzSeedMessage signed by the seed-42 key, as git
// stores it: the armored signature in a gpgsig header, continuation
// lines indented by one space.
func fuzzSSHCommit(t testing.TB) []byte {
	seed := fuzzSSHSeeds(t)[0]
	armored := strings.TrimSuffix(string(armorSSHSig(seed.fields.blob())), "\n")
	header := "gpgsig " + strings.ReplaceAll(armored, "\n", "\n ") + "\n"
	i := strings.Index(seed.message, "\n\n")
	return []byte(seed.message[:i+1] + header + seed.message[i+1:])
}

func decodeCommit(raw []byte) (*object.Commit, error) {
	obj := &plumbing.MemoryObject{}
	obj.SetType(plumbing.CommitObject)
	if _, err := obj.Write(raw); err != nil {
		return nil, err
	}
	c := &object.Commit{}
	return c, c.Decode(obj)
}

// The fuzz fixtures verify, and variants of them are refused for the
// right reason.
func TestVerifyCommitFixtures(t *testing.T) {
	trust, seeds := fuzzTrust(t)
	want := []Signer{
		{Kind: "openpgp", Key: "E5B46B3E0FEAD582244B31D20B67A665D8DFE856", Principal: "Fuzz Fixture <fuzz@lockstep.invalid>"},
		{Kind: "ssh", Key: ssh.FingerprintSHA256(fixedSSHSigner(t, 42).PublicKey()), Principal: "fuzz@example.com"},
	}
	for i, raw := range seeds {
		c, err := decodeCommit(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := verifyCommit(trust, c, RolePinned, fuzzNow)
		if err != nil || got != want[i] {
			t.Errorf("seed commit %d: %+v, %v; want %+v", i, got, err, want[i])
		}
	}

	pgpCommit, sshCommit := string(seeds[0]), string(seeds[1])
	sshSig := sshCommit[strings.Index(sshCommit, "gpgsig ") : strings.Index(sshCommit, "\n\n")+1]
	withHeader := func(header string) string {
		i := strings.Index(pgpCommit, "gpgsig ")
		return pgpCommit[:i] + header + pgpCommit[i:]
	}
	sshOnly := &trustedKeys{ssh: trust.ssh}
	tests := []struct {
		name   string
		trust  *trustedKeys
		raw    string
		signer string
		reason string
	}{
		{"edited after signing", trust, strings.Replace(sshCommit, "\nseed\n", "\nseeds\n", 1), "ssh-ed25519 SHA256:", "does not match the commit"},
		{"two signatures", trust, withHeader(sshSig), "several signatures", "2 signature blocks"},
		{"only SSH keys trusted", sshOnly, pgpCommit, "OpenPGP key 0x0B67A665D8DFE856 (fingerprint E5B46B3E0FEAD582244B31D20B67A665D8DFE856)", "no openpgp_keyring is set"},
		{"X.509", trust, strings.Replace(pgpCommit, "BEGIN PGP SIGNATURE", "BEGIN SIGNED MESSAGE", 1), "X.509", "does not verify"},
		{"broken armor", trust, strings.Replace(pgpCommit, "iHUEABYIAB0W", "iHUE!!!!AB0W", 1), "malformed OpenPGP signature", "cannot be read"},
		{"SSH namespace file", trust, strings.Replace(sshCommit, sshSig, "gpgsig "+strings.ReplaceAll(strings.TrimSpace(string(armorSSHSig(fuzzSSHSeeds(t)[3].fields.blob()))), "\n", "\n ")+"\n", 1), "ssh-ed25519", `namespace "file"`},
		{"unsigned", trust, fuzzSeedMessage, "unsigned", "not signed"},
	}
	for _, tt := range tests {
		c, err := decodeCommit([]byte(tt.raw))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		_, err = verifyCommit(tt.trust, c, RoleHead, fuzzNow)
		var se *SignatureError
		if !errors.As(err, &se) || !strings.Contains(se.Signer, tt.signer) || !strings.Contains(se.Reason, tt.reason) {
			t.Errorf("%s: err = %v (%+v), want signer %q and reason %q", tt.name, err, se, tt.signer, tt.reason)
		}
	}
}

// FuzzVerifyCommit feeds raw commit objects, decoded by go-git, to the
// commit verifier with fixed trusted keys. It must never panic; a commit
// without a signature is never trusted; a refusal is a *SignatureError
// about that commit; and what is trusted is exactly a seed commit's
// signed content, signed by the seed's key: editing any signed byte of a
// seed commit must be refused.
//
// Seeds: the two signed fixtures (OpenPGP, SSH), f.Add variants and
// testdata/fuzz/FuzzVerifyCommit.
func FuzzVerifyCommit(f *testing.F) {
	trust, seeds := fuzzTrust(f)
	signedPayloads := map[string]string{} // signed content -> signer kind
	for _, raw := range seeds {
		f.Add(raw)
		c, err := decodeCommit(raw)
		if err != nil {
			f.Fatal(err)
		}
		s, err := verifyCommit(trust, c, RolePinned, fuzzNow)
		if err != nil {
			f.Fatalf("seed commit does not verify: %v", err)
		}
		payload := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(payload); err != nil {
			f.Fatal(err)
		}
		b, _ := readObject(payload)
		signedPayloads[string(b)] = s.Kind
	}
	f.Add([]byte(fuzzSeedMessage))
	f.Add(bytes.Replace(seeds[0], []byte("fixture key"), []byte("fixture kez"), 1))
	f.Add(bytes.Replace(seeds[1], []byte("\n\nseed"), []byte("\ngpgsig -----BEGIN PGP SIGNATURE-----\n -----END PGP SIGNATURE-----\n\nseed"), 1))

	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			return
		}
		c, err := decodeCommit(raw)
		if err != nil {
			return
		}
		signer, err := verifyCommit(trust, c, RoleHead, fuzzNow)
		if err != nil {
			var se *SignatureError
			if errors.As(err, &se) {
				if se.Commit != c.Hash.String() || se.Role != RoleHead || se.Signer == "" || se.Reason == "" {
					t.Fatalf("incomplete refusal %+v", se)
				}
				if strings.TrimSpace(c.PGPSignature) == "" && se.Signer != "unsigned" {
					t.Fatalf("a commit without a signature is refused as signed by %q", se.Signer)
				}
			}
			return
		}
		if strings.TrimSpace(c.PGPSignature) == "" {
			t.Fatal("a commit without a signature is trusted")
		}
		payload := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(payload); err != nil {
			t.Fatal(err)
		}
		b, _ := readObject(payload)
		kind, ok := signedPayloads[string(b)]
		if !ok {
			t.Fatalf("forgery: a commit with content no trusted key signed is trusted, signed by %v:\n%s", signer, b)
		}
		if kind != signer.Kind {
			t.Fatalf("the %s-signed seed content is trusted as signed by %v", kind, signer)
		}
	})
}
