package gitsource

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// Want says which release of an environment a pass wants.
type Want struct {
	Environment string // for messages and log fields only
	PinFile     string // repo-relative pin path
	MinCommit   string // floor: full SHA, "" = none
	Commit      string // when set, replaces the pin's commit (a rollback, validate --commit)
}

// Release is a resolved revision of an environment. Dir is "" until
// Materialize.
type Release struct {
	Head         string            // branch head the pin was read at
	Commit       string            // 40-hex
	Dir          string            // immutable release directory, set by Materialize
	PinFile      string            // repo-relative path the pin was read from
	ComposeFiles []string          // the pin's compose_files
	Vars         map[string]string // the pin's [vars]
	EnvFiles     []string          // the pin's env_files
	Signatures   []string          // who signed what was verified, one sentence each
	Paused       bool
	Windows      []window.Window // the pin's deploy windows (Pin.Windows)
}

// ReleasesOptions say how Releases trusts what it reads.
type ReleasesOptions struct {
	// VerifyHead and VerifyPinned are [repo.verify].commits: verify the
	// branch head the pin is read at, the commit it pins, or both. Both
	// false means no verification. Either needs the Source's trusted keys.
	VerifyHead, VerifyPinned bool
	// Kept is how many release directories no one uses are kept beyond
	// those in use when pruning, for a rollback that works while git is
	// unreachable.
	Kept int
}

// Releases turns what an environment wants into a verified release:
// fetch, verify the branch head, read the pin at it, apply the trust rules
// of a partial verification, resolve the pin, verify the pinned commit,
// check the floor. Every check comes before anything is written: a refused
// commit leaves no release directory behind, let alone a container.
type Releases struct {
	src  *Source
	opts ReleasesOptions
	held heldPaths // what releases hold, for AddPaths' fast answer
}

// NewReleases returns Releases over src.
func NewReleases(src *Source, opts ReleasesOptions) *Releases {
	return &Releases{src: src, opts: opts}
}

// The values of [repo.verify].commits, as the trust-rule messages name
// them. They mirror the config keys; gitsource does not read config.
const (
	commitsHead   = "head"
	commitsPinned = "pinned"
	commitsBoth   = "both"
)

// Resolve finds and checks the release w wants. It writes no release
// directory (see Materialize). On error it returns the Release as far as
// it got (Head, maybe Commit) with the error.
func (r *Releases) Resolve(ctx context.Context, w Want) (Release, error) {
	if _, ok := ctxLogger(ctx); !ok {
		// No pass logger: what is logged is still about this environment.
		ctx = r.src.opts.Log.With().Str("env", w.Environment).Logger().WithContext(ctx)
	}
	head, err := r.src.Fetch(ctx)
	if err != nil {
		return Release{}, err
	}
	rel := Release{Head: head}
	if r.opts.VerifyHead {
		sig, err := r.verified(ctx, head, RoleHead)
		if err != nil {
			return rel, err
		}
		rel.Signatures = append(rel.Signatures, sig)
	}
	pin, err := r.src.ReadPin(ctx, head, w.PinFile)
	if err != nil {
		return rel, err
	}
	if err := r.trustedPin(pin, w.Commit); err != nil {
		return rel, err
	}
	if w.Commit != "" {
		pin.Commit = w.Commit
	}
	sha, err := r.src.Resolve(ctx, pin)
	if err != nil {
		return rel, err
	}
	rel.Commit = sha
	// The pinned commit is verified even when it is the head itself: the
	// roles differ only in the message.
	if r.opts.VerifyPinned {
		sig, err := r.verified(ctx, sha, RolePinned)
		if err != nil {
			return rel, err
		}
		rel.Signatures = append(rel.Signatures, sig)
	}
	if w.MinCommit != "" {
		if err := r.src.CheckFloor(ctx, w.MinCommit, sha); err != nil {
			return rel, err
		}
	}
	rel.PinFile = pin.File
	rel.ComposeFiles = slices.Clone(pin.ComposeFiles)
	rel.Vars = maps.Clone(pin.Vars)
	rel.EnvFiles = slices.Clone(pin.EnvFiles)
	rel.Paused = pin.Paused
	rel.Windows = slices.Clone(pin.Windows)
	return rel, nil
}

