package gitsource

import (
	"sync"
	"testing"
)

// The agent and a `lockstep apply` started at once on a fresh state dir
// both create the git cache: neither may fail with "repository already
// exists".
func TestNewOnAFreshStateDirAtOnce(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := New(Options{URL: "https://h/r.git", StateDir: dir})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
