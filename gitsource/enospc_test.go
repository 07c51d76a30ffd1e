package gitsource_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/file"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// bigCommit commits a file that does not compress, so that its pack is
// larger than a tiny tmpfs and than a pipe's buffer.
func bigCommit(t *testing.T, srv *gitserver.Server, n int) string {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return srv.Commit(t, "big", map[string]string{"big.txt": base64.StdEncoding.EncodeToString(raw), "compose.yaml": "services: {}\n"})
}

// TestFetchOnFullDiskReturnsAndRecovers: a fetch into a state dir on a
// full file system returns within its deadline, says "no space left on
// device" with the path, and succeeds once there is room, over each
// transport that writes a pack (file:// runs git-upload-pack as a child
// process; http does not).
func TestFetchOnFullDiskReturnsAndRecovers(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := bigCommit(t, srv, 1<<20)
	for _, url := range []string{"file://" + srv.BareDir, srv.URL} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			state := harness.MountTmpfs(t, "256k")
			src, err := gitsource.New(gitsource.Options{URL: url, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			done := make(chan error, 1)
			go func() { _, err := src.Fetch(ctx(t)); done <- err }()
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				t.Fatalf("Fetch on a full disk did not return within 90s (its timeout is 30s)")
			}
			t.Logf("Fetch returned after %s: %v", time.Since(start), err)
			if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), state) {
				t.Fatalf("Fetch on a full disk: %v; want an error saying \"no space left on device\" and naming a path under %s", err, state)
			}
			harness.ResizeTmpfs(t, state, 32<<20)
			got, err := src.Fetch(ctx(t))
			if err != nil || got != head {
				t.Fatalf("Fetch after freeing space = %s, %v; want %s", got, err, head)
			}
			if !cacheHas(t, state, head) {
				t.Fatalf("head not in cache after the retry")
			}
		})
	}
}

// TestMaterializeOnFullDiskLeavesNothing: a release that does not fit
// fails with "no space left on device" and the file it was writing, leaves
// no staging dir behind (which would keep the disk full), and is written
// whole once there is room.
func TestMaterializeOnFullDiskLeavesNothing(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := bigCommit(t, srv, 1<<20)
	state := harness.MountTmpfs(t, "8m")
	src, err := gitsource.New(gitsource.Options{URL: srv.URL, StateDir: state, Timeout: 30 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	harness.ResizeTmpfs(t, state, 256<<10)
	_, err = src.Materialize(ctx(t), head)
	releases := filepath.Join(state, "releases")
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), filepath.Join(releases, ".tmp-"+head)) ||
		!strings.Contains(err.Error(), "state dir "+state+" is full") {
		t.Fatalf("Materialize on a full disk: %v; want \"no space left on device\" naming the file under %s", err, releases)
	}
	if left := releaseEntries(t, state); len(left) != 0 {
		t.Fatalf("Materialize on a full disk left %v in %s", left, releases)
	}
	harness.ResizeTmpfs(t, state, 32<<20)
	dir, err := src.Materialize(ctx(t), head)
	if err != nil {
		t.Fatalf("Materialize after freeing space: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "compose.yaml")); err != nil {
		t.Fatalf("release after freeing space: %v", err)
	}
}

// stuckTransport is the file transport with an upload-pack that does not
// return, whatever its context says, until released: what go-git does
// when it waits on a child that never exits.
type stuckTransport struct {
	transport.Transport
	release chan struct{}
}

func (s stuckTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	inner, err := s.Transport.NewUploadPackSession(ep, auth)
	return stuckSession{UploadPackSession: inner, release: s.release}, err
}

type stuckSession struct {
	transport.UploadPackSession
	release chan struct{}
}

func (s stuckSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	<-s.release
	return s.UploadPackSession.UploadPack(ctx, req)
}

// TestFetchThatNeverReturnsIsAbandoned: a fetch whose transport ignores
// its deadline returns shortly after it; the cache stays locked (a clear
// error, not a hang) while the abandoned fetch runs, and works again once
// it returns. go-git's transports are process-wide, so this test swaps the
// file transport and must not run in parallel.
func TestFetchThatNeverReturnsIsAbandoned(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	head := srv.Commit(t, "first", map[string]string{"a.txt": "a"})
	release := make(chan struct{})
	released := false
	client.InstallProtocol("file", stuckTransport{Transport: file.DefaultClient, release: release})
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		client.InstallProtocol("file", file.DefaultClient)
	})
	src, state := newSource(t, "file://"+srv.BareDir, func(o *gitsource.Options) { o.Timeout = 200 * time.Millisecond })

	start := time.Now()
	_, err := src.Fetch(ctx(t))
	if took := time.Since(start); took > 10*time.Second || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("Fetch with a stuck transport = %v after %s; want a deadline error saying it was abandoned, within seconds", err, took)
	}
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := src.Fetch(short); err == nil || !strings.Contains(err.Error(), "has not returned yet") {
		t.Fatalf("Fetch while the abandoned one runs: %v; want it refused, saying why", err)
	}
	close(release)
	released = true
	got, err := src.Fetch(ctx(t))
	if err != nil || got != head || !cacheHas(t, state, head) {
		t.Fatalf("Fetch once the abandoned fetch returned = %s, %v; want %s in the cache", got, err, head)
	}
}