// Materialize makes rel.Commit's immutable release directory, empty: the
// compose loader adds what it uses (AddPaths; see partial.go). A release
// already there is verified against its manifest and what was changed in
// it by hand is restored from git. It returns rel with Dir set. A compose
// or env file of rel over its limit (MaxComposeFileBytes,
// MaxEnvFileBytes) is refused when it is added, before it is written. An
// existing release that is as git wrote it needs no git: the rollback of
// a release still on disk works while git is unreachable.
func (r *Releases) Materialize(ctx context.Context, rel Release) (Release, error) {
	dir, err := r.src.materialize(ctx, rel.Commit, readFiles{compose: rel.ComposeFiles, env: rel.EnvFiles}, true)
	if err != nil {
		return rel, err
	}
	rel.Dir = dir
	return rel, nil
}

// trustedPin refuses what a partial verification would let an untrusted
// pusher decide. Verifying only the pinned commit leaves the pin file
// itself unverified, so its [vars], compose_files and env_files (which
// change what the signed tree runs) are refused; paused can only hold a
// release back. Verifying only the head trusts the pin's words, which for
// a branch or tag name means whatever that ref points to later: a full SHA
// is required. commit, when set, replaces the pin's commit (a rollback).
func (r *Releases) trustedPin(pin Pin, commit string) error {
	if !r.opts.VerifyHead && !r.opts.VerifyPinned {
		return nil
	}
	if !r.opts.VerifyHead {
		var set []string
		if len(pin.Vars) > 0 {
			set = append(set, "[vars]")
		}
		if len(pin.ComposeFiles) > 0 {
			set = append(set, "compose_files")
		}
		if len(pin.EnvFiles) > 0 {
			set = append(set, "env_files")
		}
		if len(set) > 0 {
			return &PinError{File: pin.File, Key: strings.Join(set, ", "), Message: fmt.Sprintf(
				"refused: [repo.verify].commits = %q verifies the pinned commit but not the branch head, so these settings of the pin file could come from anyone who can push; move them into the signed tree (.env, the compose files) or set commits = %q",
				commitsPinned, commitsBoth)}
		}
	}
	if !r.opts.VerifyPinned && commit == "" && !fullSHA.MatchString(pin.Commit) {
		return &PinError{File: pin.File, Key: "commit", Message: fmt.Sprintf(
			"%q refused: [repo.verify].commits = %q verifies who wrote the pin, not what a branch or tag points to later; pin a full 40-hex commit SHA, or set commits = %q to verify the pinned commit too",
			pin.Commit, commitsHead, commitsBoth)}
	}
	return nil
}

var fullSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// verified checks sha's signature and says who signed it, logging it at
// debug (every pass verifies; the head rarely changes).
func (r *Releases) verified(ctx context.Context, sha, role string) (string, error) {
	signer, err := r.src.VerifyCommit(sha, role)
	if err != nil {
		return "", err
	}
	r.src.logFor(ctx).Debug().Str("verified", sha).Str("role", role).
		Str("signer", signer.String()).Msg("signature verified")
	return fmt.Sprintf("%s %s signed by %s", role, sha[:12], signer), nil
}

// CheckFloor checks that commit descends from floor (see
// Source.CheckFloor), fetching commit first when the cache no longer has
// it: a rollback target may be older than anything fetched lately.
func (r *Releases) CheckFloor(ctx context.Context, floor, commit string) error {
	if _, err := r.src.Resolve(ctx, Pin{File: "(rollback)", Commit: commit}); err != nil {
		return err
	}
	return r.src.CheckFloor(ctx, floor, commit)
}

// Prune removes release directories not in inUse, keeping the Kept most
// recently used of the others.
func (r *Releases) Prune(inUse map[string]bool) error { return r.src.Prune(inUse, r.opts.Kept) }

// Head is the remote branch head: the cheap "did the branch move?" check
// (see Source.Head).
func (r *Releases) Head(ctx context.Context) (string, error) { return r.src.Head(ctx) }
