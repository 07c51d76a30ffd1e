package gitsource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
)

// filterServer is a git server that offers partial clone, as GitHub,
// GitLab and Gitea do.
func filterServer(t *testing.T) *gitserver.Server {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true})
	srv.Git(t, "-C", srv.BareDir, "config", "uploadpack.allowFilter", "true")
	return srv
}

func partialSource(t *testing.T, url string) *Source {
	t.Helper()
	s, err := New(Options{URL: url, StateDir: t.TempDir(), Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveReadOnlyTree(s.releasesDir) })
	return s
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// objectCounts counts the cache's objects by type, read afresh from disk.
func objectCounts(t *testing.T, s *Source) map[plumbing.ObjectType]int {
	t.Helper()
	repo, err := git.PlainOpen(s.gitDir)
	if err != nil {
		t.Fatal(err)
	}
	iter, err := repo.Storer.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		t.Fatal(err)
	}
	n := map[plumbing.ObjectType]int{}
	if err := iter.ForEach(func(o plumbing.EncodedObject) error { n[o.Type()]++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// packBytes is the size of the cache's packs: what fetches transferred.
func packBytes(t *testing.T, s *Source) int64 {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(s.gitDir, "objects", "pack", "*.pack"))
	var n int64
	for _, p := range packs {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// manyFiles is a tree of n files in a few directories, with a pin.
func manyFiles(n int, version string) map[string]string {
	files := map[string]string{"pins/prod.toml": `commit = "main"` + "\n"}
	for i := range n {
		files[fmt.Sprintf("svc%d/file%d.txt", i%5, i)] = strings.Repeat(fmt.Sprintf("%s %d\n", version, i), 50)
	}
	return files
}

func blobHash(t *testing.T, s *Source, sha, path string) plumbing.Hash {
	t.Helper()
	c, err := s.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	e, err := tree.FindEntry(path)
	if err != nil {
		t.Fatal(err)
	}
	return e.Hash
}

func TestPartialFetchThenBlobsOnDemand(t *testing.T) {
	srv := filterServer(t)
	head := srv.Commit(t, "many", manyFiles(40, "v1"))
	for _, url := range []string{srv.URL, "file://" + srv.BareDir} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			s := partialSource(t, url)
			if got, err := s.Fetch(testCtx(t)); err != nil || got != head {
				t.Fatalf("Fetch = %s, %v; want %s", got, err, head)
			}
			n := objectCounts(t, s)
			// root, pins, svc0..svc4
			if n[plumbing.BlobObject] != 0 || n[plumbing.CommitObject] != 1 || n[plumbing.TreeObject] != 7 {
				t.Fatalf("partial fetch brought %v; want 1 commit, 7 trees, no blobs", n)
			}
			if !s.marked(partialMarker) {
				t.Fatalf("cache not marked partial")
			}

			pin, err := s.ReadPin(testCtx(t), head, "pins/prod.toml")
			if err != nil || pin.Commit != "main" {
				t.Fatalf("ReadPin on a partial cache = %+v, %v", pin, err)
			}
			want := []plumbing.Hash{blobHash(t, s, head, "svc1/file1.txt"), blobHash(t, s, head, "svc2/file7.txt")}
			if err := s.ensureBlobs(testCtx(t), append(want, want[0])); err != nil {
				t.Fatalf("ensureBlobs: %v", err)
			}
			if n := objectCounts(t, s); n[plumbing.BlobObject] != 3 {
				t.Fatalf("after ReadPin and ensureBlobs of 2: %d blobs, want 3 (pin + 2)", n[plumbing.BlobObject])
			}
			if _, err := s.repo.BlobObject(want[1]); err != nil {
				t.Fatalf("ensured blob not readable: %v", err)
			}
			srv.ResetStats()
			if err := s.ensureBlobs(testCtx(t), want); err != nil {
				t.Fatalf("ensureBlobs of present blobs: %v", err)
			}
			if st := srv.Stats(); st.Requests != 0 {
				t.Errorf("ensureBlobs of present blobs made %+v requests, want none", st)
			}

			dir, err := s.Materialize(testCtx(t), head)
			if err != nil {
				t.Fatalf("Materialize on a partial cache: %v", err)
			}
			if data, err := os.ReadFile(filepath.Join(dir, "svc4/file9.txt")); err != nil || !strings.HasPrefix(string(data), "v1 9\n") {
				t.Errorf("released file = %q, %v", data, err)
			}
			if st := srv.Stats(); url == srv.URL && st.UploadPacks != 1 {
				t.Errorf("Materialize on a partial cache made %+v requests, want one upload-pack for the missing blobs", st)
			}
		})
	}
}

// TestSecondFetchBringsOnlyWhatChanged: a new head with one file changed
// costs its commit and the trees on the changed path (and, unfiltered, the
// one blob), not the whole tree again.
func TestSecondFetchBringsOnlyWhatChanged(t *testing.T) {
	for _, filter := range []bool{true, false} {
		t.Run(fmt.Sprintf("filter=%v", filter), func(t *testing.T) {
			srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: filter})
			if filter {
				srv.Git(t, "-C", srv.BareDir, "config", "uploadpack.allowFilter", "true")
			}
			srv.Commit(t, "old", manyFiles(200, "v0"))
			srv.Commit(t, "many", manyFiles(200, "v1"))
			s := partialSource(t, srv.URL)
			if _, err := s.Fetch(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			before, bytesBefore := objectCounts(t, s), packBytes(t, s)
			next := srv.Commit(t, "one", map[string]string{"svc3/file3.txt": "changed\n"})
			if got, err := s.Fetch(testCtx(t)); err != nil || got != next {
				t.Fatalf("second Fetch = %s, %v; want %s", got, err, next)
			}
			if shallow, err := s.repo.Storer.Shallow(); err != nil || len(shallow) != 1 {
				t.Errorf("shallow list after the second fetch = %v, %v; want just the old head", shallow, err)
			}
			after := objectCounts(t, s)
			blobs := 0
			if !filter {
				blobs = 1
			}
			for typ, want := range map[plumbing.ObjectType]int{plumbing.CommitObject: 1, plumbing.TreeObject: 2, plumbing.BlobObject: blobs} {
				if got := after[typ] - before[typ]; got != want {
					t.Errorf("second fetch brought %d %s objects, want %d (before %v, after %v)", got, typ, want, before, after)
				}
			}
			t.Logf("first fetch %d pack bytes, second %d", bytesBefore, packBytes(t, s)-bytesBefore)
		})
	}
}

