package gitsource

// The min_commit floor. Signatures prove who made a commit, not when it
// may be deployed: an old, validly signed pin can be replayed to take an
// environment back to a release with a known hole. The operator sets a
// floor per environment in the agent's own config (not in git, where the
// same pusher could lower it); a pinned commit is deployed only when it is
// the floor or a descendant of it.

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// FloorError says a pinned commit cannot be shown to be the min_commit
// floor or a descendant of it. It is permanent: only a new pin or a change
// of min_commit in the agent config fixes it.
type FloorError struct {
	Floor  string // min_commit
	Commit string // the pinned commit
	Branch string
	URL    string // redacted
	// Unknown: the floor is not in the branch's history at all.
	Unknown bool
	// Undecided: the pinned commit's history could not be fetched far
	// enough to find the floor (the commit is not on the branch, and the
	// server would not send its history by SHA).
	Undecided bool
}

func (e *FloorError) Error() string {
	switch {
	case e.Unknown:
		return fmt.Sprintf("min_commit %s is not on branch %s of %s (its whole history was fetched), so pinned commit %s cannot be checked against it; set min_commit in the agent config to a commit of %s",
			e.Floor, e.Branch, e.URL, e.Commit, e.Branch)
	case e.Undecided:
		return fmt.Sprintf("pinned commit %s is not on branch %s of %s and its history could not be fetched back to min_commit %s, so it cannot be shown to descend from that floor; pin a commit of %s that descends from %s, or lower min_commit in the agent config",
			e.Commit, e.Branch, e.URL, e.Floor, e.Branch, e.Floor)
	default:
		return fmt.Sprintf("pinned commit %s does not descend from min_commit %s: deploying it would move the environment back past its floor (an old pin replayed, or a commit from a branch that forked before the floor); pin %s or a later commit, or lower min_commit in the agent config if going back is intended",
			e.Commit, e.Floor, e.Floor)
	}
}

// Permanent is true: the history of both commits is fixed.
func (e *FloorError) Permanent() bool { return true }

// CheckFloor returns nil when sha is floor or floor is an ancestor of sha;
// both are full 40-hex SHAs, and sha must be in the cache (Resolve it
// first). Otherwise the answer is a *FloorError.
//
// The cache is shallow, so the walk from sha back to floor may stop at a
// commit whose parents were never fetched. Then the floor is fetched by
// SHA if missing, and the branch history deepened step by step (as
// Resolve does: 50, 200, 1000 commits, then all of it), along with sha's
// own history when the server will send it by SHA, until the walk can
// decide.
func (s *Source) CheckFloor(ctx context.Context, floor, sha string) error {
	for _, c := range []struct{ name, sha string }{{"min_commit", floor}, {"pinned commit", sha}} {
		if len(c.sha) != 40 || !hexOnly.MatchString(c.sha) {
			return fmt.Errorf("check floor: %s %q is not a full 40-hex commit SHA", c.name, c.sha)
		}
	}
	floor, sha = strings.ToLower(floor), strings.ToLower(sha)
	if floor == sha {
		return nil
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	floorHash, shaHash := plumbing.NewHash(floor), plumbing.NewHash(sha)
	if !s.hasCommit(shaHash) {
		return fmt.Errorf("check floor: pinned commit %s is not in the cache (resolve it first)", sha)
	}
	refused := &FloorError{Floor: floor, Commit: sha, Branch: s.opts.Branch, URL: s.redacted}
	if !s.hasCommit(floorHash) {
		if err := s.tryFetchSHA(ctx, floor, 1); err != nil {
			return err
		}
	}

	branchSpec := config.RefSpec(fmt.Sprintf("+%s:%s",
		plumbing.NewBranchReferenceName(s.opts.Branch), plumbing.NewRemoteReferenceName("origin", s.opts.Branch)))
	for step := 0; ; step++ {
		blocked := false
		if s.hasCommit(floorHash) {
			var found bool
			if found, blocked, err = s.descends(ctx, shaHash, floorHash); err != nil {
				return err
			}
			if found {
				return nil
			}
			if !blocked {
				return refused
			}
		}
		if step == len(deepenSteps) {
			if !s.hasCommit(floorHash) {
				refused.Unknown = true
			} else {
				refused.Undecided = true
			}
			return refused
		}
		depth := deepenSteps[step]
		s.logFor(ctx).Debug().Str("floor", floor).Str("checked", sha).Int("depth", depth).Bool("floor_cached", s.hasCommit(floorHash)).
			Msg("deepening the branch history to check the min_commit floor")
		if err := s.fetch(ctx, branchSpec, depth); err != nil {
			return fmt.Errorf("fetch %s@%s (depth %d, checking %s against min_commit %s): %w", s.redacted, s.opts.Branch, depth, sha, floor, err)
		}
		// sha may sit on another branch (pinned by SHA): its own history
		// does not come with the branch's.
		if blocked {
			if err := s.tryFetchSHA(ctx, sha, depth); err != nil {
				return err
			}
		}
	}
}

// tryFetchSHA fetches sha's history to depth by SHA. A refusal is not an
// error (many servers refuse unadvertised objects, and deepening the
// branch is the fallback); only failures deepening cannot fix are.
func (s *Source) tryFetchSHA(ctx context.Context, sha string, depth int) error {
	spec := config.RefSpec(fmt.Sprintf("+%s:refs/lockstep/commits/%s", sha, sha))
	err := s.fetch(ctx, spec, depth)
	if err == nil {
		return nil
	}
	if fatalFetchError(ctx, err) {
		return fmt.Errorf("fetch %s@%s: %w", s.redacted, sha, err)
	}
	s.logFor(ctx).Debug().Str("checked", sha).Int("depth", depth).Str("reason", err.Error()).Msg("server would not send the commit by SHA")
	return nil
}

// descends walks the cached history back from sha looking for floor.
// blocked says the walk met a commit whose parents are not in the cache
// (a shallow boundary), so not finding floor is not yet an answer.
func (s *Source) descends(ctx context.Context, sha, floor plumbing.Hash) (found, blocked bool, err error) {
	seen := map[plumbing.Hash]bool{sha: true}
	queue := []plumbing.Hash{sha}
	for n := 0; len(queue) > 0; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return false, false, fmt.Errorf("check floor %s for %s: %w", floor, sha, ctx.Err())
		}
		h := queue[0]
		queue = queue[1:]
		if h == floor {
			return true, false, nil
		}
		c, err := s.repo.CommitObject(h)
		if err != nil {
			blocked = true
			continue
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, blocked, nil
}
