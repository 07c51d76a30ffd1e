package gitsource_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/sshgit"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// sshRepo is a repository served over real SSH (sshgit running the real
// git-upload-pack), with history made through gitserver's helpers.
type sshRepo struct {
	repo   *gitserver.Server
	srv    *sshgit.Server
	dir    string // keys and known_hosts files
	key    sshgit.ClientKey
	encKey sshgit.ClientKey // same server accepts it; passphrase in passFile
	pass   string
	url    string
	shas   []string // main's history, oldest first
}

const passphrase = "correct horse battery"

func startSSHRepo(t *testing.T, hostKeys ...sshgit.KeyType) sshRepo {
	t.Helper()
	sshgit.RequireGit(t)
	r := sshRepo{dir: t.TempDir()}
	r.repo = gitserver.Start(t, gitserver.Options{})
	r.shas = commitN(t, r.repo, 3, "c")
	r.repo.Tag(t, "v1", r.shas[0])
	r.key = sshgit.WriteClientKey(t, r.dir, "id_ed25519", sshgit.ED25519, "")
	r.encKey = sshgit.WriteClientKey(t, r.dir, "id_ecdsa_enc", sshgit.ECDSA, passphrase)
	r.pass = r.write(t, "passphrase", passphrase+"\n")
	var signers []ssh.Signer
	for _, kt := range hostKeys {
		signers = append(signers, sshgit.NewSigner(t, kt))
	}
	r.srv = sshgit.Start(t, sshgit.Options{
		Root:           filepath.Dir(r.repo.BareDir),
		HostKeys:       signers,
		AuthorizedKeys: []ssh.PublicKey{r.key.Public, r.encKey.Public},
	})
	r.url = r.srv.URL(gitserver.RepoName)
	return r
}

func (r sshRepo) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// source returns a Source on the SSH URL using the plain key and the given
// known_hosts content.
func (r sshRepo) source(t *testing.T, knownHosts string) (*gitsource.Source, string) {
	t.Helper()
	kh := r.write(t, "known_hosts", knownHosts)
	return newSource(t, r.url, func(o *gitsource.Options) {
		o.Auth = gitsource.Auth{SSHKey: r.key.Path, KnownHosts: kh}
	})
}

// exercise runs every network operation of a Source and checks results.
func (r sshRepo) exercise(t *testing.T, src *gitsource.Source) {
	t.Helper()
	head, err := src.Head(ctx(t))
	if err != nil || head != r.shas[2] {
		t.Fatalf("Head over ssh = %s, %v; want %s", head, err, r.shas[2])
	}
	if got, err := src.Fetch(ctx(t)); err != nil || got != r.shas[2] {
		t.Fatalf("Fetch over ssh = %s, %v; want %s", got, err, r.shas[2])
	}
	// An older SHA the server will not send by SHA: found by deepening.
	if got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: r.shas[1]}); err != nil || got != r.shas[1] {
		t.Fatalf("Resolve(%s) over ssh = %s, %v", r.shas[1], got, err)
	}
	if got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: "v1"}); err != nil || got != r.shas[0] {
		t.Fatalf("Resolve(v1) over ssh = %s, %v; want %s", got, err, r.shas[0])
	}
	dir, err := src.Materialize(ctx(t), r.shas[1])
	if err != nil {
		t.Fatalf("Materialize over ssh: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "counter.txt")); err != nil || string(data) != "c 1" {
		t.Fatalf("release of %s: counter.txt = %q, %v; want %q", r.shas[1], data, err, "c 1")
	}
}

func TestSSHCloneVerifiesHostKey(t *testing.T) {
	r := startSSHRepo(t) // one ed25519 host key
	if r.srv.Port == 22 || !strings.Contains(r.url, ":"+strconv.Itoa(r.srv.Port)+"/") {
		t.Fatalf("URL %s does not use the server's non-22 port %d", r.url, r.srv.Port)
	}
	key := r.srv.HostKeys()[0]
	tests := []struct {
		name       string
		knownHosts string
	}{
		{"plain entry", r.srv.KnownHostsLine(key) + "\n"},
		{"hashed entry", r.srv.HashedKnownHostsLine(key) + "\n"},
		{"among other hosts", "# fleet hosts\ngit.example.com " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshgit.NewSigner(t, sshgit.ED25519).PublicKey()))) +
			"\n" + r.srv.HashedKnownHostsLine(key) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "plain entry" && !strings.HasPrefix(tt.knownHosts, "[127.0.0.1]:"+strconv.Itoa(r.srv.Port)+" ssh-ed25519 ") {
				t.Fatalf("plain entry %q is not of the form [127.0.0.1]:PORT ssh-ed25519 ...", tt.knownHosts)
			}
			src, _ := r.source(t, tt.knownHosts)
			r.exercise(t, src)
		})
	}
}