func TestFetchWithoutFilterIsFullAndEnsureBlobsFree(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true}) // no allowFilter
	head := srv.Commit(t, "many", manyFiles(20, "v1"))
	s := partialSource(t, srv.URL)
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := objectCounts(t, s); n[plumbing.BlobObject] != 21 {
		t.Fatalf("unfiltered fetch brought %v, want all 21 blobs", n)
	}
	if s.marked(partialMarker) {
		t.Errorf("full cache marked partial")
	}
	srv.ResetStats()
	if err := s.ensureBlobs(testCtx(t), []plumbing.Hash{blobHash(t, s, head, "svc0/file0.txt")}); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("ensureBlobs on a full cache made %+v requests", st)
	}
	err := s.ensureBlobs(testCtx(t), []plumbing.Hash{plumbing.NewHash(strings.Repeat("ab", 20))})
	if err == nil || !strings.Contains(err.Error(), "not in the cache") {
		t.Errorf("ensureBlobs of an unknown blob on a full cache: %v", err)
	}
}

// TestEnsureBlobsWhenServerStopsSendingByID: the server offered filters,
// then its configuration changed; the cache falls back to full fetches.
func TestEnsureBlobsWhenServerStopsSendingByID(t *testing.T) {
	srv := filterServer(t)
	head := srv.Commit(t, "many", manyFiles(10, "v1"))
	s := partialSource(t, srv.URL)
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	srv.Git(t, "-C", srv.BareDir, "config", "--unset", "uploadpack.allowAnySHA1InWant")
	blob := blobHash(t, s, head, "svc2/file2.txt")
	if err := s.ensureBlobs(testCtx(t), []plumbing.Hash{blob}); err != nil {
		t.Fatalf("ensureBlobs of a head blob after the server stopped sending by id: %v", err)
	}
	if !s.marked(noFilterMarker) {
		t.Errorf("cache not marked to fetch in full")
	}
	if n := objectCounts(t, s); n[plumbing.BlobObject] != 11 {
		t.Errorf("after the fallback: %v, want the head's 11 blobs", n)
	}
	next := srv.Commit(t, "one", map[string]string{"svc3/file3.txt": "changed\n"})
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadPin(testCtx(t), next, "pins/prod.toml"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"svc3/file3.txt", "svc1/file1.txt"} {
		if _, err := s.repo.BlobObject(blobHash(t, s, next, p)); err != nil {
			t.Errorf("%s of the new head missing after a full fetch: %v", p, err)
		}
	}
}

