// Package sshgit runs a real SSH git server for tests: an SSH server built
// on golang.org/x/crypto/ssh, listening on 127.0.0.1 on a random port, that
// authenticates clients by public key and answers the exec requests
// `git-upload-pack '<path>'` and `git-receive-pack '<path>'` by running the
// real git programs on bare repositories under a root directory.
//
// It owns the server's keys and listener, and counts what clients did, so
// tests can assert that a refused client never got as far as running git.
// It never listens beyond 127.0.0.1, never runs anything but git's two
// transport programs, never serves a path outside its root, and never reads
// the user's or the system's git or ssh configuration.
package sshgit

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KeyType names a host or client key algorithm the helpers can generate.
type KeyType string

// Key types for NewSigner.
const (
	ED25519 KeyType = "ed25519"
	ECDSA   KeyType = "ecdsa" // P-256: ecdsa-sha2-nistp256
	RSA     KeyType = "rsa"   // 2048 bits: ssh-rsa (signed with rsa-sha2-256/512)
)

// DefaultUser is the only user name the server accepts unless Options.User
// says otherwise; it is what git hosts use.
const DefaultUser = "git"

// Options configure a Server.
type Options struct {
	// Root is the directory whose bare repositories are served: the path in
	// `git-upload-pack '/infra.git'` is resolved under it. Required.
	Root string
	// HostKeys are the server's host keys, all offered during key exchange.
	// Default: one fresh ed25519 key.
	HostKeys []ssh.Signer
	// AuthorizedKeys are the client public keys accepted. Required: a
	// server that lets anyone in would not test client authentication.
	AuthorizedKeys []ssh.PublicKey
	// User is the only user name accepted; default DefaultUser.
	User string
}

// Stats counts what clients did so far.
type Stats struct {
	Connections   int // TCP connections accepted
	Authenticated int // connections that passed the SSH handshake and client authentication
	AuthFailures  int // public keys or users refused
	UploadPacks   int // git-upload-pack runs (clone, fetch, ls-remote)
	ReceivePacks  int // git-receive-pack runs (push)
	Refused       int // exec requests refused: unknown command, bad path, no such repository
}

// Server is a running SSH git server.
type Server struct {
	// Addr is host:port of the listener, e.g. "127.0.0.1:40123".
	Addr string
	// Host is "127.0.0.1"; Port the listener's port (never 22).
	Host string
	Port int
	// Root is the directory served.
	Root string

	t        testing.TB
	config   *ssh.ServerConfig
	hostKeys []ssh.PublicKey
	listener net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu      sync.Mutex // guards stats, conns and stopped
	stats   Stats
	conns   map[net.Conn]struct{}
	stopped bool
}

// RequireGit skips the test, loudly, when the git command is missing, or
// fails it when CI=true: CI must run these tests, not silently skip them.
func RequireGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err == nil {
		return
	}
	msg := "SKIPPING: the git command is not installed; the SSH git server runs the real git-upload-pack. Install git to run this test."
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but " + msg)
	}
	t.Skip(msg)
}

// Start starts a server; it is stopped when the test ends. It skips the
// test when git is missing (see RequireGit).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	RequireGit(t)
	if opts.Root == "" {
		t.Fatal("sshgit: Options.Root is required")
	}
	if len(opts.AuthorizedKeys) == 0 {
		t.Fatal("sshgit: Options.AuthorizedKeys is required")
	}
	if opts.User == "" {
		opts.User = DefaultUser
	}
	if len(opts.HostKeys) == 0 {
		opts.HostKeys = []ssh.Signer{NewSigner(t, ED25519)}
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		t.Fatalf("sshgit: root: %v", err)
	}

	s := &Server{Root: root, t: t, conns: map[net.Conn]struct{}{}}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == opts.User && keyAuthorized(opts.AuthorizedKeys, key) {
				return &ssh.Permissions{}, nil
			}
			s.count(func(st *Stats) { st.AuthFailures++ })
			return nil, fmt.Errorf("sshgit: key %s for user %q is not authorized", ssh.FingerprintSHA256(key), meta.User())
		},
	}
	for _, k := range opts.HostKeys {
		s.config.AddHostKey(k)
		s.hostKeys = append(s.hostKeys, k.PublicKey())
	}

	s.listener, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshgit: listen: %v", err)
	}
	s.Addr = s.listener.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Stop)
	return s
}

