// Package gitserver runs a real git smart-HTTP server for tests: the git
// http-backend CGI program behind net/http/cgi on an httptest server bound
// to 127.0.0.1, serving one bare repository that lives in t.TempDir().
//
// It owns the test repository's history (commits, tags, branches made with
// the real git command line in a private working clone) and counts the
// requests clients make, so tests can assert that a client fetched nothing.
// It never touches the network beyond 127.0.0.1 and never reads the user's
// or the system's git configuration.
package gitserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoName is the path component under which the repository is served.
const RepoName = "infra.git"

// Options configure a Server.
type Options struct {
	// AllowSHA1InWant sets uploadpack.allowAnySHA1InWant (which also
	// advertises allow-tip/allow-reachable-sha1-in-want), so clients may fetch
	// any commit by its SHA. The git default, false, refuses unadvertised
	// objects, as many real hosts configured by hand do.
	AllowSHA1InWant bool
	// User and Password, when Password is not empty, make every request
	// require HTTP basic auth with exactly these credentials.
	User     string
	Password string
}

// Stats counts requests the server answered (including refused ones).
type Stats struct {
	Requests    int // every HTTP request
	RefListings int // GET info/refs?service=git-upload-pack: one per ls-remote, fetch or clone
	UploadPacks int // POST git-upload-pack: a request for objects
	Unauthed    int // requests refused for missing or wrong credentials
}

// Server is a running smart-HTTP git server with one repository.
type Server struct {
	// URL is the clone URL of the repository, e.g.
	// http://127.0.0.1:PORT/infra.git. It carries no credentials.
	URL string
	// BareDir is the bare repository on disk.
	BareDir string
	// WorkDir is the working clone Commit and friends use.
	WorkDir string

	httpSrv *httptest.Server
	opts    Options

	mu      sync.Mutex // guards stats and serializes history changes
	stats   Stats
	commits int // used for deterministic commit dates
	stopped bool
	// signConfig and signEnv, when signConfig is set, make commits signed
	// (see Signing).
	signConfig []string
	signEnv    []string
}

// Signing makes the commits that follow signed by real git: config are
// "key=value" settings passed as `git -c` (gpg.format, user.signingkey,
// gpg.program), env extra environment (GNUPGHOME). Signing(nil) goes back
// to unsigned commits.
func (s *Server) Signing(env []string, config ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signConfig, s.signEnv = config, env
}

// Tamper rewrites main's head commit so that path holds content, keeping
// the commit's header, message and signature as they were: what an
// attacker who can push but not sign would make of a signed pin. It
// returns the forged commit's SHA, which main then points to.
func (s *Server) Tamper(t testing.TB, path, content string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	raw := s.Git(t, "cat-file", "commit", "HEAD")
	oldTree := strings.TrimSpace(s.Git(t, "rev-parse", "HEAD^{tree}"))
	s.writeFile(t, path, content, 0o644)
	s.Git(t, "add", "--all")
	newTree := strings.TrimSpace(s.Git(t, "write-tree"))
	if !strings.HasPrefix(raw, "tree "+oldTree+"\n") {
		t.Fatalf("gitserver: unexpected commit header:\n%s", raw)
	}
	forged := "tree " + newTree + strings.TrimPrefix(raw, "tree "+oldTree)
	cmd := gitCmd(context.Background(), s.WorkDir, "hash-object", "-t", "commit", "-w", "--stdin")
	cmd.Stdin = strings.NewReader(forged)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gitserver: hash-object: %v", err)
	}
	sha := strings.TrimSpace(string(out))
	s.Git(t, "reset", "--quiet", "--soft", sha)
	s.Git(t, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/main")
	return sha
}

