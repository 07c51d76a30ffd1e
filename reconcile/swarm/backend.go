package swarm

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Backend is one swarm's stacks as a pass drives them, the way
// reconcile.Host is one engine's projects: observe, plan, apply (on the
// leader only), gate then prune, and tell a converged stack healthy. It
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

// Observe reads what the swarm has of desired's stack.
func (b *Backend) Observe(ctx context.Context, desired *compose.Stack) (compose.ObservedStack, error) {
	timeout := b.ObserveTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return b.Engine.ObserveStack(octx, desired)
}

// Plan is BuildPlanSince with what the gate will wait for (bake: the
// environment's bake period).
func (b *Backend) Plan(desired *compose.Stack, observed compose.ObservedStack, last *reconcile.Deployed, bake time.Duration) *reconcile.Plan {
	plan := BuildPlanSince(desired, observed, last)
	plan.Gate = GatePlan(desired, plan.Actions, bake)
	return plan
}

// Apply carries plan out (see the package function Apply), once CanApply
// said this node is the leader; elsewhere it changes nothing and returns
// a *NotLeaderError. Leadership can move between the check and the
// calls: the swarm refuses an update at a stale version, so two managers
// cannot both win the same change.
func (b *Backend) Apply(ctx context.Context, desired *compose.Stack, observed compose.ObservedStack, plan *reconcile.Plan) (*reconcile.ApplyResult, error) {
	if plan == nil || plan.Empty() {
		return &reconcile.ApplyResult{Done: []reconcile.Action{}}, nil
	}
	// Also for a plan of prunes only: Verify prunes after it.
	ok, reason, err := CanApply(ctx, b.Engine)
	if err != nil {
		return &reconcile.ApplyResult{Done: []reconcile.Action{}}, err
	}
	if !ok {
		return &reconcile.ApplyResult{Done: []reconcile.Action{}}, &NotLeaderError{Reason: reason}
	}
	opts := b.Options
	opts.Log = logOf(ctx, opts.Log)
	return Apply(ctx, b.Engine, desired, observed, plan, opts)
}

// Verify is the health gate over what an apply did (see Verify); once it
// passed, the configs and secrets no service uses any more are pruned (a
// failed prune is logged: it costs a leftover object, removed next time).
func (b *Backend) Verify(ctx context.Context, desired *compose.Stack, done []reconcile.Action, gate reconcile.GateOptions) error {
	log := logOf(ctx, b.Options.Log)
	ctx = log.WithContext(ctx)
	if err := Verify(ctx, b.Engine, desired, done, gate); err != nil {
		return err
	}
	b.prune(ctx, desired)
	return nil
}

func (b *Backend) prune(ctx context.Context, desired *compose.Stack) {
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
	if _, err := Prune(ctx, b.Engine, desired, after); err != nil {
		log.Warn().Err(err).Msg("pruning old configs and secrets failed")
	}
}

// Healthy reports whether a stack found converged is healthy right now
// (see Healthy).
func (b *Backend) Healthy(desired *compose.Stack, observed compose.ObservedStack) bool {
	return Healthy(desired, observed)
}

// logOf is the logger a pass put in ctx, else fallback.
func logOf(ctx context.Context, fallback zerolog.Logger) zerolog.Logger {
	if l := zerolog.Ctx(ctx); l != zerolog.DefaultContextLogger && l.GetLevel() != zerolog.Disabled {
		return *l
	}
	return fallback
}
