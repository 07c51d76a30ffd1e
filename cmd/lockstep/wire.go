package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// releasesKept is how many release directories no container uses are kept
// beyond those in use, for a rollback that works while git is unreachable.
const releasesKept = 3

// newPassRunner wires the real parts: gitsource for revisions, compose for
// loading, compose/engine for the Docker engine. The engine client is made
// lazily, so `validate` works on a host where the engine is down.
func newPassRunner(cfg *config.Config, log zerolog.Logger) (runner, io.Closer, error) {
	r, _, closer, err := buildRunner(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return r, closer, nil
}

// buildRunner makes the Runner and the git source it reads from; the agent
// also uses the source for its cheap "did the branch move?" check.
func buildRunner(cfg *config.Config, log zerolog.Logger) (*reconcile.Runner, *gitsource.Source, io.Closer, error) {
	src, err := gitsource.New(gitsource.Options{
		URL:      cfg.Repo.URL,
		Branch:   cfg.Repo.Branch,
		StateDir: cfg.StateDir,
		Timeout:  cfg.Repo.Timeout,
		Log:      log,
		Auth: gitsource.Auth{
			TokenFile:            cfg.Repo.TokenFile,
			SSHKey:               cfg.Repo.SSHKey,
			SSHKeyPassphraseFile: cfg.Repo.SSHKeyPassphraseFile,
			KnownHosts:           cfg.Repo.KnownHosts,
		},
		Verify: verifyOptions(cfg.Repo.Verify),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	eng := engine.NewOnDemand(cfg.Engine.Host, log)
	secrets := compose.SecretOptions{IdentityFile: cfg.Secrets.AgeIdentity, RuntimeDir: cfg.Secrets.RuntimeDir}
	r := &reconcile.Runner{
		Source:   revisions{src: src, verify: cfg.Repo.Verify, log: log},
		Load:     releaseLoader(secrets),
		Engine:   eng,
		Log:      log,
		StateDir: cfg.StateDir,
		// lockstep apply gates like the agent does.
		Gate:    reconcile.GateOptions{Timeout: cfg.Health.Timeout, Bake: cfg.Health.Bake},
		Policy:  policy(cfg.Policy),
		Secrets: secrets,
	}
	return r, src, eng, nil
}

// verifyOptions is [repo.verify] as gitsource takes it.
func verifyOptions(v config.Verify) gitsource.VerifyOptions {
	return gitsource.VerifyOptions{OpenPGPKeyring: v.OpenPGPKeyring, SSHAllowedSigners: v.SSHAllowedSigners}
}

// policy is the [policy] table as the compose check takes it.
func policy(p config.Policy) compose.Policy {
	return compose.Policy{
		Mode:              p.Mode,
		AllowPrivileged:   p.AllowPrivileged,
		AllowHostNetwork:  p.AllowHostNetwork,
		AllowHostPID:      p.AllowHostPID,
		AllowHostIPC:      p.AllowHostIPC,
		AllowCapabilities: slices.Clone(p.AllowCapabilities),
		AllowDevices:      p.AllowDevices,
		AllowDockerSocket: p.AllowDockerSocket,
		AllowedBindRoots:  slices.Clone(p.AllowedBindRoots),
	}
}

// environment is the pass's view of a configured environment.
func environment(env config.Environment) reconcile.Environment {
	return reconcile.Environment{
		Name:         env.Name,
		Project:      env.Project,
		PinFile:      env.PinFile,
		ComposeFiles: slices.Clone(env.ComposeFiles),
		EnvFiles:     slices.Clone(env.EnvFiles),
		MinCommit:    env.MinCommit,
		// Resolved from [health] by config when the environment does not
		// set them.
		HealthTimeout: env.HealthTimeout,
		Bake:          env.Bake,
	}
}

// revisions adapts gitsource to what a pass needs: fetch, verify the
// branch head, read the pin at it, resolve it, verify the pinned commit
// and check it against the environment's floor, materialize the release.
// Every check comes before anything is written: a refused commit leaves
// no release directory behind, let alone a container.
type revisions struct {
	src    *gitsource.Source
	verify config.Verify
	log    zerolog.Logger
}

func (g revisions) Revision(ctx context.Context, env reconcile.Environment, commit string) (reconcile.Revision, error) {
	head, err := g.src.Fetch(ctx)
	if err != nil {
		return reconcile.Revision{}, err
	}
	var signatures []string
	if g.verify.Head() {
		sig, err := g.verified(env, head, gitsource.RoleHead)
		if err != nil {
			return reconcile.Revision{Head: head}, err
		}
		signatures = append(signatures, sig)
	}
	pin, err := g.src.ReadPin(ctx, head, env.PinFile)
	if err != nil {
		return reconcile.Revision{Head: head}, err
	}
	if err := g.trustedPin(pin, commit); err != nil {
		return reconcile.Revision{Head: head}, err
	}
	if commit != "" {
		pin.Commit = commit
	}
	sha, err := g.src.Resolve(ctx, pin)
	if err != nil {
		return reconcile.Revision{Head: head}, err
	}
	// The pinned commit is verified even when it is the head itself: the
	// roles differ only in the message.
	if g.verify.Pinned() {
		sig, err := g.verified(env, sha, gitsource.RolePinned)
		if err != nil {
			return reconcile.Revision{Head: head, Commit: sha}, err
		}
		signatures = append(signatures, sig)
	}
	if env.MinCommit != "" {
		if err := g.src.CheckFloor(ctx, env.MinCommit, sha); err != nil {
			return reconcile.Revision{Head: head, Commit: sha}, err
		}
	}
	dir, err := g.src.Materialize(ctx, sha)
	if err != nil {
		return reconcile.Revision{Head: head, Commit: sha}, err
	}
	return reconcile.Revision{
		Head: head, Commit: sha, ReleaseDir: dir, PinFile: pin.File,
		ComposeFiles: pin.ComposeFiles, Vars: pin.Vars, EnvFiles: pin.EnvFiles, Paused: pin.Paused,
		Signatures: signatures,
	}, nil
}

// trustedPin refuses what a partial [repo.verify] would let an untrusted
// pusher decide. Verifying only the pinned commit leaves the pin file
// itself unverified, so its [vars], compose_files and env_files (which
// change what the signed tree runs) are refused; paused can only hold a
// release back. Verifying only the head trusts the pin's words, which for
// a branch or tag name means whatever that ref points to later: a full SHA
// is required. commit, when set, replaces the pin's commit (a rollback).
func (g revisions) trustedPin(pin gitsource.Pin, commit string) error {
	if !g.verify.Enabled() {
		return nil
	}
	if !g.verify.Head() {
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
			return &gitsource.PinError{File: pin.File, Key: strings.Join(set, ", "), Message: fmt.Sprintf(
				"refused: [repo.verify].commits = %q verifies the pinned commit but not the branch head, so these settings of the pin file could come from anyone who can push; move them into the signed tree (.env, the compose files) or set commits = %q",
				config.VerifyPinned, config.VerifyBoth)}
		}
	}
	if !g.verify.Pinned() && commit == "" && !fullSHA.MatchString(pin.Commit) {
		return &gitsource.PinError{File: pin.File, Key: "commit", Message: fmt.Sprintf(
			"%q refused: [repo.verify].commits = %q verifies who wrote the pin, not what a branch or tag points to later; pin a full 40-hex commit SHA, or set commits = %q to verify the pinned commit too",
			pin.Commit, config.VerifyHead, config.VerifyBoth)}
	}
	return nil
}

var fullSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// verified checks sha's signature and says who signed it, logging it at
// debug (every pass verifies; the head rarely changes).
func (g revisions) verified(env reconcile.Environment, sha, role string) (string, error) {
	signer, err := g.src.VerifyCommit(sha, role)
	if err != nil {
		return "", err
	}
	g.log.Debug().Str("env", env.Name).Str("commit", sha).Str("role", role).Str("signer", signer.String()).Msg("signature verified")
	return fmt.Sprintf("%s %s signed by %s", role, sha[:12], signer), nil
}

// CheckFloor is reconcile.FloorChecker, for rollbacks: commit is fetched
// first when the cache no longer has it.
func (g revisions) CheckFloor(ctx context.Context, floor, commit string) error {
	if _, err := g.src.Resolve(ctx, gitsource.Pin{File: "(rollback)", Commit: commit}); err != nil {
		return err
	}
	return g.src.CheckFloor(ctx, floor, commit)
}

func (g revisions) Prune(inUse map[string]bool) error { return g.src.Prune(inUse, releasesKept) }

// releaseLoader loads a revision's compose files, decrypting its *.age
// files with secrets. The environment's own compose_files (host config)
// win over the pin's; neither means compose's default file discovery.
func releaseLoader(secrets compose.SecretOptions) reconcile.Loader {
	return func(ctx context.Context, env reconcile.Environment, rev reconcile.Revision) (*compose.Project, error) {
		return loadRelease(ctx, env, rev, secrets)
	}
}

func loadRelease(ctx context.Context, env reconcile.Environment, rev reconcile.Revision, secrets compose.SecretOptions) (*compose.Project, error) {
	files := env.ComposeFiles
	if len(files) == 0 {
		files = rev.ComposeFiles
	}
	return compose.Load(ctx, compose.LoadOptions{
		ReleaseDir:   rev.ReleaseDir,
		Project:      env.Project,
		Environment:  env.Name,
		Commit:       rev.Commit,
		ComposeFiles: files,
		PinVars:      rev.Vars,
		HostEnvFiles: env.EnvFiles,
		RepoEnvFiles: rev.EnvFiles,
		Secrets:      secrets,
		Version:      versionString(),
	})
}