// TestSSHHostKeyAlgorithmNegotiation: the server offers ed25519, ECDSA and
// RSA host keys; known_hosts holds only one of them. Without restricting
// the offered algorithms the client would pick ECDSA and refuse a correct
// server whose known_hosts entry is ed25519 (e2e/sshgit's
// TestHostKeyAlgorithmPitfall shows that trap).
func TestSSHHostKeyAlgorithmNegotiation(t *testing.T) {
	r := startSSHRepo(t, sshgit.ED25519, sshgit.ECDSA, sshgit.RSA)
	for _, keyType := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA} {
		t.Run(keyType, func(t *testing.T) {
			key := r.srv.HostKey(t, keyType)
			src, _ := r.source(t, r.srv.KnownHostsLine(key)+"\n")
			head, err := src.Head(ctx(t))
			if err != nil || head != r.shas[2] {
				t.Fatalf("Head with only an %s key in known_hosts = %s, %v", keyType, head, err)
			}
			if got, err := src.Fetch(ctx(t)); err != nil || got != r.shas[2] {
				t.Fatalf("Fetch with only an %s key in known_hosts = %s, %v", keyType, got, err)
			}
		})
	}
}

func TestSSHChangedHostKeyRefused(t *testing.T) {
	r := startSSHRepo(t)
	impostor := sshgit.NewSigner(t, sshgit.ED25519).PublicKey()
	for _, line := range []string{r.srv.KnownHostsLine(impostor), r.srv.HashedKnownHostsLine(impostor)} {
		src, state := r.source(t, line+"\n")
		r.srv.ResetStats()
		_, err := src.Head(ctx(t))
		var hkErr *gitsource.HostKeyError
		if !errors.As(err, &hkErr) {
			t.Fatalf("Head against a changed host key: err = %v, want a *gitsource.HostKeyError", err)
		}
		msg := err.Error()
		t.Logf("changed host key: %v", err)
		for _, want := range []string{
			"127.0.0.1:" + strconv.Itoa(r.srv.Port), // the host, with its port
			"offered an ssh-ed25519 key " + ssh.FingerprintSHA256(r.srv.HostKeys()[0]),
			ssh.FingerprintSHA256(impostor) + " (line 1)", // what known_hosts holds
			"never updates known_hosts",
			"never trusts a host key on first use",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("error does not contain %q:\n%s", want, msg)
			}
		}
		// Not permanent: the agent would then wait for a new commit, while
		// the fix is an edit of known_hosts that a retry picks up.
		var permanent interface{ Permanent() bool }
		if errors.As(err, &permanent) && permanent.Permanent() {
			t.Errorf("a refused host key is classified permanent: %v", err)
		}
		if _, err := src.Fetch(ctx(t)); !errors.As(err, &hkErr) {
			t.Errorf("Fetch against a changed host key: err = %v, want a *gitsource.HostKeyError", err)
		}
		if st := r.srv.Stats(); st.Authenticated != 0 || st.UploadPacks != 0 {
			t.Errorf("server stats %+v: the client went past the host key check", st)
		}
		// Resolving a SHA must not go on to deepen the history after a
		// refused host key: each attempt would be refused the same way.
		r.srv.ResetStats()
		if _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: r.shas[1]}); !errors.As(err, &hkErr) {
			t.Errorf("Resolve against a changed host key: err = %v, want a *gitsource.HostKeyError", err)
		}
		if st := r.srv.Stats(); st.Connections != 1 {
			t.Errorf("Resolve against a changed host key made %d connections, want 1 (no deepening)", st.Connections)
		}
		if data, err := os.ReadFile(filepath.Join(r.dir, "known_hosts")); err != nil || string(data) != line+"\n" {
			t.Errorf("known_hosts was changed: %q, %v", data, err)
		}
		if cacheHas(t, state, r.shas[2]) {
			t.Errorf("objects were fetched from a server with the wrong host key")
		}
	}

	// The operator checks the new key and fixes known_hosts: the same
	// Source connects without a restart.
	src, _ := r.source(t, r.srv.KnownHostsLine(impostor)+"\n")
	if _, err := src.Head(ctx(t)); err == nil {
		t.Fatal("Head against a changed host key succeeded")
	}
	r.write(t, "known_hosts", r.srv.KnownHostsLine(r.srv.HostKeys()[0])+"\n")
	if head, err := src.Head(ctx(t)); err != nil || head != r.shas[2] {
		t.Fatalf("Head after known_hosts was fixed = %s, %v", head, err)
	}
}

