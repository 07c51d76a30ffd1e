package gitsource_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// runTool runs a program with git isolated from the machine's
// configuration and returns its stdout.
func runTool(t *testing.T, dir string, stdin []byte, name string, args ...string) string {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=lockstep test", "GIT_AUTHOR_EMAIL=test@lockstep.invalid",
		"GIT_COMMITTER_NAME=lockstep test", "GIT_COMMITTER_EMAIL=test@lockstep.invalid")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// sshKey is a key pair made by ssh-keygen.
type sshKey struct {
	private string // path
	public  string // "ssh-ed25519 AAAA... comment"
	fpr     string // "SHA256:..."
}

func newSSHKey(t *testing.T, dir, name string, args ...string) sshKey {
	t.Helper()
	keygen := harness.RequireTool(t, "ssh-keygen", "openssh-client")
	p := filepath.Join(dir, name)
	runTool(t, dir, nil, keygen, append([]string{"-q", "-N", "", "-C", name + "@test", "-f", p}, args...)...)
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(runTool(t, dir, nil, keygen, "-l", "-E", "sha256", "-f", p+".pub"))
	return sshKey{private: p, public: strings.TrimSpace(string(pub)), fpr: fields[1]}
}

// gpgHome is a throwaway GnuPG home with the agent killed at the end. Its
// path is short: gpg-agent's socket path must fit in ~100 bytes.
type gpgHome struct {
	dir  string
	wrap string // a gpg.program for git that uses this home
	gpg  string
}

