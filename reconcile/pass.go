package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	// MinCommit is the floor: the source refuses a pinned commit that is
	// not MinCommit or a descendant of it. "" means none.
	MinCommit string
	// HealthTimeout and Bake override the Runner's GateOptions for this
	// environment; zero keeps them.
	HealthTimeout time.Duration
	Bake          time.Duration
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
	EnvFiles     []string          // the pin's env_files: repo-relative dotenv files, plain or age-encrypted (*.age)
	// Signatures says who signed the commits the source verified, one
	// sentence each ("branch head 3f2a9c1e0b7d: ssh key SHA256:… (alice@…)").
	Signatures []string
	Paused     bool // the pin says: apply nothing new
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

// FloorChecker is implemented by a Source that can tell whether commit is
// env's floor (Environment.MinCommit) or descends from it. Restore uses it
// so that no rollback goes below the floor; Revision checks pinned commits
// itself.
type FloorChecker interface {
	CheckFloor(ctx context.Context, floor, commit string) error
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
	// Gate tunes the health gate run after an apply that changed
	// something; an Environment's HealthTimeout and Bake override it.
	Gate GateOptions
	// Policy is checked on every loaded release, before the engine is
	// asked anything: in enforce mode a violation fails the pass, in warn
	// mode it is logged and reported in PassResult.Policy. The zero value
	// warns about everything it covers.
	Policy compose.Policy
	// Secrets is how releases decrypt their *.age files ([secrets]): the
	// plan needs it to tell which encrypted file changed, and the prune
	// after an apply removes decrypted files no container uses any more.
	Secrets compose.SecretOptions
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
	// Healthy is set by an apply whose changes passed the health gate, or
	// that found the host converged and every service healthy: the
	// revision was recorded as the environment's last healthy one.
	Healthy bool `json:"healthy,omitempty"`
	// Policy lists the release's deploy policy violations, one sentence
	// each (compose.Violation.Error): warnings in warn mode, the reasons
	// the release was refused in enforce mode.
	Policy []string `json:"policy,omitempty"`
	// Signatures says who signed the commits [repo.verify] checked, as
	// Revision.Signatures.
	Signatures []string `json:"signatures,omitempty"`
}

// Steps of a pass, as named by StepError.
const (
	StepSource  = "source"  // fetch, read the pin, resolve, materialize
	StepLoad    = "load"    // load the release's compose files
	StepPolicy  = "policy"  // check the loaded release against the deploy policy
	StepObserve = "observe" // read what the engine has
	StepApply   = "apply"   // carry the plan out
	StepVerify  = "verify"  // the health gate after the apply
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

// Apply makes the host match env's pinned revision, then runs the health
// gate on what it changed. A paused environment is planned but not
// applied.
func (r *Runner) Apply(ctx context.Context, env Environment) (*PassResult, error) {
	rev, err := r.Resolve(ctx, env)
	if err != nil {
		return &PassResult{Environment: env.Name, Project: env.Project, Head: rev.Head, Commit: rev.Commit}, err
	}
	return r.ApplyRevision(ctx, env, rev)
}

// Resolve asks the source for env's pinned revision, materialized. A
// failure is a StepError of StepSource; the revision returned with it says
// how far the source got (the head, perhaps the commit).
func (r *Runner) Resolve(ctx context.Context, env Environment) (Revision, error) {
	rev, err := r.Source.Revision(ctx, env, "")
	if err != nil {
		return Revision{Head: rev.Head, Commit: rev.Commit}, &StepError{Step: StepSource, Err: err}
	}
	return rev, nil
}

// ApplyRevision makes the host match rev, an already materialized revision
// of env (the pinned one, or a healthy one to roll back to), and runs the
// health gate on what it changed. It does not talk to git: rev.ReleaseDir
// must exist. rev.Paused plans without applying.
//
// A revision whose changes pass the gate, or that finds the host converged
// and healthy, is recorded as env's last healthy revision. A gate failure
// is a StepError of StepVerify wrapping a *GateError; the containers are
// left as the apply made them, for the caller to decide (roll back).
func (r *Runner) ApplyRevision(ctx context.Context, env Environment, rev Revision) (*PassResult, error) {
	res, desired, observed, err := r.planRevision(ctx, env, rev)
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
		if convergedHealthy(desired, observed) {
			res.Healthy = true
			r.recordHealthy(env, rev, log)
		}
		return res, nil
	}
	// Decrypted files are written only now, past the policy check and for
	// a plan that changes something: plan and validate write nothing.
	if err := compose.WriteSecrets(desired, r.Secrets); err != nil {
		return res, &StepError{Step: StepApply, Err: fmt.Errorf("apply %s at %s: %w", env.Name, short(res.Commit), err)}
	}
	opts := r.ApplyOptions
	opts.Log = log
	applied, err := Apply(ctx, r.Engine, desired, observed, res.Plan, opts)
	res.Applied = applied
	gate := r.gateOptions(env)
	gate.CallTimeout = opts.withDefaults().CallTimeout
	if err != nil {
		if ge := dependencyGateError(ctx, r.Engine, err, applied, gate, log); ge != nil {
			// A service of the release failed while others waited on it
			// (a migration exited 1): the release is unhealthy, not the
			// engine.
			return res, &StepError{Step: StepVerify, Err: fmt.Errorf("verify %s at %s: %w", env.Name, short(res.Commit), ge)}
		}
		return res, &StepError{Step: StepApply, Err: fmt.Errorf("apply %s at %s: %w", env.Name, short(res.Commit), err)}
	}
	log.Info().Str("plan", res.Plan.Summary()).Msg("applied")
	// What runs now, healthy or not: the next plan's wording depends on it.
	r.record(desired, env, log)
	if err := runGate(ctx, r.Engine, gateTargets(desired, applied.Done), gate, log); err != nil {
		// No prune: the release to roll back to must stay on disk.
		return res, &StepError{Step: StepVerify, Err: fmt.Errorf("verify %s at %s: %w", env.Name, short(res.Commit), err)}
	}
	res.Healthy = true
	r.recordHealthy(env, rev, log)
	r.prune(ctx, desired, log)
	return res, nil
}

