package gitsource_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// newSource returns a Source on url with a fresh state dir. The cleanup
// restores write permission on releases so t.TempDir can remove them.
func newSource(t *testing.T, url string, mod ...func(*gitsource.Options)) (*gitsource.Source, string) {
	t.Helper()
	state := t.TempDir()
	opts := gitsource.Options{URL: url, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))}
	for _, m := range mod {
		m(&opts)
	}
	src, err := gitsource.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { makeWritable(t, filepath.Join(state, "releases")) })
	return src, state
}

func makeWritable(t *testing.T, root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// cacheHas reports whether the bare cache in state holds commit sha.
func cacheHas(t *testing.T, state, sha string) bool {
	t.Helper()
	repo, err := git.PlainOpen(filepath.Join(state, "git"))
	if err != nil {
		t.Fatalf("open cache: %v", err)
	}
	_, err = repo.CommitObject(plumbing.NewHash(sha))
	return err == nil
}

// cacheFiles lists every file under the cache, to prove an operation did
// not write to it.
func cacheFiles(t *testing.T, state string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(state, "git"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, fmt.Sprintf("%s %d %s", p, info.Size(), info.ModTime()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func commitN(t *testing.T, srv *gitserver.Server, n int, prefix string) []string {
	t.Helper()
	var shas []string
	for i := range n {
		shas = append(shas, srv.Commit(t, fmt.Sprintf("%s %d", prefix, i), map[string]string{"counter.txt": fmt.Sprintf("%s %d", prefix, i)}))
	}
	return shas
}

func TestHeadListsRefsWithoutFetching(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	first := srv.Commit(t, "first", map[string]string{"a.txt": "a"})
	src, state := newSource(t, srv.URL)
	before := cacheFiles(t, state)
	srv.ResetStats()

	got, err := src.Head(ctx(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	if got != first {
		t.Fatalf("Head = %s, want %s", got, first)
	}
	if st := srv.Stats(); st.RefListings != 1 || st.UploadPacks != 0 {
		t.Errorf("Head made %+v requests, want exactly one ref listing and no upload-pack", st)
	}
	if after := cacheFiles(t, state); !slices.Equal(before, after) {
		t.Errorf("Head changed the cache:\nbefore %v\nafter  %v", before, after)
	}

	second := srv.Commit(t, "second", map[string]string{"a.txt": "b"})
	if got, err := src.Head(ctx(t)); err != nil || got != second {
		t.Fatalf("Head after a push = %s, %v; want %s", got, err, second)
	}
}

func TestHeadErrors(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "first", map[string]string{"a.txt": "a"})

	other, _ := newSource(t, srv.URL, func(o *gitsource.Options) { o.Branch = "release" })
	_, err := other.Head(ctx(t))
	var notFound *gitsource.RefNotFoundError
	if !errors.As(err, &notFound) || !errors.Is(err, gitsource.ErrCommitNotFound) {
		t.Fatalf("Head of a missing branch: err = %v, want a *RefNotFoundError", err)
	}

	src, _ := newSource(t, srv.URL)
	srv.Stop()
	_, err = src.Head(ctx(t))
	if err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("Head with the server gone: err = %v, want an error naming %s", err, srv.URL)
	}
}

func TestFetchIsShallowAndSkipsKnownHead(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	shas := commitN(t, srv, 3, "c")
	src, state := newSource(t, srv.URL)
	srv.ResetStats()

	got, err := src.Fetch(ctx(t))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got != shas[2] {
		t.Fatalf("Fetch = %s, want head %s", got, shas[2])
	}
	if !cacheHas(t, state, shas[2]) {
		t.Fatalf("head %s not in cache after Fetch", shas[2])
	}
	if cacheHas(t, state, shas[1]) {
		t.Errorf("parent %s is in the cache: Fetch was not shallow", shas[1])
	}
	shallow, err := os.ReadFile(filepath.Join(state, "git", "shallow"))
	if err != nil || strings.TrimSpace(string(shallow)) != shas[2] {
		t.Errorf("shallow file = %q, %v; want just the head", shallow, err)
	}
	if st := srv.Stats(); st.UploadPacks != 1 {
		t.Errorf("first Fetch: %+v, want exactly one upload-pack", st)
	}

	srv.ResetStats()
	before := cacheFiles(t, state)
	if got, err := src.Fetch(ctx(t)); err != nil || got != shas[2] {
		t.Fatalf("second Fetch = %s, %v; want %s", got, err, shas[2])
	}
	if st := srv.Stats(); st.UploadPacks != 0 || st.RefListings != 1 {
		t.Errorf("Fetch of an unchanged head made %+v requests, want one ref listing and no upload-pack", st)
	}
	if after := cacheFiles(t, state); !slices.Equal(before, after) {
		t.Errorf("Fetch of an unchanged head changed the cache")
	}

	next := srv.Commit(t, "next", map[string]string{"b.txt": "b"})
	if got, err := src.Fetch(ctx(t)); err != nil || got != next {
		t.Fatalf("Fetch after a push = %s, %v; want %s", got, err, next)
	}
	if !cacheHas(t, state, next) {
		t.Errorf("new head not in cache")
	}

	// A force-push back to a commit the cache holds: reported, nothing fetched.
	srv.Branch(t, "main", shas[2])
	srv.ResetStats()
	if got, err := src.Fetch(ctx(t)); err != nil || got != shas[2] {
		t.Fatalf("Fetch after a force-push = %s, %v; want %s", got, err, shas[2])
	}
	if st := srv.Stats(); st.UploadPacks != 0 {
		t.Errorf("Fetch of a cached head after a force-push made %+v requests, want no upload-pack", st)
	}
}

func TestNetworkCallsHonourTimeout(t *testing.T) {
	// A git host that accepts connections and never answers.
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hung.Close)
	src, _ := newSource(t, hung.URL+"/infra.git", func(o *gitsource.Options) { o.Timeout = 200 * time.Millisecond })

	if _, err := src.Head(ctx(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Head against a hung server: err = %v, want a deadline error", err)
	}
	if _, err := src.Fetch(ctx(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch against a hung server: err = %v, want a deadline error", err)
	}
	_, err := src.Resolve(ctx(t), gitsource.Pin{Commit: strings.Repeat("ab", 20)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve against a hung server: err = %v, want a deadline error", err)
	}
}

func TestResolveOldSHAWhenServerRefusesSHAInWant(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{}) // git's default: no SHA in want
	old := srv.Commit(t, "old", map[string]string{"app.txt": "old"})
	// Put the old commit deeper than the first deepening step, so the
	// fallback must take more than one step.
	commitN(t, srv, 55, "later")
	src, state := newSource(t, srv.URL)
	if _, err := src.Fetch(ctx(t)); err != nil {
		t.Fatalf("Fetch: %v", err)
	}

	got, err := src.Resolve(ctx(t), gitsource.Pin{File: "environments/production.toml", Commit: old})
	if err != nil {
		t.Fatalf("Resolve(%s): %v", old, err)
	}
	if got != old {
		t.Fatalf("Resolve = %s, want %s", got, old)
	}
	if !cacheHas(t, state, old) {
		t.Fatalf("old commit not in cache after Resolve")
	}
	dir, err := src.Materialize(ctx(t), old)
	if err != nil {
		t.Fatalf("Materialize old commit: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app.txt")); err != nil || string(b) != "old" {
		t.Errorf("app.txt at old commit = %q, %v", b, err)
	}

	// Resolving again is free.
	srv.ResetStats()
	if got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: strings.ToUpper(old)}); err != nil || got != old {
		t.Fatalf("second Resolve (upper case) = %s, %v", got, err)
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("Resolve of a cached commit made %+v requests, want none", st)
	}
}

func TestResolveSHAWhenServerAllowsSHAInWant(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true})
	old := srv.Commit(t, "old", map[string]string{"app.txt": "old"})
	shas := commitN(t, srv, 3, "later")
	head := shas[len(shas)-1]
	src, state := newSource(t, srv.URL)
	srv.ResetStats()

	got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: old})
	if err != nil || got != old {
		t.Fatalf("Resolve = %s, %v; want %s", got, err, old)
	}
	if st := srv.Stats(); st.UploadPacks != 1 {
		t.Errorf("Resolve made %+v requests, want exactly one upload-pack (fetch by SHA)", st)
	}
	if cacheHas(t, state, head) {
		t.Errorf("branch head is in the cache: Resolve deepened the branch instead of fetching by SHA")
	}
}

