// Package gitsource owns everything git for lockstep: the cheap "did the
// branch move?" check, shallow (and, where the server allows, partial)
// fetching into an on-disk cache, reading and resolving pin files,
// verifying commit signatures, and materializing what compose uses of a
// commit's tree as an immutable, read-only release directory. It also owns
// release resolution (Releases): which commit an environment runs, under
// the pin trust rules and the min_commit floor.
//
// It uses go-git only. It never talks to the Docker engine, never parses
// compose files and never reads lockstep's config: it hands out releases
// (40-hex SHAs, what the pin says, release directories), nothing more.
// Secrets (tokens, passwords in URLs) never appear in its logs or errors.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/rs/zerolog"
)

// Options configure a Source.
type Options struct {
	URL      string        // https://, http://, ssh://, git@host:path (scp-like), file://, or a local path
	Branch   string        // tracked branch; default "main"
	StateDir string        // cache at StateDir/git (bare repo), releases at StateDir/releases
	Auth     Auth          // how to authenticate; secrets come from files
	Timeout  time.Duration // per network operation; default 60s
	Log      zerolog.Logger
	Verify   VerifyOptions // trusted keys for VerifyCommit; empty: verification off
}

// DefaultBranch and DefaultTimeout apply when Options leave them empty.
const (
	DefaultBranch  = "main"
	DefaultTimeout = 60 * time.Second
)

// deepenSteps are the history depths tried, in order, when a pinned SHA
// cannot be fetched by SHA and must be found on the branch. The last one is
// git's "infinite" depth: the whole history.
var deepenSteps = []int{50, 200, 1000, 1<<31 - 1}

// Source is one repository and branch, with its cache and releases on disk.
// It is safe for concurrent use: operations that touch the cache or the
// releases run one at a time (within the process by a semaphore, across
// processes sharing StateDir by a file lock).
type Source struct {
	opts     Options
	redacted string // URL for logs and errors
	creds    credentials
	log      zerolog.Logger

	gitDir       string
	releasesDir  string
	manifestsDir string // a release's manifest, outside the release (see manifest)
	lockPath     string

	sem   chan struct{} // capacity 1: the in-process half of the lock
	repo  *git.Repository
	trust *trustedKeys // nil: verification off
	local bool         // file transport: git-upload-pack runs as a child process

	// pending is closed when an operation abandoned at its deadline
	// returns; until then it holds the file lock. Guarded by sem.
	pending <-chan struct{}
	// linkFile is os.Link when nil; tests make it fail (see dedupe).
	linkFile func(oldname, newname string) error
	cacheDir os.FileInfo // the cache dir s.repo was opened on (see followRebuild)
	maxPacks int         // DefaultMaxPacks when 0; tests set it (see compact)
}

