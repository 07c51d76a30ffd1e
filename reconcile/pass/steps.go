package pass

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// run is one pass in progress: what the steps found so far.
type run struct {
	p       *Pipeline
	env     Environment
	opts    Options
	log     zerolog.Logger
	backend Backend // the environment's (Pipeline.backendFor)

	rel      gitsource.Release
	project  *compose.Project
	observed compose.Observed
	last     *reconcile.Deployed // what the previous apply left running
	adopted  []reconcile.Adopted // containers taken over from Docker Compose, as recorded
	res      *Result
	gateErr  *reconcile.GateError // set by the gate step (or apply) when the release is unhealthy
	stepErr  error                // the error the gate failure came with
	// holdAll: the release waits for its deploy window and nothing runs
	// yet, so the pass plans it and applies nothing.
	holdAll bool
	// materialized: the window step already made the release's directory
	// (restore), so the materialize step has nothing to do.
	materialized bool
	// forced: the release is applied outside its deploy window
	// (Options.ForceWindow).
	forced bool
	// follower: another agent applies to the backend (Leader); this pass
	// plans and reports only.
	follower bool
}

// step is one step of a pass: it reads and changes only what its doc
// comment says, and returns an error to stop the pass.
type step struct {
	name string
	run  func(r *run, ctx context.Context) error
}

// The steps of a pass, in order. Validate runs them up to policy, plan up
// to plan, apply all of them; a rollback starts at load with a release
// it already has.
var steps = []step{
	{"resolve", (*run).resolve},
	{"hold", (*run).hold},
	{"window", (*run).window},
	{"materialize", (*run).materialize},
	{"load", (*run).load},
	{"policy", (*run).policy},
	{"observe", (*run).observe},
	{"plan", (*run).plan},
	{"secrets", (*run).writeSecrets},
	{"apply", (*run).apply},
	{"gate", (*run).gate},
}

// lastStep is where a mode stops.
func lastStep(m Mode) string {
	switch m {
	case ModeValidate:
		return "policy"
	case ModePlan:
		return "plan"
	}
	return "gate"
}

// runSteps runs steps from the one named from to the mode's last, stopping
// at the first error or when a step ends the pass early (done).
func (r *run) runSteps(ctx context.Context, from string) error {
	started, stop := false, lastStep(r.opts.Mode)
	for _, s := range steps {
		if s.name == from {
			started = true
		}
		if !started {
			continue
		}
		// Lines written below (gitsource, the engine adapter) carry the
		// pass's env, commit and id.
		if err := s.run(r, r.log.WithContext(ctx)); err != nil {
			return err
		}
		if s.name == stop || r.done() {
			return nil
		}
	}
	return nil
}

// done reports whether a step ended the pass without an error: the pinned
// commit is held back, the pin is paused, the release waits for its deploy
// window with nothing running, or there is nothing to apply.
func (r *run) done() bool {
	if r.res.Quarantined != nil && r.opts.Mode == ModeApply {
		return true
	}
	if r.opts.Mode == ModeApply && r.res.Plan != nil && (r.res.Paused || r.holdAll || r.follower || r.res.Plan.Empty()) {
		return true
	}
	return false
}

// resolve asks git for the environment's pinned revision (or
// opts.Commit): fetch, signature checks, pin trust rules, floor. Reads git;
// writes nothing.
func (r *run) resolve(ctx context.Context) error {
	rel, err := r.p.Source.Resolve(ctx, gitsource.Want{
		Environment: r.env.Name, PinFile: r.env.PinFile, MinCommit: r.env.MinCommit, Commit: r.opts.Commit,
	})
	r.res.Head, r.res.Commit = rel.Head, rel.Commit
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepSource, Err: err}
	}
	r.setRelease(rel)
	return nil
}

// setRelease makes rel the pass's release: its commit goes on every log
// line from here on.
func (r *run) setRelease(rel gitsource.Release) {
	if r.rel.Commit == "" {
		r.log = r.log.With().Str("commit", rel.Commit).Logger()
	}
	r.rel = rel
	r.res.Head, r.res.Commit, r.res.Paused, r.res.Signatures = rel.Head, rel.Commit, rel.Paused, rel.Signatures
	r.res.ReleaseDir = rel.Dir
}

