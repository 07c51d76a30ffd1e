package swarm

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// gateTarget is one service the gate follows.
type gateTarget struct {
	svc     *compose.StackService
	id      string // the swarm service
	updated bool   // by this apply (else created)
}

// gateTargets are the services done created or updated, in the stack's
// order, but those that opt out with lockstep.health-gate: "false".
func gateTargets(desired *compose.Stack, done []reconcile.Action) []gateTarget {
	changed := map[string]reconcile.Action{}
	for _, a := range done {
		if (a.Kind == reconcile.ActCreate || a.Kind == reconcile.ActUpdate || a.Kind == reconcile.ActRecreate) && a.SwarmService != "" {
			changed[a.SwarmService] = a
		}
	}
	var out []gateTarget
	for i := range desired.Services {
		svc := &desired.Services[i]
		if a, ok := changed[svc.Name]; ok && !gateOptOut(svc) {
			// The API takes a service's name where it takes its id: a
			// result read back without ids still names its services.
			id := cmp.Or(a.ObjectID, a.SwarmService)
			out = append(out, gateTarget{svc: svc, id: id, updated: a.Kind == reconcile.ActUpdate})
		}
	}
	return out
}

func gateOptOut(svc *compose.StackService) bool {
	for _, labels := range []map[string]string{svc.Spec.Labels, containerOf(svc.Spec).Labels} {
		if v, ok := labels[reconcile.LabelHealthGate]; ok && strings.EqualFold(strings.TrimSpace(v), "false") {
			return true
		}
	}
	return false
}

// GatePlan says what Verify will wait for after actions, for the plan's
// reader ("web 3/3 running and healthy for 15s", "migrate completes").
func GatePlan(desired *compose.Stack, actions []reconcile.Action, bake time.Duration) []string {
	if bake <= 0 {
		bake = reconcile.DefaultBake
	}
	var out []string
	for _, t := range gateTargets(desired, actions) {
		mode, replicas := modeText(t.svc.Spec.Mode)
		what := fmt.Sprintf("%s %d/%d running", t.svc.Key, replicas, replicas)
		switch {
		case t.svc.Job:
			out = append(out, t.svc.Key+" completes")
			continue
		case mode == "global":
			what = t.svc.Key + " running on every node"
		}
		if t.svc.Healthcheck {
			what += " and healthy"
		}
		out = append(out, fmt.Sprintf("%s for %s", what, bake))
	}
	return out
}

// gateState is what the gate knows of one target between polls.
type gateState struct {
	t      gateTarget
	since  time.Time // converged since (bake)
	passed bool
	last   progress
}

