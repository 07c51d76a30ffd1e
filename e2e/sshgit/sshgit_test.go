package sshgit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
)

// fixture is a served repository with one commit and a client key.
type fixture struct {
	repo   *gitserver.Server // owns the history; its bare repo is what sshgit serves
	srv    *Server
	client ssh.Signer
	head   string
}

func newFixture(t *testing.T, hostKeys ...ssh.Signer) fixture {
	t.Helper()
	RequireGit(t)
	repo := gitserver.Start(t, gitserver.Options{})
	head := repo.Commit(t, "first", map[string]string{"a.txt": "a"})
	client := NewSigner(t, ED25519)
	srv := Start(t, Options{
		Root:           filepath.Dir(repo.BareDir),
		HostKeys:       hostKeys,
		AuthorizedKeys: []ssh.PublicKey{client.PublicKey()},
	})
	return fixture{repo: repo, srv: srv, client: client, head: head}
}

func dial(t *testing.T, f fixture, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	t.Helper()
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Auth == nil {
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(f.client)}
	}
	if cfg.HostKeyCallback == nil {
		cfg.HostKeyCallback = ssh.FixedHostKey(f.srv.HostKeys()[0])
	}
	cfg.Timeout = time.Minute
	c, err := ssh.Dial("tcp", f.srv.Addr, cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// run execs command on a new session, sending stdin, and returns stdout,
// stderr and the exit status.
func run(t *testing.T, c *ssh.Client, command, stdin string) (string, string, int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	sess.Stdin = strings.NewReader(stdin)
	err = sess.Run(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitStatus()
	default:
		t.Fatalf("run %q: %v", command, err)
		return "", "", -1
	}
}

func TestUploadPackAdvertisesRefs(t *testing.T) {
	f := newFixture(t)
	if f.srv.Port == 22 || f.srv.Port == 0 {
		t.Fatalf("port = %d, want a random non-22 port", f.srv.Port)
	}
	c, err := dial(t, f, &ssh.ClientConfig{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	for _, command := range []string{"git-upload-pack '/infra.git'", "git-upload-pack 'infra.git'"} {
		// A flush packet right away ends the conversation after the
		// advertisement, as `git ls-remote` does.
		stdout, stderr, status := run(t, c, command, "0000")
		if status != 0 {
			t.Fatalf("%s: exit status %d, stderr %q", command, status, stderr)
		}
		if !strings.Contains(stdout, f.head+" refs/heads/main") {
			t.Errorf("%s: advertisement does not list main at %s:\n%s", command, f.head, stdout)
		}
	}
	if st := f.srv.Stats(); st.UploadPacks != 2 || st.Authenticated != 1 || st.Refused != 0 {
		t.Errorf("stats = %+v, want 2 upload-packs on 1 authenticated connection", st)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	stranger := NewSigner(t, ED25519)
	t.Run("unauthorized key", func(t *testing.T) {
		_, err := dial(t, f, &ssh.ClientConfig{Auth: []ssh.AuthMethod{ssh.PublicKeys(stranger)}})
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("dial with an unauthorized key: err = %v, want an authentication failure", err)
		}
	})
	t.Run("wrong user", func(t *testing.T) {
		_, err := dial(t, f, &ssh.ClientConfig{User: "root"})
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("dial as root: err = %v, want an authentication failure", err)
		}
	})

	c, err := dial(t, f, &ssh.ClientConfig{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	f.srv.ResetStats()
	tests := []struct {
		command string
		stderr  string
	}{
		{"sh -c id", "serves only git-upload-pack and git-receive-pack"},
		{"git-upload-pack", "serves only"},
		{"git-upload-pack '/../../etc'", "does not appear to be a git repository"},
		{"git-upload-pack '/infra.git/../../etc'", "does not appear to be a git repository"},
		{"git-upload-pack '/missing.git'", "does not appear to be a git repository"},
		{"git-upload-pack '/infra.git'; id", "outside quotes"},
		{"git-upload-pack '/infra.git", "unterminated quote"},
	}
	for _, tt := range tests {
		_, stderr, status := run(t, c, tt.command, "")
		if status != 128 || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: status %d, stderr %q; want 128 and %q", tt.command, status, stderr, tt.stderr)
		}
	}
	if st := f.srv.Stats(); st.UploadPacks != 0 || st.Refused != len(tests) {
		t.Errorf("stats = %+v, want every command refused and no git run", st)
	}
}

func TestShellUnquote(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`'/infra.git'`, "/infra.git", true},
		{`'it'\''s.git'`, "it's.git", true},
		{`'wow'\!'.git'`, "wow!.git", true},
		{`''`, "", true},
		{`/infra.git`, "", false},
		{`'a' 'b'`, "", false},
		{`'a`, "", false},
		{`'a'$(id)`, "", false},
	}
	for _, tt := range tests {
		got, err := shellUnquote(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("shellUnquote(%s) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestHostKeyAlgorithmPitfall shows the trap gitsource must avoid: with a
// known_hosts check but no HostKeyAlgorithms, x/crypto/ssh prefers ECDSA
// and RSA over ed25519, so a server offering all three presents a key type
// known_hosts does not hold for it, and the correct server is refused.
func TestHostKeyAlgorithmPitfall(t *testing.T) {
	f := newFixture(t, NewSigner(t, ED25519), NewSigner(t, ECDSA), NewSigner(t, RSA))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	ed := f.srv.HostKey(t, ssh.KeyAlgoED25519)
	if err := os.WriteFile(kh, []byte(f.srv.KnownHostsLine(ed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}

	_, err = dial(t, f, &ssh.ClientConfig{HostKeyCallback: check})
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) != 1 {
		t.Fatalf("dial with default host key algorithms: err = %v, want a knownhosts key mismatch", err)
	}
	if _, err := dial(t, f, &ssh.ClientConfig{HostKeyCallback: check, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}); err != nil {
		t.Fatalf("dial restricted to ed25519: %v", err)
	}
}

func TestKnownHostsLines(t *testing.T) {
	f := newFixture(t)
	key := f.srv.HostKeys()[0]
	for _, line := range []string{f.srv.KnownHostsLine(key), f.srv.HashedKnownHostsLine(key)} {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		check, err := knownhosts.New(kh)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: f.srv.Port}
		if err := check(f.srv.Addr, addr, key); err != nil {
			t.Errorf("%q does not accept the server's key at %s: %v", line, f.srv.Addr, err)
		}
	}
	if plain := f.srv.KnownHostsLine(key); !strings.HasPrefix(plain, "[127.0.0.1]:") {
		t.Errorf("plain line %q does not name [127.0.0.1]:PORT", plain)
	}
	if hashed := f.srv.HashedKnownHostsLine(key); !strings.HasPrefix(hashed, "|1|") || strings.Contains(hashed, "127.0.0.1") {
		t.Errorf("hashed line %q is not hashed", hashed)
	}
}

// TestRealGitCloneAndPush drives the server with the git and ssh command
// line tools, which speak protocol v2 (GIT_PROTOCOL over an env request)
// and check the host key themselves: the server behaves like a real host.
func TestRealGitCloneAndPush(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		msg := "SKIPPING: the ssh command (openssh-client) is not installed; it is needed to test the server with real git"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but " + msg)
		}
		t.Skip(msg)
	}
	f := newFixture(t)
	dir := t.TempDir()
	key := WriteClientKey(t, dir, "id_ed25519", ED25519, "")
	f.srv.Stop()
	// A second server authorizing the key written to disk, on the same repo.
	srv := Start(t, Options{Root: f.srv.Root, AuthorizedKeys: []ssh.PublicKey{key.Public}})
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(srv.HashedKnownHostsLine(srv.HostKeys()[0])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sshCommand := strings.Join([]string{sshBin, "-F", "/dev/null", "-i", key.Path,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null"}, " ")
	git := func(dir string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_SSH_COMMAND="+sshCommand, "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t.invalid")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}

	clone := filepath.Join(dir, "clone")
	git(dir, "clone", "--quiet", srv.URL("infra.git"), clone)
	if got := git(clone, "rev-parse", "HEAD"); got != f.head {
		t.Fatalf("cloned HEAD = %s, want %s", got, f.head)
	}
	if err := os.WriteFile(filepath.Join(clone, "b.txt"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(clone, "add", "b.txt")
	git(clone, "commit", "--quiet", "--no-gpg-sign", "-m", "pushed over ssh")
	pushed := git(clone, "rev-parse", "HEAD")
	git(clone, "push", "--quiet", "origin", "HEAD:refs/heads/main")
	if got := f.repo.Head(t); got != pushed {
		t.Errorf("server main = %s after push, want %s", got, pushed)
	}
	if st := srv.Stats(); st.UploadPacks != 1 || st.ReceivePacks != 1 {
		t.Errorf("stats = %+v, want one upload-pack (clone) and one receive-pack (push)", st)
	}
}

// The server must not leave git running when a client goes away mid-way.
func TestStopEndsRunningGit(t *testing.T) {
	f := newFixture(t)
	c, err := dial(t, f, &ssh.ClientConfig{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("git-upload-pack '/infra.git'"); err != nil {
		t.Fatal(err)
	}
	// Read the first pkt-line so that upload-pack is surely running and now
	// waits for the client, which never answers.
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(stdout, hdr); err != nil {
		t.Fatalf("read advertisement: %v", err)
	}
	f.srv.Stop() // returns only once every git program has exited
	if err := sess.Wait(); err == nil {
		t.Error("session ended cleanly although the server stopped mid-conversation")
	}
	_ = stdin.Close()
}