func newGPGHome(t *testing.T) *gpgHome {
	t.Helper()
	gpg := harness.RequireTool(t, "gpg", "gnupg")
	gpgconf := harness.RequireTool(t, "gpgconf", "gnupg")
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	h := &gpgHome{dir: dir, gpg: gpg}
	t.Cleanup(func() {
		cmd := exec.Command(gpgconf, "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+dir)
		_ = cmd.Run()
		_ = os.RemoveAll(dir)
	})
	h.wrap = filepath.Join(dir, "gpg-wrap")
	script := "#!/bin/sh\nexec '" + gpg + "' --homedir '" + dir + "' \"$@\"\n"
	if err := os.WriteFile(h.wrap, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *gpgHome) run(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	return runTool(t, h.dir, stdin, h.gpg, append([]string{"--homedir", h.dir, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
}

// newKey makes a signing key and returns its fingerprint and key ID.
func (h *gpgHome) newKey(t *testing.T, uid string) (fpr, keyID string) {
	t.Helper()
	h.run(t, nil, "--quick-gen-key", uid, "ed25519", "sign", "never")
	for line := range strings.SplitSeq(h.run(t, nil, "--with-colons", "--list-keys", uid), "\n") {
		f := strings.Split(line, ":")
		switch {
		case f[0] == "pub" && len(f) > 4:
			keyID = f[4]
		case f[0] == "fpr" && len(f) > 9 && fpr == "":
			fpr = f[9]
		}
	}
	if fpr == "" || keyID == "" {
		t.Fatalf("gpg did not list the new key %s", uid)
	}
	return fpr, keyID
}

// export writes the public keys to a file, armored or binary.
func (h *gpgHome) export(t *testing.T, file string, armored bool, fprs ...string) string {
	t.Helper()
	args := []string{"--export"}
	if armored {
		args = append(args, "--armor")
	}
	out := h.run(t, nil, append(args, fprs...)...)
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// signedRepo is a git server whose main branch holds commits signed in
// different ways, made with the real git, ssh-keygen and gpg.
type signedRepo struct {
	srv *gitserver.Server
	dir string // keys and trust files
	gpg *gpgHome
}

func newSignedRepo(t *testing.T) *signedRepo {
	t.Helper()
	harness.RequireTool(t, "git", "git")
	r := &signedRepo{srv: gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true}), dir: t.TempDir()}
	r.srv.Commit(t, "base", map[string]string{"a.txt": "a"})
	return r
}

func (r *signedRepo) commit(t *testing.T, msg string, signArgs ...string) string {
	t.Helper()
	args := append(signArgs, "commit", "--quiet", "--allow-empty", "-m", msg)
	if len(signArgs) == 0 {
		args = []string{"commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", msg}
	} else {
		args = append(args, "-S")
	}
	r.srv.Git(t, args...)
	sha := strings.TrimSpace(r.srv.Git(t, "rev-parse", "HEAD"))
	r.srv.Git(t, "push", "--quiet", "origin", "HEAD:refs/heads/main")
	return sha
}

func (r *signedRepo) sshCommit(t *testing.T, key sshKey, msg string) string {
	t.Helper()
	return r.commit(t, msg, "-c", "gpg.format=ssh", "-c", "user.signingKey="+key.private)
}

func (r *signedRepo) pgpCommit(t *testing.T, fpr, msg string) string {
	t.Helper()
	return r.commit(t, msg, "-c", "gpg.format=openpgp", "-c", "gpg.program="+r.gpg.wrap, "-c", "user.signingKey="+fpr)
}

// tamper writes a copy of commit sha with its message changed, keeping
// its signature header, pushes it to a branch and returns its SHA.
func (r *signedRepo) tamper(t *testing.T, sha, branch string) string {
	t.Helper()
	raw := r.srv.Git(t, "cat-file", "commit", sha)
	i := strings.Index(raw, "\n\n")
	if i < 0 {
		t.Fatalf("commit %s has no message", sha)
	}
	edited := raw[:i] + "\n\n" + "edited after signing: " + raw[i+2:]
	forged := strings.TrimSpace(runTool(t, r.srv.WorkDir, []byte(edited), "git", "hash-object", "-t", "commit", "-w", "--stdin"))
	if !strings.Contains(r.srv.Git(t, "cat-file", "commit", forged), "-----BEGIN ") {
		t.Fatalf("forged commit %s lost the signature header", forged)
	}
	r.srv.Git(t, "push", "--quiet", "origin", forged+":refs/heads/"+branch)
	return forged
}

// smuggle writes a copy of commit sha with a second committer line before
// the real one, keeping the signature: go-git decodes only the last, so
// without a check that the stored object is what go-git encodes, this copy
// under a new SHA would verify as the original (and slip past quarantine).
func (r *signedRepo) smuggle(t *testing.T, sha, branch string) string {
	t.Helper()
	raw := r.srv.Git(t, "cat-file", "commit", sha)
	i := strings.Index(raw, "\ncommitter ")
	if i < 0 {
		t.Fatalf("commit %s has no committer line", sha)
	}
	// Before the real one: go-git keeps the last of repeated headers.
	edited := raw[:i+1] + "committer Mallory <mallory@example.com> 1700000000 +0000\n" + raw[i+1:]
	forged := strings.TrimSpace(runTool(t, r.srv.WorkDir, []byte(edited), "git", "hash-object", "--literally", "-t", "commit", "-w", "--stdin"))
	r.srv.Git(t, "push", "--quiet", "origin", forged+":refs/heads/"+branch)
	return forged
}

func (r *signedRepo) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifySource returns a Source over the repo with the given trusted keys,
// with every commit in shas in its cache.
func (r *signedRepo) verifySource(t *testing.T, v gitsource.VerifyOptions, shas ...string) *gitsource.Source {
	t.Helper()
	src, _ := newSource(t, r.srv.URL, func(o *gitsource.Options) { o.Verify = v })
	if _, err := src.Fetch(ctx(t)); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for _, sha := range shas {
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha}); err != nil {
			t.Fatalf("Resolve %s: %v", sha, err)
		}
	}
	return src
}

func TestVerifyCommit(t *testing.T) {
	r := newSignedRepo(t)
	r.gpg = newGPGHome(t)
	alice := newSSHKey(t, r.dir, "alice", "-t", "ed25519")
	bob := newSSHKey(t, r.dir, "bob", "-t", "rsa", "-b", "3072")
	carol := newSSHKey(t, r.dir, "carol", "-t", "ed25519")
	dave := newSSHKey(t, r.dir, "dave", "-t", "ed25519")
	erin := newSSHKey(t, r.dir, "erin", "-t", "ed25519")
	trustedFpr, _ := r.gpg.newKey(t, "Test <t@example.com>")
	secondFpr, _ := r.gpg.newKey(t, "Second <second@example.com>")
	strangerFpr, strangerID := r.gpg.newKey(t, "Stranger <s@example.com>")

	signers := r.write(t, "allowed_signers", strings.Join([]string{
		"# who may sign what lockstep deploys",
		"alice@example.com " + alice.public,
		`"bob@example.com,ops@*" namespaces="git" ` + bob.public,
		`carol@example.com namespaces="file" ` + carol.public,
		`dave@example.com valid-before="20200101Z" ` + dave.public,
		"",
	}, "\n"))
	// Two exports concatenated: both blocks are read.
	keyring := r.write(t, "trusted.asc", r.gpg.run(t, nil, "--export", "--armor", trustedFpr)+r.gpg.run(t, nil, "--export", "--armor", secondFpr))
	binKeyring := r.gpg.export(t, filepath.Join(r.dir, "trusted.gpg"), false, trustedFpr)

	c := map[string]string{
		"ssh":          r.sshCommit(t, alice, "ssh signed"),
		"rsa":          r.sshCommit(t, bob, "rsa signed"),
		"pgp":          r.pgpCommit(t, trustedFpr, "pgp signed"),
		"unsigned":     r.commit(t, "unsigned"),
		"ssh stranger": r.sshCommit(t, erin, "signed by a stranger"),
		"pgp stranger": r.pgpCommit(t, strangerFpr, "pgp signed by a stranger"),
		"file only":    r.sshCommit(t, carol, "signed by a key for files only"),
		"valid before": r.sshCommit(t, dave, "signed by a key valid before 2020"),
		"pgp second":   r.pgpCommit(t, secondFpr, "pgp signed by the second trusted key"),
	}
	c["ssh tampered"] = r.tamper(t, c["ssh"], "forged-ssh")
	c["pgp tampered"] = r.tamper(t, c["pgp"], "forged-pgp")
	c["ssh smuggled"] = r.smuggle(t, c["ssh"], "smuggled-ssh")
	var all []string
	for _, sha := range c {
		if sha != "" {
			all = append(all, sha)
		}
	}
	src := r.verifySource(t, gitsource.VerifyOptions{OpenPGPKeyring: keyring, SSHAllowedSigners: signers}, all...)

	trusted := []struct {
		commit string
		want   gitsource.Signer
	}{
		{"ssh", gitsource.Signer{Kind: "ssh", Key: alice.fpr, Principal: "alice@example.com"}},
		{"rsa", gitsource.Signer{Kind: "ssh", Key: bob.fpr, Principal: "bob@example.com,ops@*"}},
		{"pgp", gitsource.Signer{Kind: "openpgp", Key: trustedFpr, Principal: "Test <t@example.com>"}},
		{"pgp second", gitsource.Signer{Kind: "openpgp", Key: secondFpr, Principal: "Second <second@example.com>"}},
	}
	for _, tt := range trusted {
		got, err := src.VerifyCommit(c[tt.commit], gitsource.RolePinned)
		if err != nil {
			t.Errorf("%s commit: VerifyCommit: %v", tt.commit, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s commit signed by %+v, want %+v", tt.commit, got, tt.want)
		}
		if !strings.Contains(got.String(), tt.want.Key) {
			t.Errorf("Signer.String() = %q does not name the key", got)
		}
	}

	refused := []struct {
		commit string
		role   string
		signer string   // SignatureError.Signer contains
		reason []string // the message contains
	}{
		{"unsigned", gitsource.RoleHead, "unsigned", []string{"not signed", "the branch head must be signed", signers, keyring}},
		{"ssh stranger", gitsource.RolePinned, "ssh-ed25519 " + erin.fpr, []string{"not in " + signers}},
		{"pgp stranger", gitsource.RolePinned, "OpenPGP key 0x" + strangerID, []string{strangerFpr, "not in " + keyring}},
		{"file only", gitsource.RolePinned, carol.fpr, []string{signers, `line 4 allows the key only for namespaces="file", not git`}},
		{"valid before", gitsource.RoleHead, dave.fpr, []string{signers, "line 5", "valid-before", "2020-01-01T00:00:00Z"}},
		{"ssh tampered", gitsource.RolePinned, alice.fpr, []string{"does not match the commit", "altered after signing"}},
		{"pgp tampered", gitsource.RolePinned, "OpenPGP key 0x", []string{"does not match the commit", "altered after signing"}},
		{"ssh smuggled", gitsource.RolePinned, "non-canonical", []string{"non-canonical commit object", "headers lockstep cannot account for", "crafted by hand"}},
	}
	for _, tt := range refused {
		sha := c[tt.commit]
		_, err := src.VerifyCommit(sha, tt.role)
		var se *gitsource.SignatureError
		if !errors.As(err, &se) {
			t.Errorf("%s commit: err = %v, want a *SignatureError", tt.commit, err)
			continue
		}
		msg := err.Error()
		if se.Commit != sha || se.Role != tt.role || !strings.Contains(se.Signer, tt.signer) {
			t.Errorf("%s commit: %+v, want commit %s, role %s, signer containing %q", tt.commit, se, sha, tt.role, tt.signer)
		}
		wants := append([]string{tt.role + " " + sha[:12], sha}, tt.reason...)
		if tt.signer != "unsigned" {
			wants = append(wants, tt.signer)
		}
		for _, want := range wants {
			if !strings.Contains(msg, want) {
				t.Errorf("%s commit: error %q\ndoes not contain %q", tt.commit, msg, want)
			}
		}
		if p, ok := err.(interface{ Permanent() bool }); !ok || !p.Permanent() {
			t.Errorf("%s commit: a SignatureError must be permanent", tt.commit)
		}
	}

	// A binary keyring works as well, and an SSH signature is refused when
	// only OpenPGP keys are trusted.
	pgpOnly := r.verifySource(t, gitsource.VerifyOptions{OpenPGPKeyring: binKeyring}, c["pgp"], c["ssh"])
	if got, err := pgpOnly.VerifyCommit(c["pgp"], gitsource.RolePinned); err != nil || got.Key != trustedFpr {
		t.Errorf("binary keyring: VerifyCommit = %+v, %v; want signed by %s", got, err, trustedFpr)
	}
	_, err := pgpOnly.VerifyCommit(c["ssh"], gitsource.RoleHead)
	var se *gitsource.SignatureError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "no ssh_allowed_signers file is set") || !strings.Contains(err.Error(), alice.fpr) {
		t.Errorf("SSH-signed commit with only a keyring: err = %v, want a refusal naming the key and the missing file", err)
	}

	// Off, or asked about a commit the cache lacks: an error, not a refusal.
	off := r.verifySource(t, gitsource.VerifyOptions{})
	if _, err := off.VerifyCommit(c["ssh"], gitsource.RoleHead); err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), "no trusted keys") {
		t.Errorf("VerifyCommit with verification off: err = %v", err)
	}
	if _, err := pgpOnly.VerifyCommit(c["unsigned"], gitsource.RoleHead); err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), "not in the cache") {
		t.Errorf("VerifyCommit of an uncached commit: err = %v", err)
	}
}