// hold reads the environment's quarantine. A quarantined pinned commit
// ends an apply here (nothing is materialized or touched); a plan notes
// it. When the pin names another commit, the quarantine of the commits it
// named before is lifted. Changes: quarantine.json, when lifting.
func (r *run) hold(ctx context.Context) error {
	list, err := r.p.State.Quarantine(r.env.Name)
	if err != nil {
		// Failing open would redeploy a release known to be broken.
		return &reconcile.StepError{Step: reconcile.StepSource, Err: fmt.Errorf("quarantined commits of %s: %w", r.env.Name, err)}
	}
	if q, held := state.Quarantined(list, r.rel.Commit); held {
		r.res.Quarantined = &q
		return nil
	}
	if len(list) > 0 && r.opts.Mode == ModeApply {
		if _, err := r.p.State.ClearQuarantine(r.env.Name); err != nil {
			r.log.Error().Err(err).Msg("cannot lift the quarantine")
		} else {
			r.log.Info().Strs("released", state.Commits(list)).Msg("the pin names another commit: quarantine lifted")
		}
	}
	return nil
}

// materialize writes the release directory of the resolved commit (once:
// releases are immutable). Changes: <state_dir>/releases.
func (r *run) materialize(ctx context.Context) error {
	if r.materialized {
		return nil
	}
	rel, err := r.p.Source.Materialize(ctx, r.rel)
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepSource, Err: err}
	}
	r.setRelease(rel)
	return nil
}

// load reads the release's compose files into the desired project, then
// completes the release with the mount points of the mounts nested in its
// binds, which only the loaded model knows (see compose/mountpoints.go):
// before anything uses the release, in every mode, like materialize; and
// logs (warn) the compose keys it ignored. Reads the release dir and host
// env files; changes only the release's missing mount points (empty
// directories), its manifest and the result's ComposeWarnings.
func (r *run) load(ctx context.Context) error {
	need := func(path string) error { return r.p.Source.AddPaths(ctx, r.rel, []string{path}) }
	p, err := r.p.Load(ctx, r.env, r.rel, need)
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepLoad, Err: fmt.Errorf("load %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
	}
	if err := r.p.Source.AddMountPoints(ctx, r.rel, p.MountPoints); err != nil {
		return &reconcile.StepError{Step: reconcile.StepLoad, Err: fmt.Errorf("load %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
	}
	r.project = p
	for _, w := range p.Warnings {
		r.res.ComposeWarnings = append(r.res.ComposeWarnings, w.String())
		r.log.Warn().Str("file", w.File).Int("line", w.Line).Str("service", w.Service).Str("key", w.Key).
			Msg("compose key ignored, as Docker Compose ignores it on a single host ([compose].strict = true refuses it): " + w.String())
	}
	return nil
}

// policy checks the loaded project against the deploy policy: in enforce
// mode a violation stops the pass before the engine is asked anything
// (not even a pull). Reads the project and the host paths its binds name;
// changes only the result's Policy.
func (r *run) policy(ctx context.Context) error {
	if err := r.hostPorts(); err != nil {
		return err
	}
	violations := compose.CheckPolicy(r.project, r.p.Policy)
	if len(violations) == 0 {
		return nil
	}
	for _, v := range violations {
		r.res.Policy = append(r.res.Policy, v.Error())
	}
	if r.p.Policy.Enforced() {
		return &reconcile.StepError{Step: reconcile.StepPolicy, Err: fmt.Errorf("policy %s at %s: %w", r.env.Name, reconcile.Short(r.project.Commit), &compose.PolicyError{Violations: violations})}
	}
	for _, v := range violations {
		r.log.Warn().Str("service", v.Service).Str("setting", v.Setting).Str("rule", v.Rule).
			Msg("deploy policy violation (mode warn: deploying anyway): " + v.Error())
	}
	return nil
}

// observe reads what the engine has for the project, the digests of the
// files its containers were made from (so a plan can name the file that
// changed) and the record of the last deployment. The containers adopted
// from Docker Compose get the hashes recorded for them, so the plan treats
// them as lockstep's. A swarm's nodes, as observed, go to the result for
// the status (Result.Swarm). Writes nothing.
func (r *run) observe(ctx context.Context) error {
	observed, err := r.backend.Observe(ctx, r.project)
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepObserve, Err: fmt.Errorf("observe project %s: %w", r.project.Name, err)}
	}
	r.overlayAdopted(&observed)
	r.fillPriorFiles(&observed)
	r.observed = observed
	r.res.Swarm = reconcile.SwarmStatusOf(observed.Stack)
	last, err := r.p.State.Deployed(r.env.Name, r.project.Name)
	if err != nil {
		// Only the wording of missing containers depends on it.
		r.log.Warn().Err(err).Msg("ignoring the unreadable record of the last deployment")
	}
	r.last = last
	if last != nil {
		r.res.Previous = last.Commit
	}
	return nil
}

