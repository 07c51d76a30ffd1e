package gitsource

// Fetching drives go-git's upload-pack session itself rather than going
// through git.Remote: go-git's FetchOptions cannot ask for a filter, and a
// partial (blob:none) fetch is what keeps a monorepo's first sync small. A
// fetch then brings commits and trees only; the blobs a release needs are
// fetched later, by id, by ensureBlobs. A server that does not offer
// filters gets today's full shallow fetch.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage"
)

// Markers in the cache's git dir; git and go-git ignore unknown files there.
const (
	// partialMarker says the cache was filled, at least once, by a filtered
	// fetch: blobs may be missing and are fetched on demand. It is written
	// before the first filtered pack, so a crash leaves it too many times,
	// never too few.
	partialMarker = "lockstep-partial"
	// noFilterMarker says the server would not send blobs by id: later
	// fetches are full again, so that what they bring is complete. It
	// stays: deleting it (lockstep stopped) lets fetches filter again.
	noFilterMarker = "lockstep-nofilter"
)

// packRequest is one upload-pack request: which objects, how deep, and
// whether blobs may be left out.
type packRequest struct {
	wants  []plumbing.Hash
	haves  []plumbing.Hash
	depth  int  // 0: no deepen line (blob fetches)
	filter bool // blob:none
}

// session opens an upload-pack session and reads the server's refs and
// capabilities. The caller closes the session.
func (s *Source) session(ctx context.Context, auth transport.AuthMethod) (transport.UploadPackSession, *packp.AdvRefs, error) {
	ep, err := transport.NewEndpoint(s.opts.URL)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.NewClient(ep)
	if err != nil {
		return nil, nil, err
	}
	sess, err := c.NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, nil, err
	}
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		_ = sess.Close()
		return nil, nil, err
	}
	return sess, ar, nil
}

// fetch runs one fetch into the cache under its own deadline. Depth 0 is
// not used: every fetch here is shallow or explicitly deepened.
func (s *Source) fetch(ctx context.Context, spec config.RefSpec, depth int) error {
	return s.transfer(ctx, func(ctx context.Context, auth transport.AuthMethod) error {
		return s.fetchRef(ctx, auth, spec, depth, false)
	})
}

// transfer runs op, one upload-pack exchange writing the cache, under the
// fetch deadline, abandoning it if it ignores that (see bounded), with the
// error scrubbed of secrets. Callers hold the lock.
func (s *Source) transfer(ctx context.Context, op func(context.Context, transport.AuthMethod) error) error {
	auth, sc, err := s.auth()
	if err != nil {
		return err
	}
	if err := s.removeTempObjects(ctx); err != nil {
		return noSpace(err, s.opts.StateDir)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	abandoned, err := bounded(ctx, func() error { return op(ctx, auth) })
	s.abandon(abandoned)
	if err != nil {
		return noSpace(s.authHint(sc.err(ctxErr(ctx, err))), s.opts.StateDir)
	}
	return noSpace(s.tidyShallow(), s.opts.StateDir)
}

// fetchRef fetches what spec names (a ref, or an exact SHA) to depth and
// points spec's destination at it. It runs in bounded and so may be
// abandoned: it only writes through the storer. again fetches the commit
// even when the cache has it (to bring its blobs in full).
func (s *Source) fetchRef(ctx context.Context, auth transport.AuthMethod, spec config.RefSpec, depth int, again bool) (err error) {
	sess, ar, err := s.session(ctx, auth)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sess.Close()) }()

	want, err := s.wantOf(spec, ar)
	if err != nil {
		return err
	}
	dst := spec.Dst("")
	if !again && s.hasCommit(want) && (depth == 1 || !s.shallow()) {
		return s.setRef(dst, want.String())
	}
	filter := s.filterOK(ar.Capabilities)
	if filter {
		if err := s.mark(partialMarker); err != nil {
			return err
		}
	}
	haves, err := s.haves(filter)
	if err != nil {
		return err
	}
	if depth == 1 && len(haves) > 0 {
		// At depth 1 the server cuts history at want, so its walk never
		// meets the haves and it sends want's whole tree again: it only
		// leaves out what the haves hold when it may send a thin pack,
		// which go-git cannot store. At depth 2 the walk reaches want's
		// parents; when one is a have (a push of one commit, or a merge
		// onto the old head) only what changed comes, at the price of one
		// more commit in the cache when it is not.
		depth = 2
	}
	if err := s.fetchPack(ctx, sess, ar, packRequest{wants: []plumbing.Hash{want}, haves: haves, depth: depth, filter: filter}); err != nil {
		return err
	}
	return s.setRef(dst, want.String())
}