func TestVerifyCommitExpiredAndRevokedPGPKeys(t *testing.T) {
	r := newSignedRepo(t)
	r.gpg = newGPGHome(t)
	expiring, _ := r.gpg.newKey(t, "Expiring <e@example.com>")
	revoked, _ := r.gpg.newKey(t, "Revoked <r@example.com>")
	expiredCommit := r.pgpCommit(t, expiring, "signed, then the key expired")
	revokedCommit := r.pgpCommit(t, revoked, "signed, then the key was revoked")

	// Both signatures were good when made; the keys go bad afterwards.
	r.gpg.run(t, nil, "--quick-set-expire", expiring, "seconds=1")
	rev, err := os.ReadFile(filepath.Join(r.gpg.dir, "openpgp-revocs.d", revoked+".rev"))
	if err != nil {
		t.Fatalf("gpg made no revocation certificate: %v", err)
	}
	// gpg guards the stored certificate with a leading colon.
	r.gpg.run(t, bytes.ReplaceAll(rev, []byte(":-----BEGIN"), []byte("-----BEGIN")), "--import")
	keyring := r.gpg.export(t, filepath.Join(r.dir, "keys.asc"), true, expiring, revoked)
	time.Sleep(2 * time.Second) // past the expiry

	src := r.verifySource(t, gitsource.VerifyOptions{OpenPGPKeyring: keyring}, expiredCommit, revokedCommit)
	for sha, want := range map[string]string{expiredCommit: "has expired", revokedCommit: "is revoked"} {
		_, err := src.VerifyCommit(sha, gitsource.RolePinned)
		var se *gitsource.SignatureError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), sha) {
			t.Errorf("VerifyCommit(%s): err = %v, want a *SignatureError saying %q", sha, err, want)
		}
	}
}