func TestResolveUnknownSHA(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowSHA1InWant=%v", allow), func(t *testing.T) {
			srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: allow})
			commitN(t, srv, 2, "c")
			// A real commit that only exists on another branch is not on main.
			offMain := srv.CommitOn(t, "feature", "feature work", map[string]string{"f.txt": "f"})
			src, _ := newSource(t, srv.URL)

			for _, sha := range []string{"0123456789abcdef0123456789abcdef01234567", offMain} {
				if allow && sha == offMain {
					continue // reachable from a ref: a server allowing SHA-in-want hands it out
				}
				_, err := src.Resolve(ctx(t), gitsource.Pin{File: "environments/production.toml", Commit: sha})
				var nob *gitsource.NotOnBranchError
				if !errors.As(err, &nob) || !errors.Is(err, gitsource.ErrCommitNotFound) {
					t.Fatalf("Resolve(%s): err = %v, want *NotOnBranchError", sha, err)
				}
				for _, want := range []string{sha, "is not on branch main", srv.URL, "environments/production.toml"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
			}
		})
	}
}

func TestResolveBranchAndTagNames(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	v1 := srv.Commit(t, "v1", map[string]string{"app.txt": "1"})
	v2 := srv.Commit(t, "v2", map[string]string{"app.txt": "2"})
	srv.Commit(t, "v3", map[string]string{"app.txt": "3"})
	srv.Tag(t, "light", v1)
	srv.AnnotatedTag(t, "v2.0.0", v2, "release 2")
	staging := srv.CommitOn(t, "staging", "staging work", map[string]string{"s.txt": "s"})
	srv.Tag(t, "both", v1)
	srv.Branch(t, "both", v2)
	src, state := newSource(t, srv.URL)

	tests := []struct {
		name, commit, want string
	}{
		{"branch", "staging", staging},
		{"full branch ref", "refs/heads/staging", staging},
		{"lightweight tag", "light", v1},
		{"annotated tag peeled", "v2.0.0", v2},
		{"full tag ref", "refs/tags/both", v1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: tt.commit})
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %s, %v; want %s", tt.commit, got, err, tt.want)
			}
			if !cacheHas(t, state, got) {
				t.Errorf("%s not in cache", got)
			}
		})
	}

	_, err := src.Resolve(ctx(t), gitsource.Pin{File: "environments/x.toml", Commit: "nope"})
	var rnf *gitsource.RefNotFoundError
	if !errors.As(err, &rnf) || !errors.Is(err, gitsource.ErrCommitNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Resolve(nope): err = %v, want *RefNotFoundError naming it", err)
	}
	_, err = src.Resolve(ctx(t), gitsource.Pin{File: "environments/x.toml", Commit: "both"})
	var pe *gitsource.PinError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "refs/tags/both") {
		t.Errorf("Resolve(both): err = %v, want a *PinError asking for the full ref", err)
	}
	_, err = src.Resolve(ctx(t), gitsource.Pin{File: "environments/x.toml", Commit: v1[:12]})
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "full 40-hex") {
		t.Errorf("Resolve(short SHA): err = %v, want a *PinError asking for the full SHA", err)
	}
}

