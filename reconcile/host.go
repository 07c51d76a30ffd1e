package reconcile

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Host is the single-host backend: it reads and changes one Docker engine
// through Engine, and watches the health gate there. reconcile/pass drives
// it through its Backend interface, the apply step's seam: a Docker Swarm
// stack is another implementation of the same interface.
type Host struct {
	Engine Engine
	// Options tune Apply; its Log is replaced by the pass's logger (from
	// the context) on every call.
	Options ApplyOptions
	// ObserveTimeout bounds one Observe (default 2 minutes).
	ObserveTimeout time.Duration
}

// Observe reads what the engine has for p, within ObserveTimeout.
func (h *Host) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	timeout := h.ObserveTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return h.Engine.Observe(octx, p)
}

// Apply carries plan out (see the package function Apply). When it stops
// because a service of the release failed while others waited on it (a
// migration exited 1), the error is that service's *GateError: the release
// is unhealthy, the engine is fine.
func (h *Host) Apply(ctx context.Context, desired *compose.Project, observed compose.Observed, plan *Plan, gate GateOptions) (*ApplyResult, error) {
	opts := h.Options
	opts.Log = logOf(ctx, opts.Log)
	applied, err := Apply(ctx, h.Engine, desired, observed, plan, opts)
	if err != nil {
		gate = gate.WithDefaults()
		gate.CallTimeout = opts.withDefaults().CallTimeout
		if ge := dependencyGateError(ctx, h.Engine, err, applied, gate, opts.Log); ge != nil {
			return applied, ge
		}
	}
	return applied, err
}

// Verify is the health gate over what an apply did (done): each changed
// service must become healthy, or keep running for the bake period, or
// exit 0 when others wait for it to complete. A failure is a *GateError.
func (h *Host) Verify(ctx context.Context, desired *compose.Project, done []Action, gate GateOptions) error {
	gate = gate.WithDefaults()
	gate.CallTimeout = h.Options.withDefaults().CallTimeout
	return runGate(ctx, h.Engine, gateTargets(desired, done), gate, logOf(ctx, h.Options.Log))
}

// Environments lists the lockstep environments with containers on the
// engine, each with its compose project (see Engine.Environments).
func (h *Host) Environments(ctx context.Context) (map[string]string, error) {
	timeout := h.ObserveTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return h.Engine.Environments(octx)
}

// Healthy reports whether the host, found converged to desired, is healthy
// right now (see convergedHealthy).
func (h *Host) Healthy(desired *compose.Project, observed compose.Observed) bool {
	return convergedHealthy(desired, observed)
}

// GatePlan says what the health gate will wait for after carrying out
// actions, for the plan's reader.
func GatePlan(desired *compose.Project, actions []Action, bake time.Duration) []string {
	return gatePlan(gateTargets(desired, actions), bake)
}

// WithDefaults is o with every zero field set to its default.
func (o GateOptions) WithDefaults() GateOptions { return o.withDefaults() }

// logOf is the logger a pass put in ctx, else fallback: every line written
// during a pass carries its env, commit and pass id.
func logOf(ctx context.Context, fallback zerolog.Logger) zerolog.Logger {
	if l := zerolog.Ctx(ctx); l != zerolog.DefaultContextLogger && l.GetLevel() != zerolog.Disabled {
		return *l
	}
	return fallback
}

// Short is the 12-hex form of a commit, for messages.
func Short(commit string) string { return short(commit) }
