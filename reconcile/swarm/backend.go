package swarm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Backend is one swarm's stacks as a pass drives them (reconcile/pass's
// Backend, Planner and Leader), the way reconcile.Host is one engine's
// projects: a project loaded as a stack (compose.Project.Stack) is
// observed (compose.Observed.Stack), planned by service, applied on the
// leader only, gated then pruned, and a converged one told healthy. It
// holds no state between calls.
type Backend struct {
	Engine Engine
	// Options tune Apply; its Log is replaced by the pass's logger (from
	// the context) on every call.
	Options ApplyOptions
	// ObserveTimeout bounds one ObserveStack (default 2 minutes).
	ObserveTimeout time.Duration
}

// NotLeaderError is Backend.Apply's refusal on a node that is not the
// swarm's leader: nothing was changed, and the agent on the leader
// applies. It is no failure of the release.
type NotLeaderError struct{ Reason string }

func (e *NotLeaderError) Error() string { return "not applying: " + e.Reason }

// stackOf is p's stack, or why there is none.
func stackOf(p *compose.Project) (*compose.Stack, error) {
	if p == nil || p.Stack == nil {
		return nil, errors.New("the project was not loaded as a swarm stack (compose.LoadOptions.Swarm)")
	}
	return p.Stack, nil
}

// observedOf is what Observe found of the stack; empty when nothing was
// (a plan read without observing).
func observedOf(p *compose.Project, o compose.Observed) compose.ObservedStack {
	if o.Stack != nil {
		return *o.Stack
	}
	return compose.ObservedStack{Namespace: p.Stack.Namespace}
}

// Observe reads what the swarm has of p's stack, in Observed.Stack.
func (b *Backend) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	st, err := stackOf(p)
	if err != nil {
		return compose.Observed{}, err
	}
	timeout := b.ObserveTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o, err := b.Engine.ObserveStack(octx, st)
	if err != nil {
		return compose.Observed{}, err
	}
	// Which node this is, for the status (reconcile.SwarmStatusOf): the
	// node list alone does not say.
	if o.Local, err = b.Engine.Info(octx); err != nil {
		return compose.Observed{}, fmt.Errorf("read this node's place in the swarm: %w", err)
	}
	return compose.Observed{Project: p.Name, Stack: &o}, nil
}

// Plan is BuildPlanSince with what the gate will wait for. A stack that
// needs an external object that does not exist is refused (Check): the
// plan comes with a *reconcile.PreconditionError, before anything is
// touched. A record of the last apply without services (one written for
// the project's containers) is no record.
func (b *Backend) Plan(desired *compose.Project, observed compose.Observed, last *reconcile.Deployed, gate reconcile.GateOptions) (*reconcile.Plan, error) {
	st, err := stackOf(desired)
	if err != nil {
		return nil, err
	}
	if last != nil && len(last.Replicas) == 0 {
		last = nil
	}
	o := observedOf(desired, observed)
	plan := BuildPlanSince(st, o, last)
	plan.Environment, plan.Project, plan.Commit = desired.Environment, desired.Name, desired.Commit
	plan.Gate = GatePlan(st, plan.Actions, gate.Bake)
	return plan, Check(st, o)
}

// Applies reports whether this agent changes the swarm: only the one on
// its leader does (CanApply, asked now: leadership may have moved since
// observed was read). A manager that is not the leader names the leader
// the observed node list shows (NotLeaderReason).
func (b *Backend) Applies(ctx context.Context, observed compose.Observed) (bool, string, error) {
	info, err := b.Engine.Info(ctx)
	if err != nil {
		return false, "", fmt.Errorf("read this node's place in the swarm: %w", err)
	}
	ok, reason, err := canApply(info)
	if !ok && err == nil && info.State == "active" && info.Manager && observed.Stack != nil {
		reason = NotLeaderReason(observed.Stack.Nodes)
	}
	return ok, reason, err
}

// Apply carries plan out (see the package function Apply), once CanApply
// said this node is the leader; elsewhere it changes nothing and returns
// a *NotLeaderError. Leadership can move between the check and the
// calls: the swarm refuses an update at a stale version, so two managers
// cannot both win the same change.
func (b *Backend) Apply(ctx context.Context, desired *compose.Project, observed compose.Observed, plan *reconcile.Plan, gate reconcile.GateOptions) (*reconcile.ApplyResult, error) {
	none := &reconcile.ApplyResult{Done: []reconcile.Action{}}
	if plan == nil || plan.Empty() {
		return none, nil
	}
	st, err := stackOf(desired)
	if err != nil {
		return none, err
	}
	// Also for a plan of prunes only: Verify prunes after it.
	ok, reason, err := CanApply(ctx, b.Engine)
	if err != nil {
		return none, err
	}
	if !ok {
		return none, &NotLeaderError{Reason: reason}
	}
	opts := b.Options
	opts.Log = logOf(ctx, opts.Log)
	return Apply(ctx, b.Engine, st, observedOf(desired, observed), plan, opts)
}

// Verify is the health gate over what an apply did (see Verify); once it
// passed, the configs and secrets no service uses any more are pruned (a
// failed prune is logged: it costs a leftover object, removed next time).
func (b *Backend) Verify(ctx context.Context, desired *compose.Project, done []reconcile.Action, gate reconcile.GateOptions) error {
	st, err := stackOf(desired)
	if err != nil {
		return err
	}
	log := logOf(ctx, b.Options.Log)
	ctx = log.WithContext(ctx)
	if err := Verify(ctx, b.Engine, st, done, gate); err != nil {
		return err
	}
	b.prune(ctx, desired)
	return nil
}

func (b *Backend) prune(ctx context.Context, desired *compose.Project) {
	log := zerolog.Ctx(ctx)
	if ok, reason, err := CanApply(ctx, b.Engine); err != nil || !ok {
		log.Warn().Err(err).Str("reason", reason).Msg("not pruning old configs and secrets: this node may not change the swarm")
		return
	}
	after, err := b.Observe(ctx, desired)
	if err != nil {
		log.Warn().Err(err).Msg("not pruning old configs and secrets: cannot observe the stack")
		return
	}
	if _, err := Prune(ctx, b.Engine, desired.Stack, *after.Stack); err != nil {
		log.Warn().Err(err).Msg("pruning old configs and secrets failed")
	}
}

// Healthy reports whether a stack found converged is healthy right now
// (see Healthy).
func (b *Backend) Healthy(desired *compose.Project, observed compose.Observed) bool {
	if desired == nil || desired.Stack == nil || observed.Stack == nil {
		return false
	}
	return Healthy(desired.Stack, *observed.Stack)
}

// Environments lists none: Engine reads one stack at a time, so a review
// environment on the swarm that the state dir does not know of is not
// found by listing (its teardown needs the state dir's record).
func (b *Backend) Environments(context.Context) (map[string]string, error) { return nil, nil }

// logOf is the logger a pass put in ctx, else fallback.
func logOf(ctx context.Context, fallback zerolog.Logger) zerolog.Logger {
	if l := zerolog.Ctx(ctx); l != zerolog.DefaultContextLogger && l.GetLevel() != zerolog.Disabled {
		return *l
	}
	return fallback
}
