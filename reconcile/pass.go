package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Environment is one environment of the agent config, as a pass needs it.
type Environment struct {
	Name         string   // environment name (staging, production, pr-142)
	Project      string   // compose project name
	PinFile      string   // repo-relative pin file path
	ComposeFiles []string // repo-relative compose files; empty = the pin's, else discovery
	EnvFiles     []string // host-local env files (absolute)
}

// Revision is what the source resolved for an environment: the commit the
// pin names and its release directory on disk.
type Revision struct {
	Head         string            // branch head the pin was read at
	Commit       string            // 40-hex revision
	ReleaseDir   string            // immutable release directory of Commit
	PinFile      string            // repo-relative pin path
	ComposeFiles []string          // the pin's compose_files (may be empty)
	Vars         map[string]string // the pin's [vars]
	Paused       bool              // the pin says: apply nothing new
}

// Source resolves an environment to a materialized revision. gitsource
// implements it (wired in cmd/lockstep).
type Source interface {
	// Revision fetches the branch, reads env's pin at its head, resolves the
	// pinned commit (or commit, when not empty, instead of the pin's) and
	// materializes its release directory.
	Revision(ctx context.Context, env Environment, commit string) (Revision, error)
	// Prune removes release directories no container uses any more, keeping
	// the newest few for offline rollback.
	Prune(inUse map[string]bool) error
}

// Loader turns a materialized revision into the desired compose project.
type Loader func(ctx context.Context, env Environment, rev Revision) (*compose.Project, error)

// Runner performs passes for environments: resolve -> materialize -> load ->
// observe -> plan, and for apply -> apply -> record. It holds no state
// between passes: every pass re-derives the world from git and the engine.
type Runner struct {
	Source       Source
	Load         Loader
	Engine       Engine
	Log          zerolog.Logger
	ApplyOptions ApplyOptions
	// StateDir holds what lockstep records per environment (the last
	// deployment); "" records nothing.
	StateDir string
	// StepTimeout bounds each engine step of a pass that is not an apply
	// (observe); default 2 minutes.
	StepTimeout time.Duration
}

// PassResult is what one pass (plan, apply or validate) of an environment
// found and did.
type PassResult struct {
	Environment string       `json:"environment"`
	Project     string       `json:"project"`
	Head        string       `json:"head"`   // branch head the pin was read at
	Commit      string       `json:"commit"` // the resolved revision
	ReleaseDir  string       `json:"release_dir"`
	Paused      bool         `json:"paused,omitempty"`
	Plan        *Plan        `json:"plan,omitempty"`
	Applied     *ApplyResult `json:"applied,omitempty"` // nil for plan and validate
}

// Steps of a pass, as named by StepError.
const (
	StepSource  = "source"  // fetch, read the pin, resolve, materialize
	StepLoad    = "load"    // load the release's compose files
	StepObserve = "observe" // read what the engine has
	StepApply   = "apply"   // carry the plan out
)