// New checks opts, loads credentials that can be loaded up front and opens
// (or creates) the cache. It does not touch the network.
func New(opts Options) (*Source, error) {
	if opts.URL == "" {
		return nil, errors.New("repo URL is empty; set it to the infrastructure repository's clone URL")
	}
	redacted := RedactURL(opts.URL)
	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("repo URL %s: %w", redacted, scrubber{url: opts.URL}.err(err))
	}
	if ep.Password != "" {
		return nil, fmt.Errorf("repo URL %s contains a password or token; remove it from the URL and put the token in a file named by auth token_file", redacted)
	}
	// go-git reads more than lockstep accepts (relative paths, git://):
	// the transport is the one config validated.
	tr, err := ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("repo URL: %w", err)
	}
	if opts.Branch == "" {
		opts.Branch = DefaultBranch
	}
	if err := plumbing.NewBranchReferenceName(opts.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("branch %q is not a valid branch name", opts.Branch)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("git timeout must be positive, got %s", opts.Timeout)
	}
	if opts.StateDir == "" {
		return nil, errors.New("state dir is empty; set it to a directory lockstep owns (e.g. /var/lib/lockstep)")
	}
	stateDir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", opts.StateDir, err)
	}
	opts.StateDir = stateDir
	creds, err := newCredentials(ep, tr, opts.Auth, opts.Timeout)
	if err != nil {
		return nil, err
	}
	// Read on every New (the agent rebuilds the Source on SIGHUP), so a bad
	// key file stops startup or the reload, not a deploy.
	trust, err := loadTrustedKeys(opts.Verify)
	if err != nil {
		return nil, err
	}
	if ep.Protocol == "http" && opts.Auth.TokenFile != "" {
		opts.Log.Warn().Str("url", redacted).Msg("token sent over plain http: anyone on the path can read it; use https")
	}

	s := &Source{
		opts:         opts,
		redacted:     redacted,
		creds:        creds,
		log:          opts.Log.With().Str("component", "gitsource").Str("repo", redacted).Str("branch", opts.Branch).Logger(),
		gitDir:       filepath.Join(stateDir, "git"),
		releasesDir:  filepath.Join(stateDir, "releases"),
		manifestsDir: filepath.Join(stateDir, "release-manifests"),
		lockPath:     filepath.Join(stateDir, "lock"),
		sem:          make(chan struct{}, 1),
		trust:        trust,
		local:        tr == TransportLocal,
	}
	// Releases are bind-mounted into containers that may run as any user,
	// so their parents must be traversable; the cache needs no one else.
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if err := os.MkdirAll(s.releasesDir, 0o755); err != nil {
		return nil, fmt.Errorf("create releases dir: %w", err)
	}
	if err := s.recoverCacheLocked(); err != nil {
		return nil, err
	}
	s.cacheDir, _ = os.Stat(s.gitDir) // before opening: a rebuild meanwhile is then seen (followRebuild)
	if s.repo, err = git.PlainOpen(s.gitDir); err != nil {
		if s.repo, err = s.openCacheLocked(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// openCacheLocked opens or makes the cache under its lock, for a cache
// that is not there yet or is being made: the agent and a `lockstep
// apply` started at once on a fresh state dir would both make it, and one
// would fail. An existing cache is opened without it, so that a reload
// during a fetch does not wait for the fetch.
func (s *Source) openCacheLocked() (*git.Repository, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	unlock, err := lockFile(ctx, s.lockPath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Restore, not remake, a cache a killed rebuild left as git.old.
	if err := recoverCache(s.gitDir); err != nil {
		return nil, err
	}
	return openCache(s.gitDir)
}

func openCache(dir string) (*git.Repository, error) {
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create git cache: %w", err)
		}
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("open git cache %s: %w (if it is damaged, stop lockstep and delete it: it is only a cache)", dir, err)
	}
	return repo, nil
}

// Branch returns the tracked branch.
func (s *Source) Branch() string { return s.opts.Branch }

// URL returns the repository URL with any credentials removed.
func (s *Source) URL() string { return s.redacted }

// Head returns the SHA the remote branch points at: one ref listing, no
// objects fetched, the cache untouched. It is the cheap "did the branch
// move?" check.
func (s *Source) Head(ctx context.Context) (string, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return "", fmt.Errorf("check head of %s@%s: %w", s.redacted, s.opts.Branch, err)
	}
	name := plumbing.NewBranchReferenceName(s.opts.Branch)
	h, ok := refs[name]
	if !ok {
		return "", fmt.Errorf("check head of %s@%s: %w", s.redacted, s.opts.Branch,
			&RefNotFoundError{Name: s.opts.Branch, URL: s.redacted})
	}
	return h.String(), nil
}

// listRefs lists the remote's refs, with annotated tags' peeled commits
// under "<tag>^{}".
func (s *Source) listRefs(ctx context.Context) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	auth, sc, err := s.auth()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.opts.URL}})
	var list []*plumbing.Reference
	// Abandoned, a listing holds nothing: it writes no cache.
	_, err = bounded(ctx, func() (err error) {
		list, err = remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
		return err
	})
	if err != nil {
		return nil, s.authHint(sc.err(ctxErr(ctx, err)))
	}
	refs := make(map[plumbing.ReferenceName]plumbing.Hash, len(list))
	for _, r := range list {
		if r.Type() == plumbing.HashReference {
			refs[r.Name()] = r.Hash()
		}
	}
	return refs, nil
}

// auth returns the auth method for one network operation and a scrubber
// for whatever that operation returns.
func (s *Source) auth() (transport.AuthMethod, scrubber, error) {
	sc := scrubber{url: s.opts.URL}
	method, secrets, err := s.creds.method()
	if err != nil {
		return nil, sc, err
	}
	sc.secrets = secrets
	return method, sc, nil
}