// Start starts a server with an empty repository whose default branch is
// main. The server is stopped and its files removed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gitserver: the git command is required to run the test git server: %v", err)
	}
	root := t.TempDir()
	s := &Server{
		BareDir: filepath.Join(root, "srv", RepoName),
		WorkDir: filepath.Join(root, "work"),
		opts:    opts,
	}
	run(t, root, gitBin, "init", "--quiet", "--bare", "--initial-branch=main", s.BareDir)
	run(t, s.BareDir, gitBin, "config", "http.receivepack", "true")
	if opts.AllowSHA1InWant {
		run(t, s.BareDir, gitBin, "config", "uploadpack.allowAnySHA1InWant", "true")
	}
	run(t, root, gitBin, "init", "--quiet", "--initial-branch=main", s.WorkDir)
	run(t, s.WorkDir, gitBin, "remote", "add", "origin", s.BareDir)

	execPath := strings.TrimSpace(run(t, root, gitBin, "--exec-path"))
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("gitserver: git-http-backend not found under `git --exec-path` (%s): %v", execPath, err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Dir:  filepath.Dir(s.BareDir),
		Env: append(gitEnv(),
			"GIT_PROJECT_ROOT="+filepath.Dir(s.BareDir),
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=test", // http-backend refuses anonymous receive-pack
		),
		InheritEnv: []string{"PATH"},
		Stderr:     testWriter{t},
	}
	s.httpSrv = httptest.NewServer(s.wrap(cgiHandler))
	s.URL = s.httpSrv.URL + "/" + RepoName
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.Requests++
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack" {
			s.stats.RefListings++
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			s.stats.UploadPacks++
		}
		s.mu.Unlock()

		if s.opts.Password != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.User)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Password)) != 1 {
				s.mu.Lock()
				s.stats.Unauthed++
				s.mu.Unlock()
				w.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Stats returns the request counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ResetStats zeroes the request counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
}

// Stop shuts the HTTP server down, to simulate the git host going away.
// Clients then get connection errors. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	stopped := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if !stopped {
		s.httpSrv.Close()
	}
}

// Commit writes files (repository path -> content) in the working clone,
// commits them on main and pushes. It returns the new commit's SHA.
func (s *Server) Commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	return s.CommitOn(t, "main", msg, files)
}

// CommitOn is Commit on another branch; the branch is created from main's
// head when it does not exist yet.
func (s *Server) CommitOn(t testing.TB, branch, msg string, files map[string]string) string {
	t.Helper()
	return s.change(t, branch, msg, func() {
		for p, content := range files {
			s.writeFile(t, p, content, 0o644)
		}
	})
}

// CommitExecutable is Commit with every file given mode 0755 (git records
// the executable bit).
func (s *Server) CommitExecutable(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	return s.change(t, "main", msg, func() {
		for p, content := range files {
			s.writeFile(t, p, content, 0o755)
		}
	})
}