// overlayAdopted reads the record of adopted containers (once a pass) and
// lays it over o. Unreadable, it is ignored with a warning: the containers
// are then planned as Docker Compose's again, adopted or recreated by
// their configuration, which costs restarts at worst, never a wrong
// keep.
func (r *run) overlayAdopted(o *compose.Observed) {
	if r.adopted == nil {
		list, err := r.p.State.Adopted(r.env.Name, r.project.Name)
		if err != nil {
			r.log.Warn().Err(err).Msg("ignoring the unreadable record of containers adopted from Docker Compose")
		}
		r.adopted = append([]reconcile.Adopted{}, list...)
	}
	reconcile.OverlayAdopted(o, r.adopted)
}

// recordAdopted notes the containers the apply adopted, and forgets the
// ones it replaced or removed. A failure is logged: the next pass then
// adopts them again (they are still equal), with nothing restarted.
func (r *run) recordAdopted(applied *reconcile.ApplyResult) {
	if applied == nil {
		return
	}
	for _, a := range applied.Done {
		if a.Kind == reconcile.ActAdopt && a.Container != "" {
			r.log.Info().Str("service", a.Service).Str("container", a.Container).
				Msg("adopted from Docker Compose without a restart: configuration equal")
		}
	}
	list := reconcile.AdoptionsAfter(r.project, r.observed, r.adopted, applied.Done, r.p.now())
	if err := r.p.State.SaveAdopted(r.env.Name, r.project.Name, list); err != nil {
		r.log.Warn().Err(err).Msg("cannot record the containers adopted from Docker Compose")
	}
	r.adopted = list // what the prune after the gate overlays

}

// fillPriorFiles records, for each container, the digests that the files
// its desired service uses had in the release the container came from.
// Releases are immutable and kept while a container references them.
func (r *run) fillPriorFiles(o *compose.Observed) {
	for i := range o.Containers {
		c := &o.Containers[i]
		svc := r.project.Service(c.Service)
		if svc == nil || c.WorkingDir == "" || c.Hash == svc.Hash || len(svc.Files) == 0 {
			continue
		}
		c.PriorFiles = compose.PriorFiles(c.WorkingDir, svc.Files, r.p.Secrets)
	}
}

// plan compares the desired project with what the engine has. Pure: it
// changes only the result's Plan.
func (r *run) plan(ctx context.Context) error {
	var plan *reconcile.Plan
	if pl, ok := r.backend.(Planner); ok {
		var err error
		if plan, err = pl.Plan(r.project, r.observed, r.last, r.p.gateOptions(r.env)); err != nil {
			return &reconcile.StepError{Step: reconcile.StepObserve, Err: fmt.Errorf("plan %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
		}
	} else {
		plan = reconcile.BuildPlanSince(r.project, r.observed, r.last)
		plan.Gate = reconcile.GatePlan(r.project, plan.Actions, r.p.gateOptions(r.env).Bake)
	}
	r.res.Plan = plan
	if r.opts.Mode != ModeApply {
		return nil
	}
	if !plan.Empty() && !r.res.Paused && !r.holdAll {
		if err := r.leader(ctx); err != nil {
			return err
		}
	}
	switch {
	case r.follower:
		r.log.Info().Str("plan", plan.Summary()).Str("held", r.res.Held.Reason).Msg("another agent applies: nothing applied")
	case r.res.Paused:
		r.log.Info().Str("plan", plan.Summary()).Msg("environment is paused in its pin file: nothing applied")
	case r.holdAll:
		r.log.Info().Str("plan", plan.Summary()).Str("held", r.res.Held.Reason).Msg("new release waits for its deploy window and nothing runs yet: nothing applied")
	case plan.Empty():
		r.log.Debug().Msg("host matches the revision: nothing to do")
		// A tmpfs emptied by a reboot gets the decrypted files back even
		// when no container needs to change; an unchanged file is left as
		// it is.
		if err := compose.WriteSecrets(r.project, r.p.Secrets); err != nil {
			r.log.Warn().Err(err).Msg("cannot write the decrypted configs and secrets the containers bind")
		}
		r.recordDeployed()
		if r.backend.Healthy(r.project, r.observed) {
			r.res.Healthy = true
			r.recordHealthy()
		}
	}
	return nil
}

// leader asks a backend that several agents watch whether this agent
// applies (Leader). When it does not, the pass is held: it has planned,
// it reports, it changes nothing. Reads the backend; changes the result's
// Held.
func (r *run) leader(ctx context.Context) error {
	l, ok := r.backend.(Leader)
	if !ok {
		return nil
	}
	applies, why, err := l.Applies(ctx, r.observed)
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepObserve, Err: fmt.Errorf("who applies %s: %w", r.env.Name, err)}
	}
	if !applies {
		r.follower = true
		r.res.Held = &Held{Kind: reconcile.HoldFollower, Commit: r.rel.Commit, Reason: why}
	}
	return nil
}

