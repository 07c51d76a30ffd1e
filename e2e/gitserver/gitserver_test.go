package gitserver_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
)

// gitClone clones url into a temp dir with the real git client, isolated
// from the machine's configuration, and returns the dir and git's output.
func gitClone(t *testing.T, url string, extra ...string) (string, string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"clone", "--quiet"}, extra...)
	cmd := exec.CommandContext(ctx, "git", append(args, url, dir)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	return dir, string(out), err
}

func TestServeCommitsOverSmartHTTP(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	first := srv.Commit(t, "first", map[string]string{"a.txt": "one", "dir/b.txt": "two"})
	second := srv.Remove(t, "drop a", "a.txt")
	if first == second || len(second) != 40 {
		t.Fatalf("commits: first %s second %s", first, second)
	}
	if got := srv.Head(t); got != second {
		t.Fatalf("Head = %s, want %s", got, second)
	}
	srv.ResetStats()

	dir, out, err := gitClone(t, srv.URL)
	if err != nil {
		t.Fatalf("git clone %s: %v\n%s", srv.URL, err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.txt")); !os.IsNotExist(err) {
		t.Errorf("a.txt should be gone in the clone, stat err = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dir/b.txt")); err != nil || string(b) != "two" {
		t.Errorf("dir/b.txt = %q, %v; want \"two\"", b, err)
	}
	st := srv.Stats()
	if st.RefListings != 1 || st.UploadPacks < 1 {
		t.Errorf("stats after one clone = %+v, want 1 ref listing and at least 1 upload-pack", st)
	}
}

func TestBasicAuthRequired(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{User: "bot", Password: "s3cret-pass"})
	srv.Commit(t, "first", map[string]string{"a.txt": "one"})

	if _, out, err := gitClone(t, srv.URL); err == nil {
		t.Fatalf("clone without credentials succeeded:\n%s", out)
	}
	if srv.Stats().Unauthed == 0 {
		t.Errorf("no request was refused for missing credentials")
	}
	withCreds := strings.Replace(srv.URL, "http://", "http://bot:s3cret-pass@", 1)
	if _, out, err := gitClone(t, withCreds); err != nil {
		t.Fatalf("clone with credentials: %v\n%s", err, out)
	}
}

func TestTagsBranchesAndStop(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	first := srv.Commit(t, "first", map[string]string{"a.txt": "one"})
	srv.Commit(t, "second", map[string]string{"a.txt": "two"})
	srv.AnnotatedTag(t, "v1", first, "release v1")
	feature := srv.CommitOn(t, "feature", "on feature", map[string]string{"f.txt": "f"})

	refs := runGit(t, srv.BareDir, "for-each-ref", "--format=%(refname) %(objecttype) %(*objectname)")
	if !strings.Contains(refs, "refs/tags/v1 tag "+first) {
		t.Errorf("annotated tag v1 should peel to %s; refs:\n%s", first, refs)
	}
	if got := strings.TrimSpace(runGit(t, srv.BareDir, "rev-parse", "refs/heads/feature")); got != feature {
		t.Errorf("feature = %s, want %s", got, feature)
	}
	if strings.Contains(runGit(t, srv.BareDir, "ls-tree", "-r", "--name-only", "main"), "f.txt") {
		t.Errorf("a commit on feature leaked onto main")
	}

	srv.Stop()
	if _, out, err := gitClone(t, srv.URL); err == nil {
		t.Fatalf("clone after Stop succeeded:\n%s", out)
	}
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}