func TestReadPin(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Commit(t, "pins", map[string]string{
		"environments/production.toml": "commit = \"staging\"\ncompose_files = [\"deploy/compose.yaml\"]\n[vars]\nDOMAIN = \"example.com\"\n",
		"environments/broken.toml":     "commit = \"main\"\ncomit = \"x\"\n",
	})
	src, _ := newSource(t, srv.URL)
	head, err := src.Fetch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}

	pin, err := src.ReadPin(ctx(t), head, "environments/production.toml")
	if err != nil {
		t.Fatalf("ReadPin: %v", err)
	}
	want := gitsource.Pin{File: "environments/production.toml", Commit: "staging",
		ComposeFiles: []string{"deploy/compose.yaml"}, Vars: map[string]string{"DOMAIN": "example.com"}}
	if fmt.Sprint(pin) != fmt.Sprint(want) {
		t.Errorf("ReadPin = %+v, want %+v", pin, want)
	}

	_, err = src.ReadPin(ctx(t), head, "environments/staging.toml")
	if !errors.Is(err, gitsource.ErrPinNotFound) || !strings.Contains(err.Error(), "environments/staging.toml") || !strings.Contains(err.Error(), head) {
		t.Errorf("ReadPin of a missing file: err = %v, want ErrPinNotFound naming path and commit", err)
	}
	_, err = src.ReadPin(ctx(t), head, "environments/broken.toml")
	var pe *gitsource.PinError
	if !errors.As(err, &pe) || pe.Key != "comit" || pe.Line != 2 || pe.File != "environments/broken.toml" {
		t.Errorf("ReadPin of a pin with a typo: err = %v (%+v), want a PinError for comit on line 2", err, pe)
	}
	if _, err := src.ReadPin(ctx(t), strings.Repeat("ab", 20), "environments/production.toml"); err == nil {
		t.Errorf("ReadPin at a commit not in the cache succeeded")
	}
}