func keyAuthorized(keys []ssh.PublicKey, key ssh.PublicKey) bool {
	got := key.Marshal()
	for _, k := range keys {
		if subtle.ConstantTimeCompare(k.Marshal(), got) == 1 {
			return true
		}
	}
	return false
}

// URL returns the ssh:// clone URL of repo (a path under Root), with the
// accepted user and the server's port.
func (s *Server) URL(repo string) string {
	return fmt.Sprintf("ssh://%s@%s/%s", DefaultUser, s.Addr, strings.TrimPrefix(repo, "/"))
}

// HostKeys returns the public host keys the server offers.
func (s *Server) HostKeys() []ssh.PublicKey { return append([]ssh.PublicKey(nil), s.hostKeys...) }

// HostKey returns the server's host key of the given type (as
// ssh.PublicKey.Type, e.g. ssh.KeyAlgoED25519), failing the test if it has
// none.
func (s *Server) HostKey(t testing.TB, keyType string) ssh.PublicKey {
	t.Helper()
	for _, k := range s.hostKeys {
		if k.Type() == keyType {
			return k
		}
	}
	t.Fatalf("sshgit: the server has no %s host key", keyType)
	return nil
}

// KnownHostsLine returns a plain known_hosts line for key at this server's
// address: "[127.0.0.1]:PORT ssh-ed25519 AAAA...".
func (s *Server) KnownHostsLine(key ssh.PublicKey) string {
	return knownhosts.Line([]string{s.Addr}, key)
}

// HashedKnownHostsLine returns a known_hosts line for key whose host field
// is hashed (|1|salt|hash), as `ssh-keygen -H` writes them.
func (s *Server) HashedKnownHostsLine(key ssh.PublicKey) string {
	hashed := knownhosts.HashHostname(knownhosts.Normalize(s.Addr))
	return hashed + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ResetStats zeroes the counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// Stop closes the listener and every connection, kills running git
// programs and waits for them. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	_ = s.listener.Close()
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return // closed by Stop
		}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.stats.Connections++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				_ = conn.Close()
			}()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) serveConn(conn net.Conn) {
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		// A refused host key or client key ends here; the client reports it.
		s.t.Logf("sshgit: handshake with %s: %v", conn.RemoteAddr(), err)
		return
	}
	defer sconn.Close()
	s.count(func(st *Stats) { st.Authenticated++ })
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	defer sessions.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			s.t.Logf("sshgit: accept channel: %v", err)
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			s.serveSession(ch, chReqs)
		}()
	}
}

// serveSession handles one session channel: "env" requests (only
// GIT_PROTOCOL, which real git sends to ask for protocol v2) and one
// "exec". Shells, PTYs and subsystems are refused.
func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var gitProtocol string
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if err := ssh.Unmarshal(req.Payload, &kv); err != nil || kv.Name != "GIT_PROTOCOL" {
				_ = req.Reply(false, nil)
				continue
			}
			gitProtocol = kv.Value
			_ = req.Reply(true, nil)
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			status := s.runGit(ch, cmd.Command, gitProtocol)
			_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// runGit runs the git transport program a command line asks for, with the
