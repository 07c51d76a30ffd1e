package gitsource

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
)

// noRebuildLeftovers fails when git.new or git.old is left beside the cache.
func noRebuildLeftovers(t *testing.T, s *Source) {
	t.Helper()
	for _, suffix := range []string{newCacheSuffix, oldCacheSuffix} {
		if exists(s.gitDir + suffix) {
			t.Errorf("%s left behind", s.gitDir+suffix)
		}
	}
}

// moveHead commits a one-file change and fetches it, failing unless the
// fetch returns the new head.
func moveHead(t *testing.T, srv *gitserver.Server, s *Source, i int) string {
	t.Helper()
	head := srv.Commit(t, fmt.Sprintf("move %d", i), map[string]string{"counter.txt": fmt.Sprintf("%d\n", i)})
	if got, err := s.Fetch(testCtx(t)); err != nil || got != head {
		t.Fatalf("Fetch %d = %s, %v; want %s", i, got, err, head)
	}
	return head
}

// TestRebuildBoundsPacks: with a bound of 3 packs, the cache never holds
// more than 4 and a rebuild brings it back to 1, smaller than before; the
// markers keep their meaning and a second Source on the same state dir
// follows the swap.
func TestRebuildBoundsPacks(t *testing.T) {
	for _, noFilter := range []bool{false, true} {
		t.Run(fmt.Sprintf("nofilter=%v", noFilter), func(t *testing.T) {
			srv := filterServer(t)
			srv.Commit(t, "many", manyFiles(100, "v1"))
			s := partialSource(t, srv.URL)
			s.maxPacks = 3
			if noFilter {
				if err := s.mark(noFilterMarker); err != nil {
					t.Fatal(err)
				}
			}
			other, err := New(s.opts)
			if err != nil {
				t.Fatal(err)
			}
			rebuilds, maxBytes := 0, int64(0)
			var head string
			for i := range 11 {
				before := packCount(s.gitDir)
				head = moveHead(t, srv, s, i)
				n := packCount(s.gitDir)
				if n > s.maxPacks+1 {
					t.Fatalf("after fetch %d the cache holds %d packs; bound %d", i, n, s.maxPacks)
				}
				if n < before {
					rebuilds++
					if n != 1 {
						t.Errorf("a rebuild left %d packs, want 1", n)
					}
				}
				maxBytes = max(maxBytes, treeBytes(s.gitDir))
				noRebuildLeftovers(t, s)
			}
			if rebuilds != 2 {
				t.Errorf("%d rebuilds in 11 fetches with a bound of 3, want 2", rebuilds)
			}
			t.Logf("cache: %d packs, %d bytes (at most %d)", packCount(s.gitDir), treeBytes(s.gitDir), maxBytes)
			if got := s.marked(noFilterMarker); got != noFilter {
				t.Errorf("nofilter marker after a rebuild: %v, want %v", got, noFilter)
			}
			blobs := objectCounts(t, s)[plumbing.BlobObject]
			if got := s.marked(partialMarker); got == noFilter || (blobs == 0) == noFilter {
				t.Errorf("after a rebuild: partial %v, %d blobs; want a partial cache only when filtering", got, blobs)
			}
			// other opened the cache before both swaps.
			if _, err := other.ReadPin(testCtx(t), head, "pins/prod.toml"); err != nil {
				t.Fatalf("ReadPin through another Source after a rebuild: %v", err)
			}
		})
	}
}

