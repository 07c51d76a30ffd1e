package gitsource

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type sshFixture struct {
	dir        string
	key        string // unencrypted private key
	encKey     string // encrypted with passphrase
	passFile   string
	knownHosts string
	hostKey    ssh.PublicKey
	otherKey   ssh.PublicKey
}

func newSSHFixture(t *testing.T) sshFixture {
	t.Helper()
	dir := t.TempDir()
	f := sshFixture{dir: dir}
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "lockstep test")
	if err != nil {
		t.Fatal(err)
	}
	f.key = write("id_ed25519", pem.EncodeToMemory(block))
	block, err = ssh.MarshalPrivateKeyWithPassphrase(clientPriv, "lockstep test", []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	f.encKey = write("id_ed25519_enc", pem.EncodeToMemory(block))
	f.passFile = write("passphrase", []byte("correct horse\n"))

	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if f.hostKey, err = ssh.NewPublicKey(hostPub); err != nil {
		t.Fatal(err)
	}
	if f.otherKey, err = ssh.NewPublicKey(otherPub); err != nil {
		t.Fatal(err)
	}
	f.knownHosts = write("known_hosts", []byte(knownhosts.Line([]string{"git.example.com"}, f.hostKey)+"\n"))
	return f
}

func TestSSHAuthVerifiesHostKeys(t *testing.T) {
	f := newSSHFixture(t)
	for _, url := range []string{"git@git.example.com:acme/infra.git", "ssh://deploy@git.example.com/acme/infra.git"} {
		src, err := New(Options{URL: url, StateDir: t.TempDir(), Timeout: 7 * time.Second,
			Auth: Auth{SSHKey: f.key, KnownHosts: f.knownHosts}})
		if err != nil {
			t.Fatalf("New(%s): %v", url, err)
		}
		method, _, err := src.creds.method()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := method.(*sshAuth).ClientConfig()
		if err != nil {
			t.Fatalf("ClientConfig: %v", err)
		}
		wantUser := "git"
		if strings.HasPrefix(url, "ssh://deploy@") {
			wantUser = "deploy"
		}
		if cfg.User != wantUser {
			t.Errorf("%s: user = %q, want %q", url, cfg.User, wantUser)
		}
		if cfg.Timeout != 7*time.Second {
			t.Errorf("%s: dial timeout = %v, want the configured 7s", url, cfg.Timeout)
		}
		addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 22}
		if err := cfg.HostKeyCallback("git.example.com:22", addr, f.hostKey); err != nil {
			t.Errorf("%s: the known host key was refused: %v", url, err)
		}
		if err := cfg.HostKeyCallback("git.example.com:22", addr, f.otherKey); err == nil {
			t.Errorf("%s: a different host key was accepted", url)
		}
		if err := cfg.HostKeyCallback("evil.example.com:22", addr, f.hostKey); err == nil {
			t.Errorf("%s: an unknown host was accepted (trust on first use)", url)
		}
		if len(cfg.HostKeyAlgorithms) == 0 || !strings.Contains(strings.Join(cfg.HostKeyAlgorithms, ","), "ed25519") {
			t.Errorf("%s: host key algorithms = %v, want the known key's type", url, cfg.HostKeyAlgorithms)
		}
	}
}

