package gitsource

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ListPins returns the branch head and the pin files at it that glob
// matches (repo-relative, sorted): what an [[environment_set]] deploys.
// The glob has wildcards (path.Match) in its last element only, so the
// answer is one tree read: names only, no blob, which a partial cache
// (trees without blobs) has. A missing directory is no files. The cache
// is fetched only when it lacks the head (see Source.Fetch).
func (r *Releases) ListPins(ctx context.Context, glob string) (string, []string, error) {
	dir, pattern := path.Dir(glob), path.Base(glob)
	if strings.ContainsAny(dir, "*?[") {
		return "", nil, fmt.Errorf("list pins %s: wildcards are allowed in the file name only", glob)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return "", nil, fmt.Errorf("list pins %s: %w", glob, err)
	}
	head, err := r.src.Fetch(ctx)
	if err != nil {
		return "", nil, err
	}
	files, err := r.src.listTree(ctx, head, dir, pattern)
	if err != nil {
		return head, nil, fmt.Errorf("list pins %s at %s: %w", glob, head, err)
	}
	return head, files, nil
}

// listTree lists the regular files of dir at commit whose names match
// pattern.
func (s *Source) listTree(ctx context.Context, commit, dir, pattern string) ([]string, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := s.repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("commit %s is not in the cache: %w", commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	if dir != "." {
		tree, err = tree.Tree(dir)
		if errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	var out []string
	for _, e := range tree.Entries {
		if e.Mode == filemode.Symlink || !e.Mode.IsFile() {
			continue
		}
		if ok, _ := path.Match(pattern, e.Name); ok {
			out = append(out, path.Join(dir, e.Name))
		}
	}
	sort.Strings(out)
	return out, nil
}