// gateOptions are the Runner's gate options with env's overrides.
func (r *Runner) gateOptions(env Environment) GateOptions {
	g := r.Gate
	if env.HealthTimeout > 0 {
		g.Timeout = env.HealthTimeout
	}
	if env.Bake > 0 {
		g.Bake = env.Bake
	}
	return g.withDefaults()
}

// LastHealthy returns env's healthy revisions as recorded in the state
// dir, newest first (empty without a state dir or a record).
func (r *Runner) LastHealthy(env Environment) ([]HealthyRevision, error) {
	return loadHealthy(r.StateDir, env.Name)
}

// recordHealthy notes rev as env's newest healthy revision. Failing to
// record is logged: it costs the rollback target, not the deployment.
func (r *Runner) recordHealthy(env Environment, rev Revision, log zerolog.Logger) {
	list, err := loadHealthy(r.StateDir, env.Name)
	if err != nil {
		log.Warn().Err(err).Msg("the record of healthy revisions is unreadable: starting it over")
	}
	if len(list) > 0 && list[0].Commit == rev.Commit && list[0].ReleaseDir == rev.ReleaseDir {
		return // already the newest: no write on every no-op pass
	}
	if err := saveHealthy(r.StateDir, env.Name, pushHealthy(list, healthyOf(rev, time.Now()))); err != nil {
		log.Warn().Err(err).Msg("cannot record the healthy revision")
	}
}

func (r *Runner) load(ctx context.Context, env Environment, commit string) (*PassResult, *compose.Project, error) {
	rev, err := r.Source.Revision(ctx, env, commit)
	if err != nil {
		// What the source got to, for the record.
		res := &PassResult{Environment: env.Name, Project: env.Project, Head: rev.Head, Commit: rev.Commit}
		return res, nil, &StepError{Step: StepSource, Err: err}
	}
	return r.loadRevision(ctx, env, rev)
}

func (r *Runner) loadRevision(ctx context.Context, env Environment, rev Revision) (*PassResult, *compose.Project, error) {
	res := &PassResult{Environment: env.Name, Project: env.Project}
	res.Head, res.Commit, res.ReleaseDir, res.Paused = rev.Head, rev.Commit, rev.ReleaseDir, rev.Paused
	res.Signatures = rev.Signatures
	p, err := r.Load(ctx, env, rev)
	if err != nil {
		return res, nil, &StepError{Step: StepLoad, Err: fmt.Errorf("load %s at %s: %w", env.Name, short(rev.Commit), err)}
	}
	if err := r.checkPolicy(env, p, res); err != nil {
		return res, nil, err
	}
	return res, p, nil
}

// checkPolicy is the policy step: it reads the loaded project p and the
// host paths its binds name (to resolve symlinks), and changes nothing but
// res.Policy. It runs before observe, so a refused release never reaches
// the engine: not even a pull.
func (r *Runner) checkPolicy(env Environment, p *compose.Project, res *PassResult) error {
	violations := compose.CheckPolicy(p, r.Policy)
	if len(violations) == 0 {
		return nil
	}
	for _, v := range violations {
		res.Policy = append(res.Policy, v.Error())
	}
	if r.Policy.Enforced() {
		return &StepError{Step: StepPolicy, Err: fmt.Errorf("policy %s at %s: %w", env.Name, short(p.Commit), &compose.PolicyError{Violations: violations})}
	}
	log := r.Log.With().Str("env", env.Name).Str("commit", p.Commit).Logger()
	for _, v := range violations {
		log.Warn().Str("service", v.Service).Str("setting", v.Setting).Str("rule", v.Rule).
			Msg("deploy policy violation (mode warn: deploying anyway): " + v.Error())
	}
	return nil
}

