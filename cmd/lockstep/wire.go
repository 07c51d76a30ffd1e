package main

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/client"
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
	eng := &lazyEngine{host: cfg.Engine.Host, log: log}
	secrets := compose.SecretOptions{IdentityFile: cfg.Secrets.AgeIdentity, RuntimeDir: cfg.Secrets.RuntimeDir}
	r := &reconcile.Runner{
		Source:   releases{gitsource.NewReleases(src, releasesOptions(cfg.Repo.Verify))},
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

// releasesOptions is how a pass trusts what it reads, from [repo.verify].
func releasesOptions(v config.Verify) gitsource.ReleasesOptions {
	return gitsource.ReleasesOptions{VerifyHead: v.Head(), VerifyPinned: v.Pinned(), Kept: releasesKept}
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

// releases adapts gitsource.Releases to reconcile.Source and
// reconcile.FloorChecker (CheckFloor and Prune come with the embedding).
// It only converts: once reconcile takes gitsource.Want and Release
// itself, delete it.
type releases struct{ *gitsource.Releases }

var (
	_ reconcile.Source       = releases{}
	_ reconcile.FloorChecker = releases{}
)

func (r releases) Revision(ctx context.Context, env reconcile.Environment, commit string) (reconcile.Revision, error) {
	want := gitsource.Want{Environment: env.Name, PinFile: env.PinFile, MinCommit: env.MinCommit, Commit: commit}
	rel, err := r.Resolve(ctx, want)
	if err == nil {
		rel, err = r.Materialize(ctx, rel)
	}
	if err != nil {
		return reconcile.Revision{Head: rel.Head, Commit: rel.Commit}, err
	}
	return reconcile.Revision{
		Head: rel.Head, Commit: rel.Commit, ReleaseDir: rel.Dir, PinFile: rel.PinFile,
		ComposeFiles: rel.ComposeFiles, Vars: rel.Vars, EnvFiles: rel.EnvFiles, Paused: rel.Paused,
		Signatures: rel.Signatures,
	}, nil
}

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

// lazyEngine connects to the Docker engine on first use.
type lazyEngine struct {
	host string
	log  zerolog.Logger

	once sync.Once
	cli  *client.Client
	eng  *engine.Engine
	err  error
}

var _ reconcile.Engine = (*lazyEngine)(nil)

func (l *lazyEngine) get(ctx context.Context) (*engine.Engine, error) {
	l.once.Do(func() {
		l.cli, l.err = engine.Connect(ctx, l.host)
		if l.err == nil {
			l.eng = engine.New(l.cli, l.log)
		}
	})
	return l.eng, l.err
}

func (l *lazyEngine) Close() error {
	if l.cli != nil {
		return l.cli.Close()
	}
	return nil
}

func (l *lazyEngine) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	e, err := l.get(ctx)
	if err != nil {
		return compose.Observed{}, err
	}
	return e.Observe(ctx, p)
}

func (l *lazyEngine) Pull(ctx context.Context, ref string) (string, error) {
	e, err := l.get(ctx)
	if err != nil {
		return "", err
	}
	return e.Pull(ctx, ref)
}

func (l *lazyEngine) CreateNetwork(ctx context.Context, n compose.Network) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.CreateNetwork(ctx, n)
}

func (l *lazyEngine) CreateVolume(ctx context.Context, v compose.Volume) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.CreateVolume(ctx, v)
}

func (l *lazyEngine) CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	e, err := l.get(ctx)
	if err != nil {
		return "", err
	}
	return e.CreateContainer(ctx, p, svc, number, name, inheritFrom)
}

func (l *lazyEngine) StartContainer(ctx context.Context, id string) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.StartContainer(ctx, id)
}

func (l *lazyEngine) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.StopContainer(ctx, id, timeout)
}

func (l *lazyEngine) RemoveContainer(ctx context.Context, id string) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.RemoveContainer(ctx, id)
}

func (l *lazyEngine) RenameContainer(ctx context.Context, id, name string) error {
	e, err := l.get(ctx)
	if err != nil {
		return err
	}
	return e.RenameContainer(ctx, id, name)
}

func (l *lazyEngine) InspectContainer(ctx context.Context, id string) (compose.Container, error) {
	e, err := l.get(ctx)
	if err != nil {
		return compose.Container{}, err
	}
	return e.InspectContainer(ctx, id)
}

func (l *lazyEngine) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	e, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return e.Logs(ctx, id, tail)
}