func TestSSHUnknownHostRefused(t *testing.T) {
	r := startSSHRepo(t)
	other := "git.example.com " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.srv.HostKeys()[0])))
	// Same key, but for the default port: a non-22 port is a different host.
	samePort22 := "127.0.0.1 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.srv.HostKeys()[0])))
	hostPort := "127.0.0.1:" + strconv.Itoa(r.srv.Port)

	for _, content := range []string{"", other + "\n", samePort22 + "\n"} {
		kh := r.write(t, "known_hosts", content)
		_, err := gitsource.New(gitsource.Options{URL: r.url, StateDir: t.TempDir(),
			Auth: gitsource.Auth{SSHKey: r.key.Path, KnownHosts: kh}})
		if err == nil {
			t.Fatalf("New with known_hosts %q accepted an unknown host", content)
		}
		for _, want := range []string{"has no key for " + hostPort, "[127.0.0.1]:" + strconv.Itoa(r.srv.Port), "never trusts a host key on first use"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("known_hosts %q: error does not contain %q:\n%v", content, want, err)
			}
		}
	}
	if st := r.srv.Stats(); st.Connections != 0 {
		t.Errorf("server stats %+v: New connected to an unknown host", st)
	}

	// The entry disappears after start (known_hosts is re-read on every
	// connection): refused, naming the host and the key type offered.
	src, _ := r.source(t, r.srv.KnownHostsLine(r.srv.HostKeys()[0])+"\n")
	r.write(t, "known_hosts", other+"\n")
	_, err := src.Head(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "has no key for "+hostPort) {
		t.Fatalf("Head after the host's entry was removed: err = %v, want it refused naming %s", err, hostPort)
	}
	if st := r.srv.Stats(); st.Connections != 0 {
		t.Errorf("server stats %+v: Head connected to a host no longer in known_hosts", st)
	}
	// Removed altogether: the error names the file, not some variable.
	if err := os.Remove(filepath.Join(r.dir, "known_hosts")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Head(ctx(t)); err == nil || !strings.Contains(err.Error(), filepath.Join(r.dir, "known_hosts")) {
		t.Fatalf("Head with known_hosts deleted: err = %v, want it to name the file", err)
	}
}

func TestSSHPassphraseProtectedKey(t *testing.T) {
	r := startSSHRepo(t)
	kh := r.write(t, "known_hosts", r.srv.HashedKnownHostsLine(r.srv.HostKeys()[0])+"\n")
	src, _ := newSource(t, r.url, func(o *gitsource.Options) {
		o.Auth = gitsource.Auth{SSHKey: r.encKey.Path, SSHKeyPassphraseFile: r.pass, KnownHosts: kh}
	})
	r.exercise(t, src)

	wrong := r.write(t, "wrong-passphrase", "Tr0ub4dor&3\n")
	_, err := gitsource.New(gitsource.Options{URL: r.url, StateDir: t.TempDir(),
		Auth: gitsource.Auth{SSHKey: r.encKey.Path, SSHKeyPassphraseFile: wrong, KnownHosts: kh}})
	if err == nil {
		t.Fatal("New with a wrong passphrase succeeded")
	}
	for _, want := range []string{r.encKey.Path, "passphrase in " + wrong + " is wrong"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
	for _, secret := range []string{"Tr0ub4dor", passphrase} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks a passphrase: %v", err)
		}
	}
}

func TestSSHUnauthorizedClientKey(t *testing.T) {
	r := startSSHRepo(t)
	stranger := sshgit.WriteClientKey(t, r.dir, "id_stranger", sshgit.ED25519, "")
	kh := r.write(t, "known_hosts", r.srv.KnownHostsLine(r.srv.HostKeys()[0])+"\n")
	src, _ := newSource(t, r.url, func(o *gitsource.Options) {
		o.Auth = gitsource.Auth{SSHKey: stranger.Path, KnownHosts: kh}
	})
	_, err := src.Head(ctx(t))
	if err == nil {
		t.Fatal("Head with a key the server does not authorize succeeded")
	}
	t.Logf("unauthorized key: %v", err)
	if !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Errorf("a refused client key does not match transport.ErrAuthenticationRequired: %v", err)
	}
	for _, want := range []string{r.url, "refused ssh key " + stranger.Path, ssh.FingerprintSHA256(stranger.Public)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
	if st := r.srv.Stats(); st.AuthFailures == 0 || st.UploadPacks != 0 {
		t.Errorf("server stats %+v: want the key refused and no git run", st)
	}
}