// wantOf is the object spec asks for, as the server advertises it.
func (s *Source) wantOf(spec config.RefSpec, ar *packp.AdvRefs) (plumbing.Hash, error) {
	if spec.IsExactSHA1() {
		if !ar.Capabilities.Supports(capability.AllowReachableSHA1InWant) && !ar.Capabilities.Supports(capability.AllowTipSHA1InWant) {
			return plumbing.ZeroHash, git.ErrExactSHA1NotSupported
		}
		return plumbing.NewHash(spec.Src()), nil
	}
	refs, err := ar.AllReferences()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	ref, err := storer.ResolveReference(refs, plumbing.ReferenceName(spec.Src()))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("couldn't find remote ref %q: %w", spec.Src(), err)
	}
	return ref.Hash(), nil
}

// filterOK says whether fetches may leave blobs out: the server offers
// filters and will later send a blob asked for by id, and has not refused
// to before.
func (s *Source) filterOK(caps *capability.List) bool {
	return caps.Supports(capability.Filter) && caps.Supports(capability.AllowReachableSHA1InWant) && !s.marked(noFilterMarker)
}

// haves are the commits the cache's refs point at, so the server sends
// only what they lack. A partial cache fetched in full again (the server
// stopped filtering) says it has nothing: the server would otherwise leave
// out the blobs of unchanged files, which the cache may never have had.
func (s *Source) haves(filter bool) ([]plumbing.Hash, error) {
	if !filter && s.marked(partialMarker) {
		return nil, nil
	}
	iter, err := s.repo.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("list cache refs: %w", err)
	}
	seen := map[plumbing.Hash]bool{}
	var haves []plumbing.Hash
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if h := r.Hash(); r.Type() == plumbing.HashReference && !seen[h] && s.hasCommit(h) {
			seen[h] = true
			haves = append(haves, h)
		}
		return nil
	})
	return haves, err
}

// fetchPack sends one request on sess and writes the pack it answers into
// the cache, recording the new shallow boundary first (as go-git does).
func (s *Source) fetchPack(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, pr packRequest) (err error) {
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants = pr.wants
	req.Haves = pr.haves
	if ar.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return err
		}
	}
	if pr.depth > 0 {
		if err := req.Capabilities.Set(capability.Shallow); err != nil {
			return err
		}
		req.Depth = packp.DepthCommits(pr.depth)
		if req.Shallows, err = s.repo.Storer.Shallow(); err != nil {
			return fmt.Errorf("read shallow list of cache: %w", err)
		}
	}
	if pr.filter {
		if err := req.Capabilities.Set(capability.Filter); err != nil {
			return err
		}
		req.Filter = packp.FilterBlobNone()
	}
	resp, err := sess.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, resp.Close()) }()
	if pr.depth > 0 {
		if err := s.addShallow(resp.Shallows); err != nil {
			return err
		}
	}
	var pack io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	return packfile.UpdateObjectStorage(s.packStorer(), pack)
}

// packStorer is the cache's storer, draining for the file transport (see
// drainingStorer).
func (s *Source) packStorer() storage.Storer {
	var st storage.Storer = s.repo.Storer
	if pw, ok := st.(storer.PackfileWriter); ok && s.local {
		st = drainingStorer{Storer: st, pw: pw}
	}
	return st
}

// addShallow adds the server's new shallow commits to the cache's list;
// tidyShallow later drops those whose parents have arrived.
func (s *Source) addShallow(add []plumbing.Hash) error {
	if len(add) == 0 {
		return nil
	}
	cur, err := s.repo.Storer.Shallow()
	if err != nil {
		return fmt.Errorf("read shallow list of cache: %w", err)
	}
	seen := make(map[plumbing.Hash]bool, len(cur))
	for _, h := range cur {
		seen[h] = true
	}
	for _, h := range add {
		if !seen[h] {
			seen[h] = true
			cur = append(cur, h)
		}
	}
	if err := s.repo.Storer.SetShallow(cur); err != nil {
		return fmt.Errorf("write shallow list of cache: %w", err)
	}
	return nil
}

func (s *Source) marked(name string) bool {
	_, err := os.Lstat(filepath.Join(s.gitDir, name))
	return err == nil
}

// mark writes marker name (empty, its existence is the fact) durably:
// the file and its directory are synced.
func (s *Source) mark(name string) error {
	if s.marked(name) {
		return nil
	}
	p := filepath.Join(s.gitDir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("mark git cache: %w", err)
	}
	err = errors.Join(f.Sync(), f.Close())
	if err == nil {
		err = syncDir(s.gitDir)
	}
	if err != nil {
		return fmt.Errorf("mark git cache: %w", err)
	}
	return nil
}

// shallow says the cache's history is cut somewhere.
func (s *Source) shallow() bool {
	list, err := s.repo.Storer.Shallow()
	return err != nil || len(list) > 0
}