// writeSecrets puts the release's decrypted configs and secrets on the
// tmpfs, after the policy allowed the release. Changes: the runtime dir.
func (r *run) writeSecrets(ctx context.Context) error {
	if err := compose.WriteSecrets(r.project, r.p.Secrets); err != nil {
		return &reconcile.StepError{Step: reconcile.StepApply, Err: fmt.Errorf("apply %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
	}
	return nil
}

// apply carries the plan out on the backend and records what runs now,
// healthy or not (the next plan's wording depends on it). Changes: the
// engine, deployed.json.
func (r *run) apply(ctx context.Context) error {
	if r.p.Started != nil && r.res.Plan != nil && !r.res.Plan.Empty() && r.rel.Commit != r.res.Previous {
		r.p.Started(r.env, r.rel.Commit)
	}
	applied, err := r.backend.Apply(ctx, r.project, r.observed, r.res.Plan, r.p.gateOptions(r.env))
	r.res.Applied = applied
	// Whatever else failed, what was adopted is adopted.
	r.recordAdopted(applied)
	var ge *reconcile.GateError
	if errors.As(err, &ge) {
		r.recordDeployed()
		r.gateErr = ge
		r.stepErr = &reconcile.StepError{Step: reconcile.StepVerify, Err: fmt.Errorf("verify %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
		return nil
	}
	if err != nil {
		return &reconcile.StepError{Step: reconcile.StepApply, Err: fmt.Errorf("apply %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
	}
	r.log.Info().Str("plan", r.res.Plan.Summary()).Msg("applied")
	r.recordDeployed()
	return nil
}

// gate waits until what the apply changed is healthy. A healthy release is
// recorded as the newest healthy revision and old releases are pruned; an
// unhealthy one is left for settle. Reads the engine; changes
// healthy.json, the releases dir and the runtime dir.
func (r *run) gate(ctx context.Context) error {
	if r.gateErr != nil {
		return nil // the apply already found the release unhealthy
	}
	err := r.backend.Verify(ctx, r.project, r.res.Applied.Done, r.p.gateOptions(r.env))
	var ge *reconcile.GateError
	switch {
	case errors.As(err, &ge):
		// No prune: the release to roll back to must stay on disk.
		r.gateErr = ge
		r.stepErr = &reconcile.StepError{Step: reconcile.StepVerify, Err: fmt.Errorf("verify %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
		return nil
	case err != nil:
		return &reconcile.StepError{Step: reconcile.StepVerify, Err: fmt.Errorf("verify %s at %s: %w", r.env.Name, reconcile.Short(r.rel.Commit), err)}
	}
	r.res.Healthy = true
	r.recordHealthy()
	r.prune(ctx)
	return nil
}

// recordDeployed notes what runs now. A failure is logged: it only makes
// the next plan's wording less precise.
func (r *run) recordDeployed() {
	if err := r.p.State.SaveDeployed(r.env.Name, reconcile.DeployedOf(r.project, r.p.now())); err != nil {
		r.log.Warn().Err(err).Msg("cannot record the deployment")
	}
}

// recordHealthy notes the release as the newest healthy revision. A
// failure is logged: it costs the rollback target, not the deployment.
func (r *run) recordHealthy() {
	if err := r.p.State.PushHealthy(r.env.Name, state.HealthyOf(r.rel, r.p.now())); err != nil {
		r.log.Warn().Err(err).Msg("cannot record the healthy revision")
	}
}

// prune drops release directories no container of the project uses any
// more (keeping the rollback targets), and decrypted files no container
// binds. Failing to prune is logged, never fatal: it only costs disk.
func (r *run) prune(ctx context.Context) {
	after, err := r.backend.Observe(ctx, r.project)
	if err != nil {
		r.log.Warn().Err(err).Msg("not pruning old releases: cannot observe the project")
		return
	}
	r.overlayAdopted(&after)
	inUse := map[string]bool{r.project.ReleaseDir: true}
	healthy, _ := r.p.State.Healthy(r.env.Name)
	for _, hr := range healthy {
		inUse[hr.ReleaseDir] = true
	}
	for _, c := range after.Containers {
		if c.WorkingDir != "" {
			inUse[c.WorkingDir] = true
		}
	}
	if err := r.p.Source.Prune(inUse); err != nil && !errors.Is(err, context.Canceled) {
		r.log.Warn().Err(err).Msg("pruning old releases failed")
	}
	r.pruneSecrets(after)
}

// pruneSecrets removes the decrypted files of the project that it does
// not bind, once every container is of this configuration: until then an
// older container may still need its file to restart.
func (r *run) pruneSecrets(after compose.Observed) {
	if r.p.Secrets.RuntimeDir == "" {
		return
	}
	for _, c := range after.Containers {
		if svc := r.project.Service(c.Service); svc == nil || c.Hash != svc.Hash {
			r.log.Debug().Str("container", c.Name).Msg("not pruning decrypted secrets: a container of another configuration remains")
			return
		}
	}
	keep := map[string]bool{}
	for _, f := range r.project.SecretFiles {
		keep[f] = true
	}
	if err := compose.PruneSecrets(r.p.Secrets.RuntimeDir, r.project.Name, keep); err != nil {
		r.log.Warn().Err(err).Msg("pruning decrypted secrets failed")
	}
}

// restore makes hr applicable again: its release directory when still on
// disk and as git wrote it (verified without git, restored from the git
// cache where changed by hand: the emergency brake works while git is
// unreachable), else materialized again from git. The compose_files and
// vars are hr's, not the current pin's. A floor raised since hr ran holds
// for rollbacks too.
func (p *Pipeline) restore(ctx context.Context, env Environment, hr state.HealthyRevision, log zerolog.Logger) (gitsource.Release, error) {
	rel := hr.Release()
	if env.MinCommit != "" {
		if err := p.Source.CheckFloor(ctx, env.MinCommit, hr.Commit); err != nil {
			return rel, &reconcile.StepError{Step: reconcile.StepSource, Err: fmt.Errorf("rollback of %s to %s refused: %w", env.Name, reconcile.Short(hr.Commit), err)}
		}
	}
	why := ""
	if rel.Dir != "" {
		if fi, err := os.Stat(rel.Dir); err == nil && fi.IsDir() {
			verified, err := p.Source.Materialize(ctx, rel)
			if err == nil {
				return verified, nil
			}
			// Modified and not restorable from the cache alone: git may
			// still have what the cache lacks.
			log.Warn().Err(err).Str("release_dir", hr.ReleaseDir).Msg("the healthy release on disk cannot be used as it is: fetching it again from git")
			why = fmt.Sprintf("cannot be used from disk (%v)", err)
		}
	}
	if why == "" {
		why = fmt.Sprintf("is gone from disk (%s)", hr.ReleaseDir)
		log.Warn().Str("release_dir", hr.ReleaseDir).Msg("the healthy release is no longer on disk: materializing it again from git")
	}
	fresh, err := p.Source.Resolve(ctx, gitsource.Want{Environment: env.Name, PinFile: env.PinFile, MinCommit: env.MinCommit, Commit: hr.Commit})
	if err == nil {
		fresh, err = p.Source.Materialize(ctx, fresh)
	}
	if err != nil {
		return rel, &reconcile.StepError{Step: reconcile.StepSource, Err: fmt.Errorf("release %s of %s %s and cannot be materialized again: %w", reconcile.Short(hr.Commit), env.Name, why, err)}
	}
	rel.Dir = fresh.Dir
	if rel.Head == "" {
		rel.Head = fresh.Head
	}
	return rel, nil
}
