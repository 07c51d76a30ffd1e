package gitsource

// Blobs on demand. A cache filled by filtered (blob:none) fetches holds
// every commit and tree it fetched but only the blobs something asked for:
// a release of a monorepo uses a small part of the tree, and the first
// sync must not transfer, or hold, the rest.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// errBlobsRefused is a server refusing to send blobs by id.
var errBlobsRefused = errors.New("the server will not send objects by id")

// ensureBlobs makes every blob of hashes present in the cache, fetching the missing ones
// from the remote in one request when the cache was filled by a partial (blob:none) fetch;
// a no-op when all are present. Callers hold the lock (s.lock).
//
// A server that refuses (its configuration changed since it offered
// filters) is not asked again: the cache is marked so that later fetches
// are full, the branch head is fetched again in full, and the blobs are
// looked for once more. What is still missing then is an error saying what
// the server must allow.
func (s *Source) ensureBlobs(ctx context.Context, hashes []plumbing.Hash) error {
	missing := s.missingObjects(hashes)
	if len(missing) == 0 {
		return nil
	}
	if !s.marked(partialMarker) {
		return s.missingError(missing, "the cache was fetched in full, so it is damaged; stop lockstep and delete "+s.gitDir+": it is only a cache")
	}
	err := s.transfer(ctx, func(ctx context.Context, auth transport.AuthMethod) error {
		return s.fetchBlobs(ctx, auth, missing)
	})
	if err == nil {
		if still := s.missingObjects(missing); len(still) > 0 {
			return s.missingError(still, "the server did not send them")
		}
		s.logFor(ctx).Debug().Int("blobs", len(missing)).Msg("fetched missing blobs")
		return nil
	}
	if !errors.Is(err, errBlobsRefused) {
		return fmt.Errorf("fetch %d blobs from %s: %w", len(missing), s.redacted, err)
	}
	s.logFor(ctx).Warn().Str("reason", err.Error()).
		Msg("server refused to send blobs by id: fetching in full from now on; allow uploadpack.allowFilter and uploadpack.allowAnySHA1InWant on the server to fetch only what releases use")
	if err := s.mark(noFilterMarker); err != nil {
		return err
	}
	branchSpec := config.RefSpec(fmt.Sprintf("+%s:%s",
		plumbing.NewBranchReferenceName(s.opts.Branch), plumbing.NewRemoteReferenceName("origin", s.opts.Branch)))
	if err := s.transfer(ctx, func(ctx context.Context, auth transport.AuthMethod) error {
		return s.fetchRef(ctx, auth, branchSpec, 1, true)
	}); err != nil {
		return fmt.Errorf("fetch %s@%s in full: %w", s.redacted, s.opts.Branch, err)
	}
	if still := s.missingObjects(missing); len(still) > 0 {
		return s.missingError(still, fmt.Sprintf("%v; the server must allow partial clone (git: uploadpack.allowFilter and uploadpack.allowAnySHA1InWant; GitHub, GitLab and Gitea do), or stop lockstep and delete %s (it is only a cache) so that it is fetched in full again", errBlobsRefused, s.gitDir))
	}
	return nil
}

// ensureTreeBlobs makes every blob of tree present, for a release made of
// the whole tree: in a partial cache, in one request.
func (s *Source) ensureTreeBlobs(ctx context.Context, tree *object.Tree) error {
	if !s.marked(partialMarker) {
		return nil
	}
	var blobs []plumbing.Hash
	var walk func(t *object.Tree) error
	walk = func(t *object.Tree) error {
		for _, e := range t.Entries {
			switch {
			case e.Mode == filemode.Dir:
				sub, err := s.repo.TreeObject(e.Hash)
				if err != nil {
					return fmt.Errorf("read tree %s: %w", e.Hash, err)
				}
				if err := walk(sub); err != nil {
					return err
				}
			case e.Mode.IsFile():
				blobs = append(blobs, e.Hash)
			}
		}
		return nil
	}
	if err := walk(tree); err != nil {
		return err
	}
	return s.ensureBlobs(ctx, blobs)
}

// missingObjects are the distinct hashes the cache does not hold.
func (s *Source) missingObjects(hashes []plumbing.Hash) []plumbing.Hash {
	var missing []plumbing.Hash
	seen := make(map[plumbing.Hash]bool, len(hashes))
	for _, h := range hashes {
		if seen[h] {
			continue
		}
		seen[h] = true
		if s.repo.Storer.HasEncodedObject(h) != nil {
			missing = append(missing, h)
		}
	}
	return missing
}

func (s *Source) missingError(missing []plumbing.Hash, why string) error {
	const show = 3
	ids := make([]string, 0, show)
	for _, h := range missing[:min(show, len(missing))] {
		ids = append(ids, h.String()[:12])
	}
	more := ""
	if len(missing) > show {
		more = fmt.Sprintf(" and %d more", len(missing)-show)
	}
	return fmt.Errorf("git objects %s%s are not in the cache: %s", strings.Join(ids, ", "), more, why)
}

// fetchBlobs asks for missing by id, with no filter and no haves (which
// would let the server leave out the very blobs asked for).
func (s *Source) fetchBlobs(ctx context.Context, auth transport.AuthMethod, missing []plumbing.Hash) (err error) {
	sess, ar, err := s.session(ctx, auth)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sess.Close()) }()
	if !ar.Capabilities.Supports(capability.AllowReachableSHA1InWant) {
		return fmt.Errorf("%w: it no longer advertises %s", errBlobsRefused, capability.AllowReachableSHA1InWant)
	}
	err = s.fetchPack(ctx, sess, ar, packRequest{wants: missing})
	if err != nil && strings.Contains(err.Error(), "not our ref") {
		return fmt.Errorf("%w: %w", errBlobsRefused, err)
	}
	return err
}