func TestNewRefusesBadTrustFiles(t *testing.T) {
	harness.RequireTool(t, "git", "git")
	dir := t.TempDir()
	key := newSSHKey(t, dir, "k", "-t", "ed25519")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badSigners := write("bad_signers", "ok@example.com "+key.public+"\n"+
		"ca@example.com cert-authority "+key.public+"\n"+
		"x@example.com no-touch-required "+key.public+"\n"+
		"y@example.com ssh-ed25519 AAAAnotbase64!\n")
	tests := []struct {
		name string
		v    gitsource.VerifyOptions
		want []string
	}{
		{"bad signer lines", gitsource.VerifyOptions{SSHAllowedSigners: badSigners},
			[]string{badSigners, "3 bad lines", "line 2: cert-authority: SSH certificates are not supported", `line 3: unknown option "no-touch-required"`, "line 4: ssh-ed25519 key"}},
		{"missing signers file", gitsource.VerifyOptions{SSHAllowedSigners: filepath.Join(dir, "nope")},
			[]string{"ssh_allowed_signers", filepath.Join(dir, "nope"), "no such file"}},
		{"signers file without keys", gitsource.VerifyOptions{SSHAllowedSigners: write("comments", "# nobody yet\n\n")},
			[]string{"holds no keys"}},
		{"empty keyring", gitsource.VerifyOptions{OpenPGPKeyring: write("empty.asc", "\n")},
			[]string{filepath.Join(dir, "empty.asc"), "is empty", "gpg --export"}},
		{"kbx keyring", gitsource.VerifyOptions{OpenPGPKeyring: write("pubring.kbx", "\x00\x00\x00\x20\x01\x01\x00\x02KBXf")},
			[]string{"not an OpenPGP keyring", "pubring.kbx"}},
		{"bad armor", gitsource.VerifyOptions{OpenPGPKeyring: write("bad.asc", "\n\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n")},
			[]string{"bad.asc", "block at line 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gitsource.New(gitsource.Options{URL: "https://git.example.com/infra.git", StateDir: t.TempDir(), Verify: tt.v})
			if err == nil {
				t.Fatal("New accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}

	// A private key in the keyring is refused.
	h := newGPGHome(t)
	fpr, _ := h.newKey(t, "Secret <s@example.com>")
	secret := write("secret.asc", h.run(t, nil, "--export-secret-keys", "--armor", fpr))
	_, err := gitsource.New(gitsource.Options{URL: "https://git.example.com/infra.git", StateDir: t.TempDir(), Verify: gitsource.VerifyOptions{OpenPGPKeyring: secret}})
	if err == nil || !strings.Contains(err.Error(), "PRIVATE key") || !strings.Contains(err.Error(), secret) {
		t.Errorf("keyring holding a private key: err = %v", err)
	}
}
