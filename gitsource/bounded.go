package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
)

// lock serializes access to the cache and releases: first within the
// process (a semaphore, so waiting honours ctx), then across processes.
func (s *Source) lock(ctx context.Context) (func(), error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for git cache: %w", ctx.Err())
	}
	if s.pending != nil {
		select {
		case <-s.pending:
			s.pending = nil
		case <-ctx.Done():
			<-s.sem
			return nil, fmt.Errorf("wait for git cache: a git operation abandoned at its deadline has not returned yet: %w", ctx.Err())
		}
	}
	unlockFile, err := lockFile(ctx, s.lockPath)
	if err != nil {
		<-s.sem
		return nil, err
	}
	if err := s.followRebuild(); err != nil {
		unlockFile()
		<-s.sem
		return nil, err
	}
	return func() {
		// An abandoned operation may still write the cache: another
		// process must not, until it returns.
		if p := s.pending; p != nil {
			go func() { <-p; unlockFile() }()
		} else {
			unlockFile()
		}
		<-s.sem
	}, nil
}

// abandonGrace is how long an operation gets, once its context has ended,
// to return its own error before it is abandoned.
const abandonGrace = time.Second

// bounded runs op and returns its error, or, when ctx ends and op has not
// returned abandonGrace later, an error saying so. op must be given ctx,
// but go-git does not always honour it: its file transport waits for
// git-upload-pack to exit in Close, and a child blocked writing a pack
// nobody reads never does. The returned channel is nil when op returned;
// otherwise it is closed when the abandoned op finally does, so that a
// caller holding the cache lock keeps it until then (see Source.lock).
func bounded(ctx context.Context, op func() error) (<-chan struct{}, error) {
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = op()
	}()
	select {
	case <-done:
		return nil, err
	case <-ctx.Done():
	}
	select {
	case <-done:
		return nil, err
	case <-time.After(abandonGrace):
		return done, fmt.Errorf("%w: git did not return after the deadline; the operation was abandoned and the cache stays locked until it ends", ctx.Err())
	}
}

// abandon records an operation bounded gave up on while the caller holds
// the lock: the lock's file half stays held until it returns.
func (s *Source) abandon(done <-chan struct{}) {
	if done != nil {
		s.pending = done
	}
}

// drainingStorer hands go-git a pack writer that keeps reading the pack
// after a write fails (a full disk) and reports the failure at Close. It
// is used for the file transport: go-git stops reading at the error and
// then waits for git-upload-pack to exit, which, blocked writing the rest
// of the pack into a full pipe, it never does. Drained, the child finishes
// and the fetch returns the write error. Reads still honour the fetch's
// deadline: go-git kills the child when one fails.
type drainingStorer struct {
	storage.Storer
	pw storer.PackfileWriter
}

func (d drainingStorer) PackfileWriter() (io.WriteCloser, error) {
	w, err := d.pw.PackfileWriter()
	if err != nil {
		return nil, err
	}
	return &drainingWriter{w: w}, nil
}

type drainingWriter struct {
	w   io.WriteCloser
	err error // the first write error; later writes are discarded
}

func (d *drainingWriter) Write(p []byte) (int, error) {
	if d.err == nil {
		if _, err := d.w.Write(p); err != nil {
			d.err = err
		}
	}
	return len(p), nil
}

func (d *drainingWriter) Close() error {
	cerr := d.w.Close()
	if d.err != nil {
		return d.err
	}
	return cerr
}

// removeTempObjects removes what an interrupted fetch leaves in the cache:
// temporary pack and object files (go-git writes a pack to tmp_pack_* and
// renames it once indexed), and an index without its pack, which go-git
// would otherwise trust, unchecked, for the pack of the same name the next
// fetch writes. On a full disk these leftovers are what keeps it full.
// Callers hold the lock.
func (s *Source) removeTempObjects(ctx context.Context) error {
	dir := filepath.Join(s.gitDir, "objects", "pack")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list git cache packs: %w", err)
	}
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		n := e.Name()
		orphanIdx := strings.HasPrefix(n, "pack-") && strings.HasSuffix(n, ".idx") && !names[strings.TrimSuffix(n, ".idx")+".pack"]
		if !strings.HasPrefix(n, "tmp_pack_") && !strings.HasPrefix(n, "tmp_obj_") && !orphanIdx {
			continue
		}
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove leftover of an interrupted fetch: %w", err)
		}
		s.logFor(ctx).Info().Str("file", p).Msg("removed leftover of an interrupted fetch from the git cache")
	}
	return nil
}

// noSpace adds what to do to an error that a full file system caused. The
// error itself already names the file (os.PathError).
func noSpace(err error, stateDir string) error {
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	return fmt.Errorf("%w (the file system holding state dir %s is full: free space there or grow it; lockstep retries with backoff)", err, stateDir)
}