// Symlink commits a symbolic link at path pointing to target (which is
// recorded as is, even when it points outside the repository).
func (s *Server) Symlink(t testing.TB, msg, path, target string) string {
	t.Helper()
	return s.change(t, "main", msg, func() {
		full := filepath.Join(s.WorkDir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
		_ = os.Remove(full)
		if err := os.Symlink(target, full); err != nil {
			t.Fatalf("gitserver: symlink %s: %v", path, err)
		}
	})
}

// Submodule commits a gitlink (a submodule entry) at path pointing to sha,
// without a .gitmodules file: enough to exercise clients that must refuse
// submodules.
func (s *Server) Submodule(t testing.TB, msg, path, sha string) string {
	t.Helper()
	return s.change(t, "main", msg, func() {
		// An empty directory is how git sees an uninitialized submodule;
		// without it `git add --all` would stage the gitlink's removal.
		if err := os.MkdirAll(filepath.Join(s.WorkDir, filepath.FromSlash(path)), 0o755); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
		s.Git(t, "update-index", "--add", "--cacheinfo", "160000,"+sha+","+path)
	})
}

// Remove deletes paths, commits on main and pushes.
func (s *Server) Remove(t testing.TB, msg string, paths ...string) string {
	t.Helper()
	return s.change(t, "main", msg, func() {
		s.Git(t, append([]string{"rm", "--quiet", "-r", "--"}, paths...)...)
	})
}

// Tag creates a lightweight tag name at sha and pushes it.
func (s *Server) Tag(t testing.TB, name, sha string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Git(t, "tag", name, sha)
	s.Git(t, "push", "--quiet", "origin", "refs/tags/"+name)
}

// AnnotatedTag creates an annotated tag name at sha with msg and pushes it.
func (s *Server) AnnotatedTag(t testing.TB, name, sha, msg string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Git(t, "tag", "-a", "-m", msg, name, sha)
	s.Git(t, "push", "--quiet", "origin", "refs/tags/"+name)
}

// Branch points branch name at sha on the server (creating or force-moving
// it), e.g. to simulate a force-push.
func (s *Server) Branch(t testing.TB, name, sha string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Git(t, "push", "--quiet", "--force", "origin", sha+":refs/heads/"+name)
	if name == "main" {
		s.Git(t, "checkout", "--quiet", "main")
		s.Git(t, "reset", "--quiet", "--hard", sha)
	}
}

// Head returns the SHA main points to on the server.
func (s *Server) Head(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(runGit(t, s.BareDir, "rev-parse", "refs/heads/main"))
}

// Git runs git with args in the working clone and returns its stdout. It
// is the escape hatch for histories the helpers above do not cover.
func (s *Server) Git(t testing.TB, args ...string) string {
	t.Helper()
	return runGit(t, s.WorkDir, args...)
}

// change checks out branch, applies edit, commits everything with a fixed
// author and a deterministic date, pushes and returns the commit SHA.
func (s *Server) change(t testing.TB, branch, msg string, edit func()) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	hasHead := s.gitOK("rev-parse", "--verify", "--quiet", "HEAD")
	if branch != "main" {
		if s.gitOK("rev-parse", "--verify", "--quiet", "refs/heads/"+branch) {
			s.Git(t, "checkout", "--quiet", branch)
		} else {
			s.Git(t, "checkout", "--quiet", "-b", branch)
		}
		defer func() {
			if hasHead {
				s.Git(t, "checkout", "--quiet", "main")
			}
		}()
	}
	edit()
	s.Git(t, "add", "--all")
	s.commits++
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.commits) * time.Minute).Format(time.RFC3339)
	args := []string{"commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", msg}
	if s.signConfig != nil {
		args = []string{"commit", "--quiet", "--allow-empty", "--gpg-sign", "-m", msg}
		for i := len(s.signConfig) - 1; i >= 0; i-- {
			args = append([]string{"-c", s.signConfig[i]}, args...)
		}
	}
	cmd := gitCmd(context.Background(), s.WorkDir, args...)
	cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	cmd.Env = append(cmd.Env, s.signEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitserver: git commit: %v\n%s", err, out)
	}
	sha := strings.TrimSpace(s.Git(t, "rev-parse", "HEAD"))
	s.Git(t, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+branch)
	return sha
}

func (s *Server) writeFile(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	full := filepath.Join(s.WorkDir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	_ = os.Remove(full) // replaces a symlink instead of writing through it
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		t.Fatalf("gitserver: write %s: %v", p, err)
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatalf("gitserver: chmod %s: %v", p, err)
	}
}

func (s *Server) gitOK(args ...string) bool {
	return gitCmd(context.Background(), s.WorkDir, args...).Run() == nil
}

func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return run(t, dir, "git", args...)
}

func run(t testing.TB, dir, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gitserver: %s %s (in %s): %v\n%s", bin, strings.Join(args, " "), dir, err, stderr.String())
	}
	return stdout.String()
}

func gitCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv()...)
	return cmd
}

// gitEnv isolates git from the machine's configuration and pins identity.
func gitEnv() []string {
	return []string{
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=lockstep test",
		"GIT_AUTHOR_EMAIL=test@lockstep.invalid",
		"GIT_COMMITTER_NAME=lockstep test",
		"GIT_COMMITTER_EMAIL=test@lockstep.invalid",
		"HOME=/nonexistent",
	}
}

// testWriter sends the CGI program's stderr to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("git-http-backend: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// String describes the server for test failure messages.
func (s *Server) String() string { return fmt.Sprintf("gitserver(%s)", s.URL) }