func TestSSHAuthEncryptedKey(t *testing.T) {
	f := newSSHFixture(t)
	url := "git@git.example.com:acme/infra.git"
	if _, err := New(Options{URL: url, StateDir: t.TempDir(),
		Auth: Auth{SSHKey: f.encKey, SSHKeyPassphraseFile: f.passFile, KnownHosts: f.knownHosts}}); err != nil {
		t.Fatalf("New with an encrypted key and its passphrase: %v", err)
	}

	wrong := filepath.Join(f.dir, "wrong")
	if err := os.WriteFile(wrong, []byte("battery staple"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		auth Auth
		want string
	}{
		{"no passphrase file", Auth{SSHKey: f.encKey, KnownHosts: f.knownHosts}, "is encrypted; set auth ssh_key_passphrase_file"},
		{"wrong passphrase", Auth{SSHKey: f.encKey, SSHKeyPassphraseFile: wrong, KnownHosts: f.knownHosts}, "decrypt ssh key"},
		{"missing key file", Auth{SSHKey: filepath.Join(f.dir, "nope"), KnownHosts: f.knownHosts}, "read ssh key"},
		{"no key", Auth{KnownHosts: f.knownHosts}, "ssh_key is not set"},
		{"no known_hosts", Auth{SSHKey: f.key}, "known_hosts is not set"},
		{"missing known_hosts file", Auth{SSHKey: f.key, KnownHosts: filepath.Join(f.dir, "nope")}, "known_hosts file"},
		{"host not in known_hosts", Auth{SSHKey: f.key, KnownHosts: writeTemp(t, knownhosts.Line([]string{"other.example.com"}, f.hostKey))}, "has no key for git.example.com:22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{URL: url, StateDir: t.TempDir(), Auth: tt.auth})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "battery staple") || strings.Contains(err.Error(), "correct horse") {
				t.Errorf("error leaks the passphrase: %v", err)
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRejectsBadOptions(t *testing.T) {
	token := writeTemp(t, "tok3n-value")
	empty := writeTemp(t, "  ")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no URL", Options{StateDir: "x"}, "repo URL is empty"},
		{"no state dir", Options{URL: "https://h/r.git"}, "state dir is empty"},
		{"password in URL", Options{URL: "https://bot:hunter22@h/r.git", StateDir: "x"}, "contains a password or token"},
		{"bad branch", Options{URL: "https://h/r.git", StateDir: "x", Branch: "a..b"}, "not a valid branch name"},
		{"token with ssh", Options{URL: "git@h:r.git", StateDir: "x", Auth: Auth{TokenFile: token}}, "token_file is only used with http(s)"},
		{"ssh key with https", Options{URL: "https://h/r.git", StateDir: "x", Auth: Auth{SSHKey: "k"}}, "only used with ssh URLs"},
		{"missing token file", Options{URL: "https://h/r.git", StateDir: "x", Auth: Auth{TokenFile: "/nonexistent/token"}}, "read token file /nonexistent/token"},
		{"empty token file", Options{URL: "https://h/r.git", StateDir: "x", Auth: Auth{TokenFile: empty}}, "is empty"},
		{"negative timeout", Options{URL: "https://h/r.git", StateDir: "x", Timeout: -time.Second}, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.StateDir == "x" {
				tt.opts.StateDir = t.TempDir()
			}
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	src, err := New(Options{URL: "https://h/r.git", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if src.opts.Branch != "main" || src.opts.Timeout != 60*time.Second {
		t.Errorf("defaults: branch %q timeout %v", src.opts.Branch, src.opts.Timeout)
	}
	for _, d := range []string{src.gitDir, src.releasesDir} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	// Reopening an existing cache works.
	if _, err := New(Options{URL: "https://h/r.git", StateDir: filepath.Dir(src.gitDir)}); err != nil {
		t.Fatalf("New on an existing state dir: %v", err)
	}
}

func TestCheckSymlinks(t *testing.T) {
	link := func(p, target string) treeEntry { return treeEntry{path: p, mode: 0o120000, target: target} }
	dir := func(p string) treeEntry { return treeEntry{path: p, mode: 0o040000} }
	file := func(p string) treeEntry { return treeEntry{path: p, mode: 0o100644} }
	tests := []struct {
		name    string
		entries []treeEntry
		ok      bool
	}{
		{"sibling", []treeEntry{file("a"), link("b", "a")}, true},
		{"into dir", []treeEntry{dir("d"), file("d/f"), link("l", "d/f")}, true},
		{"up and back", []treeEntry{dir("d"), link("d/l", "../d/./f")}, true},
		{"dangling inside", []treeEntry{link("l", "missing/file")}, true},
		{"root itself", []treeEntry{dir("d"), link("d/l", "..")}, true},
		{"one up too many", []treeEntry{dir("d"), link("d/l", "../..")}, false},
		{"absolute", []treeEntry{link("l", "/etc")}, false},
		{"empty", []treeEntry{link("l", "")}, false},
		{"through dangling then up", []treeEntry{link("l", "x/../../y")}, false},
		{"chain", []treeEntry{link("a", "."), link("b", "a/a/../..")}, false},
		{"chain via dir", []treeEntry{dir("d"), link("d/up", ".."), link("x", "d/up/d/up/..")}, false},
		{"through absolute link", []treeEntry{link("a", "/"), link("b", "a/etc")}, false},
		{"loop", []treeEntry{link("a", "b"), link("b", "a"), link("c", "a/x")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSymlinks(tt.entries)
			if (err == nil) != tt.ok {
				t.Fatalf("checkSymlinks: err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
