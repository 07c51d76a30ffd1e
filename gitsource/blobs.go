package gitsource

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// ensureBlobs makes every blob of hashes present in the cache. Callers
// hold the lock.
func (s *Source) ensureBlobs(ctx context.Context, hashes []plumbing.Hash) error {
	for _, h := range hashes {
		if err := s.repo.Storer.HasEncodedObject(h); err != nil {
			return fmt.Errorf("git object %s is not in the cache: %w", h, err)
		}
	}
	return ctx.Err()
}