// Verify is the health gate over what Apply did (done): each service it
// created or updated must converge, and stay so for the bake period.
// Converged is: its update completed (the swarm's own, with its
// update_config), every task the service wants running is of its current
// spec and running (one per replica, or per eligible node for a global
// service; a job's tasks complete), healthy where the image or compose
// file has a healthcheck (the swarm holds such a task in "starting" until
// the check passes). A task of the current spec that fails or is rejected,
// an update the swarm paused or rolled back, or the timeout fail the
// release with a *reconcile.GateError naming the service and why. An
// engine that cannot be asked is a plain error: retried, not rolled back.
func Verify(ctx context.Context, eng Engine, desired *compose.Stack, done []reconcile.Action, gate reconcile.GateOptions) error {
	targets := gateTargets(desired, done)
	if len(targets) == 0 {
		return nil
	}
	gate = gate.WithDefaults()
	log := zerolog.Ctx(ctx)
	clock := gate.Clock
	nodes, err := gateNodes(ctx, eng, desired, targets, gate)
	if err != nil {
		return err
	}
	log.Info().Int("services", len(targets)).Dur("timeout", gate.Timeout).Dur("bake", gate.Bake).Msg("health gate: waiting for the swarm to converge")
	states := make([]*gateState, len(targets))
	for i, t := range targets {
		states[i] = &gateState{t: t}
	}
	start := clock.Now()
	deadline := start.Add(gate.Timeout)
	for {
		pending := 0
		for _, s := range states {
			if s.passed {
				continue
			}
			done, err := s.poll(ctx, eng, nodes, start, gate)
			if err != nil {
				return err
			}
			if done {
				s.passed = true
				log.Debug().Str("service", s.t.svc.Name).Msg("health gate: passed")
				continue
			}
			pending++
		}
		if pending == 0 {
			log.Info().Int("services", len(states)).Msg("health gate: passed")
			return nil
		}
		if !clock.Now().Before(deadline) {
			for _, s := range states {
				if !s.passed && s.since.IsZero() {
					return gateFailure(log, s.t, s.t.svc.Name, fmt.Sprintf("not converged after %s: %s", gate.Timeout, s.last.text()))
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health gate: stopped waiting: %w", ctx.Err())
		case <-clock.After(gate.PollInterval):
		}
	}
}

// gateNodes reads the swarm's nodes once when a global service is gated:
// it runs one task per eligible node.
func gateNodes(ctx context.Context, eng Engine, desired *compose.Stack, targets []gateTarget, gate reconcile.GateOptions) ([]compose.ObservedNode, error) {
	for _, t := range targets {
		if t.svc.Spec.Mode.Global != nil || t.svc.Spec.Mode.GlobalJob != nil {
			cctx, cancel := context.WithTimeout(ctx, gate.CallTimeout)
			defer cancel()
			o, err := eng.ObserveStack(cctx, desired)
			if err != nil {
				return nil, fmt.Errorf("health gate: list the nodes of the swarm: %w", err)
			}
			return o.Nodes, nil
		}
	}
	return nil, nil
}

// poll re-reads the target's service and judges it: done once converged
// for the bake period (a job: once complete), a *GateError when it failed
// for good.
func (s *gateState) poll(ctx context.Context, eng Engine, nodes []compose.ObservedNode, start time.Time, gate reconcile.GateOptions) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, gate.CallTimeout)
	obs, err := eng.Service(cctx, s.t.id)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("health gate: stopped waiting for service %s: %w", s.t.svc.Name, ctx.Err())
		}
		return false, fmt.Errorf("health gate: inspect service %s: %w", s.t.svc.Name, err)
	}
	if task, reason := failure(obs, start); reason != "" {
		return false, gateFailure(zerolog.Ctx(ctx), s.t, task, reason)
	}
	s.last = judge(s.t.svc, obs, nodes)
	if s.t.updated && s.last.converged && updatePending(obs, s.last) {
		s.last.converged, s.last.update = false, "not completed yet"
	}
	now := gate.Clock.Now()
	switch {
	case !s.last.converged:
		s.since = time.Time{}
		return false, nil
	case s.t.svc.Job:
		return true, nil
	case s.since.IsZero():
		s.since = now
	}
	return now.Sub(s.since) >= gate.Bake, nil
}

func gateFailure(log *zerolog.Logger, t gateTarget, task, reason string) error {
	log.Error().Str("service", t.svc.Name).Str("task", task).Str("reason", reason).Msg("health gate failed")
	ge := &reconcile.GateError{Service: t.svc.Key, Reason: reason}
	if task != t.svc.Name {
		ge.Task = task
	}
	return ge
}

// Healthy reports whether the stack, found converged to desired (an empty
// plan), is healthy right now, from one snapshot: every gated service has
// the desired spec and all its tasks running (healthy where checked) or,
// for a job, complete, with no update in progress, paused or rolled back.
// When unsure it says no.
func Healthy(desired *compose.Stack, observed compose.ObservedStack) bool {
	st := newIndex(desired, observed)
	for i := range desired.Services {
		svc := &desired.Services[i]
		if gateOptOut(svc) {
			continue
		}
		obs, ok := st.services[svc.Name]
		if !ok || obs.Spec.Labels[compose.LabelHash] != svc.Hash {
			return false
		}
		if !judge(svc, obs, observed.Nodes).converged {
			return false
		}
	}
	return true
}