// TestReleasesSurviveRebuild: a release made before a rebuild still
// verifies (from its manifest, not the cache), its commit, gone from the
// rebuilt cache, is resolved again, and paths are added to it.
func TestReleasesSurviveRebuild(t *testing.T) {
	srv := filterServer(t)
	files := manyFiles(20, "v1")
	files["compose.yaml"] = "services: {}\n"
	files["nginx/nginx.conf"] = "events {}\n"
	old := srv.Commit(t, "monorepo", files)
	s := partialSource(t, srv.URL)
	rs := NewReleases(s, ReleasesOptions{})
	want := Want{Environment: "prod", PinFile: "pins/prod.toml"}
	rel, err := rs.Resolve(testCtx(t), want)
	if err == nil {
		rel, err = rs.Materialize(testCtx(t), rel)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.maxPacks = 1
	for i := range 3 {
		moveHead(t, srv, s, i)
	}
	if s.hasCommit(plumbing.NewHash(old)) {
		t.Fatalf("the old commit is still in the cache: no rebuild happened (%d packs)", packCount(s.gitDir))
	}
	if _, err := rs.Materialize(testCtx(t), rel); err != nil {
		t.Fatalf("Materialize of a release made before the rebuild: %v", err)
	}
	want.Commit = old
	again, err := rs.Resolve(testCtx(t), want)
	if err != nil || again.Commit != old || !s.hasCommit(plumbing.NewHash(old)) {
		t.Fatalf("Resolve of the old commit after a rebuild = %s, %v", again.Commit, err)
	}
	again.Dir = rel.Dir
	if err := rs.AddPaths(testCtx(t), again, []string{"nginx", "svc1"}); err != nil {
		t.Fatalf("AddPaths after a rebuild: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(rel.Dir, "nginx/nginx.conf")); err != nil || string(data) != "events {}\n" {
		t.Errorf("added nginx/nginx.conf = %q, %v", data, err)
	}
	if _, err := rs.Materialize(testCtx(t), again); err != nil {
		t.Fatalf("Materialize after adding paths: %v", err)
	}
}

// TestNewRecoversInterruptedRebuild: each state a kill -9 can leave is
// brought back to one working cache by New.
func TestNewRecoversInterruptedRebuild(t *testing.T) {
	junk := func(t *testing.T, dir string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "objects", "pack"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "objects", "pack", "tmp_pack_1"), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	states := map[string]func(t *testing.T, git string){
		"git.new unfinished":  func(t *testing.T, git string) { junk(t, git+newCacheSuffix) },
		"git.old not removed": func(t *testing.T, git string) { junk(t, git+oldCacheSuffix) },
		"git.old alone": func(t *testing.T, git string) {
			if err := os.Rename(git, git+oldCacheSuffix); err != nil {
				t.Fatal(err)
			}
		},
		"between the renames": func(t *testing.T, git string) {
			if err := os.Rename(git, git+oldCacheSuffix); err != nil {
				t.Fatal(err)
			}
			junk(t, git+newCacheSuffix)
		},
	}
	srv := filterServer(t)
	head := srv.Commit(t, "many", manyFiles(5, "v1"))
	for name, crash := range states {
		t.Run(name, func(t *testing.T) {
			s := partialSource(t, srv.URL)
			if _, err := s.Fetch(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			crash(t, s.gitDir)
			s, err := New(s.opts)
			if err != nil {
				t.Fatalf("New after %s: %v", name, err)
			}
			noRebuildLeftovers(t, s)
			if !s.hasCommit(plumbing.NewHash(head)) || !s.marked(partialMarker) {
				t.Errorf("after %s the cache lost the head or its marker", name)
			}
		})
	}
}

// failingProxy forwards to srv, answering 503 to the next fail
// upload-pack requests (-1: all of them).
type failingProxy struct {
	fail atomic.Int32
	URL  string
}

func newFailingProxy(t *testing.T, srv *gitserver.Server) *failingProxy {
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := &failingProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			if n := p.fail.Load(); n < 0 || (n > 0 && p.fail.CompareAndSwap(n, n-1)) {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.URL = hs.URL + target.Path
	return p
}

// TestFailedRebuildKeepsOldCache: a rebuild whose fetch fails leaves the
// old cache and the fetch goes into it; with the server down for every
// fetch, the old cache is still whole; once it is back, the rebuild
// happens.
func TestFailedRebuildKeepsOldCache(t *testing.T) {
	srv := filterServer(t)
	srv.Commit(t, "many", manyFiles(10, "v1"))
	proxy := newFailingProxy(t, srv)
	s, err := New(Options{URL: proxy.URL, StateDir: t.TempDir(), Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	s.maxPacks = 2
	var head string
	for i := range 3 {
		head = moveHead(t, srv, s, i)
	}
	proxy.fail.Store(1) // the rebuild's fetch
	next := moveHead(t, srv, s, 3)
	if n := packCount(s.gitDir); n != 4 {
		t.Errorf("after a failed rebuild: %d packs, want the old 3 and the fetched one", n)
	}
	noRebuildLeftovers(t, s)

	proxy.fail.Store(-1)
	srv.Commit(t, "unfetched", map[string]string{"counter.txt": "x\n"})
	if _, err := s.Fetch(testCtx(t)); err == nil {
		t.Fatal("Fetch with upload-pack down succeeded")
	}
	noRebuildLeftovers(t, s)
	for _, sha := range []string{head, next} {
		if !s.hasCommit(plumbing.NewHash(sha)) {
			t.Errorf("the old cache lost %s after a failed rebuild", sha)
		}
	}
	if n := packCount(s.gitDir); n != 4 {
		t.Errorf("after a failed rebuild and fetch: %d packs, want 4", n)
	}

	proxy.fail.Store(0)
	moveHead(t, srv, s, 5)
	if n := packCount(s.gitDir); n != 1 {
		t.Errorf("once the server is back: %d packs, want 1 (rebuilt)", n)
	}
}

// TestKillDuringRebuild kills (SIGKILL) a process rebuilding the cache
// over and over at random instants; each time New brings back one cache
// from which the head is fetched.
func TestKillDuringRebuild(t *testing.T) {
	if state := os.Getenv("LOCKSTEP_REBUILD_STATE"); state != "" {
		rebuildForever(t, state)
		return
	}
	srv := filterServer(t)
	old := srv.Commit(t, "old", manyFiles(300, "v0"))
	head := srv.Commit(t, "head", manyFiles(300, "v1"))
	state, url := t.TempDir(), "file://"+srv.BareDir
	seen := map[string]int{}
	for i := range 12 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringRebuild$")
		cmd.Env = append(os.Environ(), "LOCKSTEP_REBUILD_STATE="+state, "LOCKSTEP_REBUILD_URL="+url, "LOCKSTEP_REBUILD_OLD="+old)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		git := filepath.Join(state, "git")
		seen[fmt.Sprintf("git=%v new=%v old=%v", exists(git), exists(git+newCacheSuffix), exists(git+oldCacheSuffix))]++
		s, err := New(Options{URL: url, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatalf("New after kill %d: %v", i, err)
		}
		noRebuildLeftovers(t, s)
		if got, err := s.Fetch(testCtx(t)); err != nil || got != head {
			t.Fatalf("Fetch after kill %d = %s, %v", i, got, err)
		}
		if _, err := s.ReadPin(testCtx(t), head, "pins/prod.toml"); err != nil {
			t.Fatalf("ReadPin after kill %d: %v", i, err)
		}
	}
	t.Logf("states a kill left: %v", seen)
}

// rebuildForever is the child of TestKillDuringRebuild: it fetches an old
// commit (one more pack) and rebuilds, until it is killed.
func rebuildForever(t *testing.T, state string) {
	s, err := New(Options{URL: os.Getenv("LOCKSTEP_REBUILD_URL"), StateDir: state, Timeout: 30 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s.maxPacks = 1
	old := Pin{Commit: os.Getenv("LOCKSTEP_REBUILD_OLD")}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if _, err := s.Fetch(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Resolve(testCtx(t), old); err != nil {
			t.Fatal(err)
		}
		unlock, err := s.lock(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.rebuildCache(testCtx(t))
		unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
}