func TestEnsureBlobsHonoursTimeout(t *testing.T) {
	srv := filterServer(t)
	head := srv.Commit(t, "many", manyFiles(3, "v1"))
	s := partialSource(t, srv.URL)
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hung.Close)
	s.opts.URL, s.opts.Timeout = hung.URL+"/infra.git", 200*time.Millisecond
	start := time.Now()
	err := s.ensureBlobs(testCtx(t), []plumbing.Hash{blobHash(t, s, head, "svc0/file0.txt")})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("ensureBlobs against a hung server = %v after %s, want a deadline error", err, time.Since(start))
	}
	if s.marked(noFilterMarker) {
		t.Errorf("a deadline marked the cache as refused")
	}
}

// A server that filters but will not send objects by id could never fill
// in the blobs: the fetch is full.
func TestFilterWithoutSHAInWantFetchesInFull(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.Git(t, "-C", srv.BareDir, "config", "uploadpack.allowFilter", "true")
	srv.Commit(t, "many", manyFiles(5, "v1"))
	s := partialSource(t, srv.URL)
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := objectCounts(t, s); n[plumbing.BlobObject] != 6 || s.marked(partialMarker) {
		t.Errorf("fetch from a server without SHA in want: %v, partial %v; want all 6 blobs, not partial", n, s.marked(partialMarker))
	}
}

// An old pinned commit fetched by SHA comes without blobs too, and its pin
// reads.
func TestResolveOldSHAPartial(t *testing.T) {
	srv := filterServer(t)
	old := srv.Commit(t, "old", manyFiles(5, "v0"))
	srv.Commit(t, "many", manyFiles(5, "v1"))
	s := partialSource(t, srv.URL)
	if _, err := s.Fetch(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Resolve(testCtx(t), Pin{Commit: old}); err != nil || got != old {
		t.Fatalf("Resolve(%s) = %s, %v", old, got, err)
	}
	if n := objectCounts(t, s); n[plumbing.BlobObject] != 0 {
		t.Errorf("Resolve by SHA brought %d blobs, want none", n[plumbing.BlobObject])
	}
	if _, err := s.ReadPin(testCtx(t), old, "pins/prod.toml"); err != nil {
		t.Fatal(err)
	}
}

// When the blobs belong to an older commit than the head, fetching the head
// in full cannot help: the error says what the server must allow.
func TestEnsureBlobsRefusedSaysWhatToAllow(t *testing.T) {
	srv := filterServer(t)
	old := srv.Commit(t, "old", map[string]string{"gone.txt": "only in the old commit\n"})
	srv.Remove(t, "rm", "gone.txt")
	srv.Commit(t, "head", manyFiles(2, "v1"))
	s := partialSource(t, srv.URL)
	if got, err := s.Resolve(testCtx(t), Pin{Commit: old}); err != nil || got != old {
		t.Fatalf("Resolve(%s) = %s, %v", old, got, err)
	}
	srv.Git(t, "-C", srv.BareDir, "config", "--unset", "uploadpack.allowAnySHA1InWant")
	err := s.ensureBlobs(testCtx(t), []plumbing.Hash{blobHash(t, s, old, "gone.txt")})
	if err == nil || !strings.Contains(err.Error(), "uploadpack.allowAnySHA1InWant") || !strings.Contains(err.Error(), "not in the cache") {
		t.Fatalf("ensureBlobs refused: %v; want an error saying what the server must allow", err)
	}
	t.Log(err)
	if !s.marked(noFilterMarker) {
		t.Errorf("cache not marked to fetch in full")
	}
}

// A partial release from a partial cache: only the blobs of the paths
// asked for (and the pin's) are ever fetched, however big the tree.
func TestPartialReleaseFetchesOnlyWhatItAsks(t *testing.T) {
	srv := filterServer(t)
	files := manyFiles(200, "v1")
	files["compose.yaml"] = "services: {}\n"
	files["nginx/nginx.conf"] = "events {}\n"
	srv.Commit(t, "monorepo", files)
	s := partialSource(t, srv.URL)
	rs := NewReleases(s, ReleasesOptions{})
	rel, err := rs.Resolve(testCtx(t), Want{Environment: "prod", PinFile: "pins/prod.toml"})
	if err == nil {
		rel, err = rs.Materialize(testCtx(t), rel)
	}
	if err == nil {
		err = rs.AddPaths(testCtx(t), rel, []string{"compose.yaml", "nginx", "compose.override.yaml"})
	}
	if err != nil {
		t.Fatal(err)
	}
	// The pin, compose.yaml and nginx.conf: nothing of the 200 others.
	if got := objectCounts(t, s)[plumbing.BlobObject]; got != 3 {
		t.Fatalf("the cache holds %d blobs, want 3 (pin, compose.yaml, nginx/nginx.conf)", got)
	}
}