// authHint says what to do about a refused login, which go-git reports
// only as "authentication required".
func (s *Source) authHint(err error) error {
	if c, ok := s.creds.(sshCredentials); ok {
		if explained := c.refused(err); explained != err {
			return explained
		}
	}
	if !errors.Is(err, transport.ErrAuthenticationRequired) && !errors.Is(err, transport.ErrAuthorizationFailed) {
		return err
	}
	if s.opts.Auth.TokenFile == "" && s.opts.Auth.SSHKey == "" {
		return fmt.Errorf("%w (the repository needs credentials: set auth token_file for https or ssh_key for ssh)", err)
	}
	return fmt.Errorf("%w (check that the credentials in auth token_file / ssh_key are current and may read the repository)", err)
}

// ctxErr makes a deadline visible: go-git often reports a cancelled
// request as a bare I/O error.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// Fetch makes the branch head present in the cache, shallow (depth 1; 2
// when the cache has commits to start from, see fetchRef), and returns its
// SHA. From a server that offers partial clone it fetches commits and
// trees only (see ensureBlobs). When the cache already has the head
// commit, only the ref listing goes over the network. A cache holding more
// than DefaultMaxPacks packs is rebuilt from the head instead (see compact).
func (s *Source) Fetch(ctx context.Context) (string, error) {
	head, err := s.Head(ctx)
	if err != nil {
		return "", err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()

	local := plumbing.NewRemoteReferenceName("origin", s.opts.Branch)
	if s.hasCommit(plumbing.NewHash(head)) {
		if err := s.setRef(local, head); err != nil {
			return "", err
		}
		return head, nil
	}
	rebuilt, err := s.compact(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch %s@%s: %w", s.redacted, s.opts.Branch, err)
	}
	if !rebuilt {
		spec := config.RefSpec(fmt.Sprintf("+%s:%s", plumbing.NewBranchReferenceName(s.opts.Branch), local))
		if err := s.fetch(ctx, spec, 1); err != nil {
			return "", fmt.Errorf("fetch %s@%s: %w", s.redacted, s.opts.Branch, err)
		}
	}
	// The branch may have moved between the listing and the fetch: report
	// what was actually fetched.
	ref, err := s.repo.Reference(local, false)
	if err != nil {
		return "", fmt.Errorf("fetch %s@%s: read fetched ref: %w", s.redacted, s.opts.Branch, err)
	}
	sha := ref.Hash().String()
	s.logFor(ctx).Debug().Str("head", sha).Msg("fetched branch head")
	return sha, nil
}

func (s *Source) hasCommit(h plumbing.Hash) bool {
	_, err := s.repo.CommitObject(h)
	return err == nil
}

// setRef points name at sha, writing only when it points elsewhere.
func (s *Source) setRef(name plumbing.ReferenceName, sha string) error {
	if cur, err := s.repo.Storer.Reference(name); err == nil && cur.Hash().String() == sha {
		return nil
	}
	if err := s.repo.Storer.SetReference(plumbing.NewHashReference(name, plumbing.NewHash(sha))); err != nil {
		return fmt.Errorf("update cache ref %s: %w", name, err)
	}
	return nil
}

// Resolve turns pin.Commit into a full 40-hex SHA and makes sure that
// commit's objects are in the cache.
//
// A full SHA already in the cache costs nothing. Otherwise it is fetched by
// SHA; a server that refuses unadvertised objects (git's default) gets the
// branch history deepened step by step instead (50, 200, 1000 commits, then
// all of it) until the commit shows up; if it never does, the error is a
// *NotOnBranchError. A branch or tag name is looked up in one ref listing
// (annotated tags peeled to their commit) and fetched shallow.
func (s *Source) Resolve(ctx context.Context, pin Pin) (string, error) {
	if msg := checkCommit(pin.Commit); msg != "" {
		return "", &PinError{File: pin.File, Key: "commit", Message: msg}
	}
	if len(pin.Commit) == 40 && hexOnly.MatchString(pin.Commit) {
		return s.resolveSHA(ctx, pin, strings.ToLower(pin.Commit))
	}
	return s.resolveName(ctx, pin)
}

func (s *Source) resolveSHA(ctx context.Context, pin Pin, sha string) (string, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	hash := plumbing.NewHash(sha)
	if s.hasCommit(hash) {
		return sha, nil
	}

	spec := config.RefSpec(fmt.Sprintf("+%s:refs/lockstep/commits/%s", sha, sha))
	err = s.fetch(ctx, spec, 1)
	if err == nil && s.hasCommit(hash) {
		s.logFor(ctx).Debug().Str("pinned", sha).Msg("fetched pinned commit by SHA")
		return sha, nil
	}
	if err != nil {
		if fatalFetchError(ctx, err) {
			return "", fmt.Errorf("fetch %s@%s: %w", s.redacted, sha, err)
		}
		// Expected against servers without uploadpack.allowReachableSHA1InWant
		// (go-git then reports ErrExactSHA1NotSupported) and for SHAs the
		// server does not know ("not our ref"); both are settled below.
		s.logFor(ctx).Info().Str("pinned", sha).Str("reason", err.Error()).
			Msg("server would not send the commit by SHA; deepening the branch history to find it")
	}

	branchSpec := config.RefSpec(fmt.Sprintf("+%s:%s",
		plumbing.NewBranchReferenceName(s.opts.Branch), plumbing.NewRemoteReferenceName("origin", s.opts.Branch)))
	for _, depth := range deepenSteps {
		if err := s.fetch(ctx, branchSpec, depth); err != nil {
			return "", fmt.Errorf("fetch %s@%s (depth %d, looking for %s): %w", s.redacted, s.opts.Branch, depth, sha, err)
		}
		if s.hasCommit(hash) {
			s.logFor(ctx).Debug().Str("pinned", sha).Int("depth", depth).Msg("found pinned commit in branch history")
			return sha, nil
		}
	}
	return "", &NotOnBranchError{Commit: sha, Branch: s.opts.Branch, URL: s.redacted, File: pin.File}
}

// fatalFetchError tells errors that deepening cannot fix (deadline,
// credentials, host key, unreachable server) from a refused or unknown SHA.
func fatalFetchError(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	// A refused host key would be met again at every depth.
	var hostKey *HostKeyError
	if errors.As(err, &hostKey) {
		return true
	}
	for _, target := range []error{
		context.DeadlineExceeded, context.Canceled,
		transport.ErrAuthenticationRequired, transport.ErrAuthorizationFailed,
		transport.ErrRepositoryNotFound, transport.ErrInvalidAuthMethod,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// tidyShallow drops commits from the shallow list whose parents are now all
// present. go-git only ever adds to that list; left alone, every later
// fetch would tell the server we lack history we have, and a real git
// reading the cache would show truncated logs.
func (s *Source) tidyShallow() error {
	shallows, err := s.repo.Storer.Shallow()
	if err != nil {
		return fmt.Errorf("read shallow list of cache: %w", err)
	}
	keep := shallows[:0:0]
	for _, h := range shallows {
		c, err := s.repo.CommitObject(h)
		if err != nil {
			keep = append(keep, h)
			continue
		}
		for _, p := range c.ParentHashes {
			if !s.hasCommit(p) {
				keep = append(keep, h)
				break
			}
		}
	}
	if len(keep) == len(shallows) {
		return nil
	}
	if err := s.repo.Storer.SetShallow(keep); err != nil {
		return fmt.Errorf("write shallow list of cache: %w", err)
	}
	return nil
}

func (s *Source) resolveName(ctx context.Context, pin Pin) (string, error) {
	name := pin.Commit
	refs, err := s.listRefs(ctx)
	if err != nil {
		return "", fmt.Errorf("resolve %q on %s: %w", name, s.redacted, err)
	}
	var candidates []plumbing.ReferenceName
	if strings.HasPrefix(name, "refs/") {
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(name)}
	} else {
		candidates = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(name), plumbing.NewTagReferenceName(name)}
	}
	var found []plumbing.ReferenceName
	for _, c := range candidates {
		if _, ok := refs[c]; ok {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return "", &RefNotFoundError{Name: name, URL: s.redacted, File: pin.File}
	case 2:
		return "", &PinError{File: pin.File, Key: "commit", Message: fmt.Sprintf(
			"%q is both a branch and a tag on %s; write %q or %q", name, s.redacted, found[0], found[1])}
	}
	remoteRef := found[0]
	want := refs[remoteRef]
	if peeled, ok := refs[remoteRef+"^{}"]; ok {
		want = peeled
	}
	local := plumbing.ReferenceName("refs/lockstep/" + strings.TrimPrefix(remoteRef.String(), "refs/"))

	unlock, err := s.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	if s.hasCommit(want) {
		return want.String(), nil
	}
	if err := s.fetch(ctx, config.RefSpec(fmt.Sprintf("+%s:%s", remoteRef, local)), 1); err != nil {
		return "", fmt.Errorf("fetch %s@%s: %w", s.redacted, remoteRef, err)
	}
	// The ref may have moved since the listing; peel what was fetched.
	ref, err := s.repo.Reference(local, false)
	if err != nil {
		return "", fmt.Errorf("fetch %s@%s: read fetched ref: %w", s.redacted, remoteRef, err)
	}
	commit, err := s.peel(ref.Hash())
	if err != nil {
		return "", fmt.Errorf("resolve %s@%s: %w", s.redacted, remoteRef, err)
	}
	s.logFor(ctx).Debug().Str("ref", remoteRef.String()).Str("pinned", commit.String()).Msg("resolved pinned ref")
	return commit.String(), nil
}

// peel follows annotated tags (possibly nested) to the commit they name.
func (s *Source) peel(h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		obj, err := s.repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read object %s: %w", h, err)
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o.Hash, nil
		case *object.Tag:
			h = o.Target
		default:
			return plumbing.ZeroHash, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("tag %s: too many nested tags", h)
}

// ReadPin reads and parses the pin file pinPath at commit at (normally the
// branch head Fetch returned) from the cache. A missing file is an error
// matching ErrPinNotFound, naming the path and the commit.
func (s *Source) ReadPin(ctx context.Context, at string, pinPath string) (Pin, error) {
	if len(at) != 40 || !hexOnly.MatchString(at) {
		return Pin{}, fmt.Errorf("read pin %s: %q is not a full 40-hex commit SHA", pinPath, at)
	}
	clean, msg := checkRepoPath(pinPath)
	if msg != "" {
		return Pin{}, fmt.Errorf("pin file path %s", msg)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Pin{}, err
	}
	defer unlock()
	commit, err := s.repo.CommitObject(plumbing.NewHash(strings.ToLower(at)))
	if err != nil {
		return Pin{}, fmt.Errorf("read pin %s: commit %s is not in the cache (fetch it first): %w", clean, at, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return Pin{}, fmt.Errorf("read pin %s at %s: %w", clean, at, err)
	}
	entry, err := tree.FindEntry(clean)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
		return Pin{}, fmt.Errorf("%w: %s does not exist at commit %s of %s@%s; add it, or fix the environment's pin path",
			ErrPinNotFound, clean, at, s.redacted, s.opts.Branch)
	}
	if err != nil {
		return Pin{}, fmt.Errorf("read pin %s at %s: %w", clean, at, err)
	}
	if entry.Mode == filemode.Symlink || !entry.Mode.IsFile() {
		return Pin{}, fmt.Errorf("read pin %s at %s: not a regular file (mode %s)", clean, at, entry.Mode)
	}
	// A partial cache may lack the pin's blob.
	if err := s.ensureBlobs(ctx, []plumbing.Hash{entry.Hash}); err != nil {
		return Pin{}, fmt.Errorf("read pin %s at %s: %w", clean, at, err)
	}
	file, err := tree.TreeEntryFile(entry)
	if err != nil {
		return Pin{}, fmt.Errorf("read pin %s at %s: %w", clean, at, err)
	}
	const maxPinSize = 1 << 20
	if file.Size > maxPinSize {
		return Pin{}, fmt.Errorf("read pin %s at %s: %d bytes is too large for a pin file", clean, at, file.Size)
	}
	data, err := file.Contents()
	if err != nil {
		return Pin{}, fmt.Errorf("read pin %s at %s: %w", clean, at, err)
	}
	return ParsePin(clean, []byte(data))
}