func (r *Runner) plan(ctx context.Context, env Environment) (*PassResult, *compose.Project, compose.Observed, error) {
	rev, err := r.Resolve(ctx, env)
	if err != nil {
		return &PassResult{Environment: env.Name, Project: env.Project, Head: rev.Head, Commit: rev.Commit}, nil, compose.Observed{}, err
	}
	return r.planRevision(ctx, env, rev)
}

func (r *Runner) planRevision(ctx context.Context, env Environment, rev Revision) (*PassResult, *compose.Project, compose.Observed, error) {
	res, desired, err := r.loadRevision(ctx, env, rev)
	if err != nil {
		return res, nil, compose.Observed{}, err
	}
	octx, cancel := context.WithTimeout(ctx, r.stepTimeout())
	defer cancel()
	observed, err := r.Engine.Observe(octx, desired)
	if err != nil {
		return res, nil, observed, &StepError{Step: StepObserve, Err: fmt.Errorf("observe project %s: %w", desired.Name, err)}
	}
	r.fillPriorFiles(desired, &observed)
	last, err := loadDeployed(r.StateDir, env.Name, desired.Name)
	if err != nil {
		// Only the wording of missing containers depends on it.
		r.Log.Warn().Err(err).Str("env", env.Name).Msg("ignoring the unreadable record of the last deployment")
	}
	res.Plan = BuildPlanSince(desired, observed, last)
	res.Plan.Gate = gatePlan(gateTargets(desired, res.Plan.Actions), r.gateOptions(env).Bake)
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
	// The releases a rollback would go back to stay, used or not.
	healthy, _ := loadHealthy(r.StateDir, p.Environment)
	for _, hr := range healthy {
		inUse[hr.ReleaseDir] = true
	}
	for _, c := range after.Containers {
		if c.WorkingDir != "" {
			inUse[c.WorkingDir] = true
		}
	}
	if err := r.Source.Prune(inUse); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn().Err(err).Msg("pruning old releases failed")
	}
	r.pruneSecrets(p, after, log)
}

// pruneSecrets removes the decrypted secret files of p's project that p
// does not bind, once every container is p's: until then an older
// container may still need its file to restart. A rollback decrypts its
// files again when it loads its release.
func (r *Runner) pruneSecrets(p *compose.Project, after compose.Observed, log zerolog.Logger) {
	if r.Secrets.RuntimeDir == "" {
		return
	}
	for _, c := range after.Containers {
		if svc := p.Service(c.Service); svc == nil || c.Hash != svc.Hash {
			log.Debug().Str("container", c.Name).Msg("not pruning decrypted secrets: a container of another configuration remains")
			return
		}
	}
	keep := map[string]bool{}
	for _, f := range p.SecretFiles {
		keep[f] = true
	}
	if err := compose.PruneSecrets(r.Secrets.RuntimeDir, p.Name, keep); err != nil {
		log.Warn().Err(err).Msg("pruning decrypted secrets failed")
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
func (r *Runner) fillPriorFiles(p *compose.Project, o *compose.Observed) {
	for i := range o.Containers {
		c := &o.Containers[i]
		svc := p.Service(c.Service)
		if svc == nil || c.WorkingDir == "" || c.Hash == svc.Hash || len(svc.Files) == 0 {
			continue
		}
		c.PriorFiles = compose.PriorFiles(c.WorkingDir, svc.Files, r.Secrets)
	}
}

// Restore makes hr applicable again: its release directory when it is
// still on disk (no git needed: the emergency brake works while git is
// unreachable), else materialized again from git at hr.Commit. The
// compose_files and vars are hr's either way, not the current pin's.
func (r *Runner) Restore(ctx context.Context, env Environment, hr HealthyRevision) (Revision, error) {
	rev := hr.Revision()
	// A floor raised since hr ran (a migration that must not be undone)
	// holds for rollbacks too: better the failing release left running
	// than an automatic step back past it.
	if fc, ok := r.Source.(FloorChecker); ok && env.MinCommit != "" {
		if err := fc.CheckFloor(ctx, env.MinCommit, hr.Commit); err != nil {
			return rev, &StepError{Step: StepSource, Err: fmt.Errorf("rollback of %s to %s refused: %w", env.Name, short(hr.Commit), err)}
		}
	}
	if rev.ReleaseDir != "" {
		if fi, err := os.Stat(rev.ReleaseDir); err == nil && fi.IsDir() {
			return rev, nil
		}
	}
	r.Log.Warn().Str("env", env.Name).Str("commit", hr.Commit).Str("release_dir", hr.ReleaseDir).
		Msg("the healthy release is no longer on disk: materializing it again from git")
	fresh, err := r.Source.Revision(ctx, env, hr.Commit)
	if err != nil {
		return rev, &StepError{Step: StepSource, Err: fmt.Errorf("release %s of %s is gone from disk (%s) and cannot be materialized again: %w", short(hr.Commit), env.Name, hr.ReleaseDir, err)}
	}
	rev.ReleaseDir = fresh.ReleaseDir
	if rev.Head == "" {
		rev.Head = fresh.Head
	}
	return rev, nil
}