// channel as its stdin, stdout and stderr, and returns its exit status.
func (s *Server) runGit(ch ssh.Channel, command, gitProtocol string) uint32 {
	refuse := func(format string, args ...any) uint32 {
		s.count(func(st *Stats) { st.Refused++ })
		fmt.Fprintf(ch.Stderr(), "fatal: "+format+"\n", args...)
		return 128
	}
	program, arg, ok := strings.Cut(command, " ")
	if !ok || (program != "git-upload-pack" && program != "git-receive-pack") {
		return refuse("sshgit serves only git-upload-pack and git-receive-pack, not %q", command)
	}
	repoPath, err := shellUnquote(arg)
	if err != nil {
		return refuse("%s: %v", command, err)
	}
	dir, err := s.resolve(repoPath)
	if err != nil {
		return refuse("'%s' does not appear to be a git repository (%v)", repoPath, err)
	}
	if program == "git-upload-pack" {
		s.count(func(st *Stats) { st.UploadPacks++ })
	} else {
		s.count(func(st *Stats) { st.ReceivePacks++ })
	}

	// `git upload-pack` is the same program as git-upload-pack, found
	// through git itself so that PATH need not hold git's exec dir.
	cmd := exec.CommandContext(s.ctx, "git", strings.TrimPrefix(program, "git-"), dir)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=/nonexistent",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
	}
	if gitProtocol != "" {
		cmd.Env = append(cmd.Env, "GIT_PROTOCOL="+gitProtocol)
	}
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	// Not cmd.Stdin = ch: exec would then wait for the client to close its
	// side before Wait returns, and a client waits for exit-status first.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return refuse("%s: %v", program, err)
	}
	if err := cmd.Start(); err != nil {
		return refuse("start %s: %v", program, err)
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		_ = stdin.Close()
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return uint32(exit.ExitCode())
	default:
		s.t.Logf("sshgit: %s %s: %v", program, dir, err)
		return 255
	}
}

// resolve maps the path a client asked for to a bare repository under
// Root. Both "/infra.git" (ssh:// URLs) and "infra.git" (scp-like URLs)
// name Root/infra.git; nothing may escape Root.
func (s *Server) resolve(p string) (string, error) {
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", errors.New("path is outside the served root")
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" || !filepath.IsLocal(rel) {
		return "", errors.New("path is outside the served root")
	}
	dir := filepath.Join(s.Root, filepath.FromSlash(rel))
	fi, err := os.Stat(filepath.Join(dir, "HEAD"))
	if err != nil || !fi.Mode().IsRegular() {
		return "", errors.New("no bare repository there")
	}
	return dir, nil
}

// shellUnquote undoes the single quoting that git (sq_quote_buf) and
// go-git apply to the repository path, where a quote inside the path is
// written as quote, backslash, quote, quote. Anything else a shell would
// interpret is refused rather than guessed at.
func shellUnquote(s string) (string, error) {
	var b strings.Builder
	for len(s) > 0 {
		switch {
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", errors.New("unterminated quote")
			}
			b.WriteString(s[1 : 1+end])
			s = s[end+2:]
		case s[0] == '\\' && len(s) > 1 && (s[1] == '\'' || s[1] == '!'):
			b.WriteByte(s[1])
			s = s[2:]
		default:
			return "", fmt.Errorf("unexpected %q outside quotes", s[0])
		}
	}
	return b.String(), nil
}

// NewSigner generates a fresh key of type kt, failing the test on error.
func NewSigner(t testing.TB, kt KeyType) ssh.Signer {
	t.Helper()
	priv := newPrivateKey(t, kt)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshgit: signer from %s key: %v", kt, err)
	}
	return signer
}

func newPrivateKey(t testing.TB, kt KeyType) any {
	t.Helper()
	var (
		priv any
		err  error
	)
	switch kt {
	case ED25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ECDSA:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("sshgit: unknown key type %q", kt)
	}
	if err != nil {
		t.Fatalf("sshgit: generate %s key: %v", kt, err)
	}
	return priv
}

// ClientKey is a client private key written to a file, as a user would
// have it, and its public half for Options.AuthorizedKeys.
type ClientKey struct {
	Path   string // OpenSSH private key file, mode 0600
	Public ssh.PublicKey
}

// WriteClientKey generates a key of type kt and writes it in OpenSSH format
// to dir/name, encrypted with passphrase unless it is empty.
func WriteClientKey(t testing.TB, dir, name string, kt KeyType, passphrase string) ClientKey {
	t.Helper()
	priv := newPrivateKey(t, kt)
	var (
		block *pem.Block
		err   error
	)
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "sshgit test client")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "sshgit test client", []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("sshgit: marshal client key: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("sshgit: write client key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshgit: signer from client key: %v", err)
	}
	return ClientKey{Path: p, Public: signer.PublicKey()}
}