// StepError says which step of a pass failed. Its message is the wrapped
// error's: the step is for Classify, which decides from it what a failure
// without a more precise type means.
type StepError struct {
	Step string // Step* constant
	Err  error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Validate resolves and loads env at its pin (or at commit), touching
// nothing on the engine: config, pin and compose files are checked.
func (r *Runner) Validate(ctx context.Context, env Environment, commit string) (*PassResult, error) {
	res, _, err := r.load(ctx, env, commit)
	return res, err
}

// Plan computes what Apply would do for env now.
func (r *Runner) Plan(ctx context.Context, env Environment) (*PassResult, error) {
	res, _, _, err := r.plan(ctx, env)
	return res, err
}

// Apply makes the host match env's pinned revision. A paused environment is
// planned but not applied.
func (r *Runner) Apply(ctx context.Context, env Environment) (*PassResult, error) {
	res, desired, observed, err := r.plan(ctx, env)
	if err != nil {
		return res, err
	}
	log := r.Log.With().Str("env", env.Name).Str("commit", res.Commit).Logger()
	if res.Paused {
		log.Info().Str("plan", res.Plan.Summary()).Msg("environment is paused in its pin file: nothing applied")
		return res, nil
	}
	if res.Plan.Empty() {
		log.Debug().Msg("host matches the revision: nothing to do")
		r.record(desired, env, log)
		return res, nil
	}
	opts := r.ApplyOptions
	opts.Log = log
	applied, err := Apply(ctx, r.Engine, desired, observed, res.Plan, opts)
	res.Applied = applied
	if err != nil {
		return res, &StepError{Step: StepApply, Err: fmt.Errorf("apply %s at %s: %w", env.Name, short(res.Commit), err)}
	}
	log.Info().Str("plan", res.Plan.Summary()).Msg("applied")
	r.record(desired, env, log)
	r.prune(ctx, desired, log)
	return res, nil
}

func (r *Runner) load(ctx context.Context, env Environment, commit string) (*PassResult, *compose.Project, error) {
	res := &PassResult{Environment: env.Name, Project: env.Project}
	rev, err := r.Source.Revision(ctx, env, commit)
	if err != nil {
		res.Head, res.Commit = rev.Head, rev.Commit // what the source got to, for the record
		return res, nil, &StepError{Step: StepSource, Err: err}
	}
	res.Head, res.Commit, res.ReleaseDir, res.Paused = rev.Head, rev.Commit, rev.ReleaseDir, rev.Paused
	p, err := r.Load(ctx, env, rev)
	if err != nil {
		return res, nil, &StepError{Step: StepLoad, Err: fmt.Errorf("load %s at %s: %w", env.Name, short(rev.Commit), err)}
	}
	return res, p, nil
}

func (r *Runner) plan(ctx context.Context, env Environment) (*PassResult, *compose.Project, compose.Observed, error) {
	res, desired, err := r.load(ctx, env, "")
	if err != nil {
		return res, nil, compose.Observed{}, err
	}
	octx, cancel := context.WithTimeout(ctx, r.stepTimeout())
	defer cancel()
	observed, err := r.Engine.Observe(octx, desired)
	if err != nil {
		return res, nil, observed, &StepError{Step: StepObserve, Err: fmt.Errorf("observe project %s: %w", desired.Name, err)}
	}
	fillPriorFiles(desired, &observed)
	last, err := loadDeployed(r.StateDir, env.Name, desired.Name)
	if err != nil {
		// Only the wording of missing containers depends on it.
		r.Log.Warn().Err(err).Str("env", env.Name).Msg("ignoring the unreadable record of the last deployment")
	}
	res.Plan = BuildPlanSince(desired, observed, last)
	return res, desired, observed, nil
}

// record notes what now runs, once the host matches the revision. Failing to
// record is logged: it only makes the next plan's wording less precise.
func (r *Runner) record(p *compose.Project, env Environment, log zerolog.Logger) {
	d := deployedOf(p, time.Now())
	if old, _ := loadDeployed(r.StateDir, env.Name, p.Name); old.same(d) {
		return
	}
	if err := saveDeployed(r.StateDir, env.Name, d); err != nil {
		log.Warn().Err(err).Msg("cannot record the deployment")
	}
}

// prune drops release directories no container of the project references
// any more. Failing to prune is logged, never fatal: it only costs disk.
func (r *Runner) prune(ctx context.Context, p *compose.Project, log zerolog.Logger) {
	octx, cancel := context.WithTimeout(ctx, r.stepTimeout())
	defer cancel()
	after, err := r.Engine.Observe(octx, p)
	if err != nil {
		log.Warn().Err(err).Msg("not pruning old releases: cannot observe the project")
		return
	}
	inUse := map[string]bool{p.ReleaseDir: true}
	for _, c := range after.Containers {
		if c.WorkingDir != "" {
			inUse[c.WorkingDir] = true
		}
	}
	if err := r.Source.Prune(inUse); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn().Err(err).Msg("pruning old releases failed")
	}
}

func (r *Runner) stepTimeout() time.Duration {
	if r.StepTimeout > 0 {
		return r.StepTimeout
	}
	return 2 * time.Minute
}

// fillPriorFiles records, for each container, the digests that the files
// its desired service uses had in the release the container came from, so
// the plan can name the file that changed. Releases are immutable and kept
// while a container references them, so the old content is still on disk.
func fillPriorFiles(p *compose.Project, o *compose.Observed) {
	for i := range o.Containers {
		c := &o.Containers[i]
		svc := p.Service(c.Service)
		if svc == nil || c.WorkingDir == "" || c.Hash == svc.Hash || len(svc.Files) == 0 {
			continue
		}
		c.PriorFiles = compose.PriorFiles(c.WorkingDir, svc.Files)
	}
}
