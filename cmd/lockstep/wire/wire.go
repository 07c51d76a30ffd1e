// Package wire turns a loaded config into the parts a pass runs on: the
// git source (gitsource.Releases), the compose loader, the engine backend,
// the state store, and the pass pipeline that joins them. The CLI
// (cmd/lockstep/cli), the daemon (cmd/lockstep/daemon) and the demo all
// build their passes here, so they run the same steps with the same
// settings.
//
// It decides nothing about a pass and holds no state of its own; Preflight
// opens and parses every file a config names, touching no container.
package wire

import (
	"context"
	"io"
	"path/filepath"
	"runtime/debug"
	"slices"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
	"github.com/lockstep-gitops/lockstep/reconcile/swarm"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// ReleasesKept is how many release directories no container uses are kept
// beyond those in use, for a rollback that works while git is unreachable.
const ReleasesKept = 3

// Parts are what one config wires into. Close releases the engine client.
type Parts struct {
	Pipeline *pass.Pipeline
	Releases *gitsource.Releases // also the agent's cheap head check
	State    *state.Store
	engine   io.Closer
}

// Build wires cfg. The engine is connected on demand, so `validate`
// works on a host where the engine is down, and a pass after the engine
// comes back connects then.
func Build(cfg *config.Config, log zerolog.Logger) (*Parts, error) {
	src, err := gitsource.New(SourceOptions(cfg, log))
	if err != nil {
		return nil, err
	}
	releases := gitsource.NewReleases(src, gitsource.ReleasesOptions{
		VerifyHead: cfg.Repo.Verify.Head(), VerifyPinned: cfg.Repo.Verify.Pinned(), Kept: ReleasesKept,
	})
	eng := engine.NewOnDemand(cfg.Engine.Host, log)
	// A converged project is observed without inspecting its containers
	// again, also by the next CLI process.
	eng.FactDir = filepath.Join(cfg.StateDir, "engine-facts")
	secrets := SecretOptions(cfg)
	store := state.New(cfg.StateDir, 0, log)
	p := &pass.Pipeline{
		Source:  releases,
		Load:    Loader(secrets, LoadRules(cfg)),
		Backend: &reconcile.Host{Engine: eng},
		Swarm:   &swarm.Backend{Engine: eng.SwarmCalls()},
		State:   store,
		Policy:  Policy(cfg.Policy),
		Secrets: secrets,
		Gate:    reconcile.GateOptions{Timeout: cfg.Health.Timeout, Bake: cfg.Health.Bake},
		Log:     log,
	}
	return &Parts{Pipeline: p, Releases: releases, State: store, engine: eng}, nil
}

// The swarm backend's calls connect on demand, as the host's do.
var _ swarm.Engine = (*engine.OnDemandSwarm)(nil)

// Close releases the engine client, if one was made.
func (p *Parts) Close() error { return p.engine.Close() }

// SourceOptions is [repo] as gitsource takes it.
func SourceOptions(cfg *config.Config, log zerolog.Logger) gitsource.Options {
	return gitsource.Options{
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
		Verify: gitsource.VerifyOptions{OpenPGPKeyring: cfg.Repo.Verify.OpenPGPKeyring, SSHAllowedSigners: cfg.Repo.Verify.SSHAllowedSigners},
	}
}

// SecretOptions is [secrets] as compose takes it.
func SecretOptions(cfg *config.Config) compose.SecretOptions {
	return compose.SecretOptions{IdentityFile: cfg.Secrets.AgeIdentity, RuntimeDir: cfg.Secrets.RuntimeDir}
}

// Policy is the [policy] table as the compose check takes it.
func Policy(p config.Policy) compose.Policy {
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

// Environment is the pass's view of a configured environment.
func Environment(env config.Environment) pass.Environment {
	return pass.Environment{
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
		Windows:       Windows(env.Windows),
		Backend:       env.Backend,
	}
}

// Windows parses deploy windows that config validated (see
// window.ParseValidated).
func Windows(list []string) []window.Window { return window.ParseValidated(list) }

// Environments are every environment of cfg, in config order.
func Environments(cfg *config.Config) []pass.Environment {
	out := make([]pass.Environment, 0, len(cfg.Environments))
	for _, e := range cfg.Environments {
		out = append(out, Environment(e))
	}
	return out
}

// Sets are cfg's [[environment_set]] tables as the agent runs them.
func Sets(cfg *config.Config) []envset.Set {
	out := make([]envset.Set, 0, len(cfg.EnvironmentSets))
	for _, s := range cfg.EnvironmentSets {
		out = append(out, s.Spec())
	}
	return out
}

// Rules are the agent config's settings of how compose files are read.
type Rules struct {
	Strict        bool     // [compose].strict
	HostFileRoots []string // [policy].allowed_bind_roots, where a host env_file may be read from
}

// LoadRules are cfg's Rules.
func LoadRules(cfg *config.Config) Rules {
	return Rules{Strict: cfg.Compose.Strict, HostFileRoots: slices.Clone(cfg.Policy.AllowedBindRoots)}
}

// Loader loads a release's compose files, decrypting its *.age files with
// secrets, under rules. The environment's own compose_files (host config)
// win over the pin's; neither means compose's default file discovery.
func Loader(secrets compose.SecretOptions, rules Rules) pass.Loader {
	compose.Warm()
	return func(ctx context.Context, env pass.Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		files := env.ComposeFiles
		if len(files) == 0 {
			files = rel.ComposeFiles
		}
		return compose.Load(ctx, compose.LoadOptions{
			ReleaseDir:    rel.Dir,
			Project:       env.Project,
			Environment:   env.Name,
			Set:           env.Set,
			Slug:          env.Slug(),
			URL:           env.URL,
			Commit:        rel.Commit,
			ComposeFiles:  files,
			PinVars:       rel.Vars,
			HostEnvFiles:  env.EnvFiles,
			RepoEnvFiles:  rel.EnvFiles,
			Secrets:       secrets,
			Version:       Version(),
			Strict:        rules.Strict,
			HostFileRoots: rules.HostFileRoots,
			Need:          need,
			Swarm:         env.Backend == pass.BackendSwarm,
		})
	}
}

// Version describes the binary from what the Go toolchain recorded in it:
// the module version (a tag when installed with go install module@version)
// and the VCS revision when built from a checkout.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "lockstep (unknown version)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	out := "lockstep " + v
	if rev != "" {
		out += " commit " + reconcile.Short(rev) + modified
	}
	return out + " " + info.GoVersion
}