func TestTokenAuth(t *testing.T) {
	const token = "ghs_s3cr3tT0kenValue1234567890"
	srv := gitserver.Start(t, gitserver.Options{User: "x-access-token", Password: token})
	head := srv.Commit(t, "first", map[string]string{"a.txt": "a"})
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	src, _ := newSource(t, srv.URL, func(o *gitsource.Options) { o.Auth.TokenFile = good })
	if got, err := src.Fetch(ctx(t)); err != nil || got != head {
		t.Fatalf("Fetch with a token = %s, %v; want %s", got, err, head)
	}

	wrongToken := "ghs_wrongT0kenValue0987654321"
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(wrongToken), 0o600); err != nil {
		t.Fatal(err)
	}
	src, _ = newSource(t, srv.URL, func(o *gitsource.Options) { o.Auth.TokenFile = bad })
	for name, op := range map[string]func() error{
		"Head":    func() error { _, err := src.Head(ctx(t)); return err },
		"Fetch":   func() error { _, err := src.Fetch(ctx(t)); return err },
		"Resolve": func() error { _, err := src.Resolve(ctx(t), gitsource.Pin{Commit: head}); return err },
	} {
		err := op()
		if err == nil {
			t.Fatalf("%s with a wrong token succeeded", name)
		}
		if strings.Contains(err.Error(), wrongToken) || strings.Contains(fmt.Sprintf("%+v", err), wrongToken) {
			t.Errorf("%s error leaks the token: %v", name, err)
		}
		if !strings.Contains(err.Error(), "auth") {
			t.Errorf("%s error %q does not say authentication failed", name, err)
		}
	}

	// The token file is read per operation: fixing it heals the source.
	if err := os.WriteFile(bad, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := src.Head(ctx(t)); err != nil || got != head {
		t.Fatalf("Head after fixing the token file = %s, %v", got, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	shas := commitN(t, srv, 4, "c")
	src, _ := newSource(t, srv.URL)

	var wg sync.WaitGroup
	errs := make(chan error, 2*len(shas))
	for _, sha := range shas {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := src.Resolve(ctx(t), gitsource.Pin{Commit: sha})
				if err == nil && got != sha {
					err = fmt.Errorf("Resolve(%s) = %s", sha, got)
				}
				if err == nil {
					var dir string
					dir, err = src.Materialize(ctx(t), sha)
					if err == nil && filepath.Base(dir) != sha {
						err = fmt.Errorf("Materialize(%s) = %s", sha, dir)
					}
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestLocalPathAndFileURL(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := srv.Commit(t, "first", map[string]string{"a.txt": "a"})
	for _, url := range []string{srv.BareDir, "file://" + srv.BareDir} {
		src, state := newSource(t, url)
		got, err := src.Fetch(ctx(t))
		if err != nil || got != head {
			t.Fatalf("Fetch(%s) = %s, %v; want %s", url, got, err, head)
		}
		if !cacheHas(t, state, head) {
			t.Errorf("Fetch(%s): head not in cache", url)
		}
	}
}
