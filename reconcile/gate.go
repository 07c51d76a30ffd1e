package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
)

// LabelHealthGate set to "false" on a service (compose `labels:`) takes it
// out of the health gate: a service that is expected to come and go, or
// whose health another system watches.
const LabelHealthGate = "lockstep.health-gate"

// Health gate defaults, for GateOptions left zero. They match the agent
// config's [health] defaults.
const (
	DefaultHealthTimeout = 2 * time.Minute
	DefaultBake          = 15 * time.Second
	DefaultGateLogLines  = 20
)

// GateOptions tune the health gate run after an apply that changed
// something. The zero value uses the defaults.
type GateOptions struct {
	// Timeout bounds how long a changed service may take to become
	// healthy (with a healthcheck), to be running (without one), or to
	// exit (a one-shot others wait for).
	Timeout time.Duration
	// Bake is how long a changed service without a healthcheck must keep
	// running without a restart: a crash-looping container looks
	// "running" for its first seconds.
	Bake time.Duration
	// PollInterval between two inspections of the containers (default 500ms).
	PollInterval time.Duration
	// CallTimeout bounds each engine call (default 2m).
	CallTimeout time.Duration
	// LogLines is how many lines of the failing container's log the
	// GateError carries (default 20).
	LogLines int
	// Clock measures the bake period and the timeout, and paces the polls;
	// nil is the wall clock. Tests use one that moves by itself.
	Clock Clock
}

func (o GateOptions) withDefaults() GateOptions {
	setDefault(&o.Timeout, DefaultHealthTimeout)
	setDefault(&o.Bake, DefaultBake)
	setDefault(&o.PollInterval, 500*time.Millisecond)
	setDefault(&o.CallTimeout, 2*time.Minute)
	if o.LogLines <= 0 {
		o.LogLines = DefaultGateLogLines
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o
}

// GateError says which container of which service did not pass the health
// gate, why, and what it logged last.
type GateError struct {
	Service   string
	Container string
	// Task is, for a swarm service, the task that failed (<service>.<slot>)
	// in place of Container; "" when the swarm's service as a whole failed
	// (an update it paused, a timeout).
	Task   string
	Reason string
	Logs   []string // the container's last log lines (may be empty)
}

func (e *GateError) Error() string {
	switch {
	case e.Task != "":
		return fmt.Sprintf("health gate: service %s (task %s): %s", e.Service, e.Task, e.Reason)
	case e.Container == "":
		return fmt.Sprintf("health gate: service %s: %s", e.Service, e.Reason)
	}
	return fmt.Sprintf("health gate: service %s (container %s): %s", e.Service, e.Container, e.Reason)
}

// What the gate waits for, per container.
const (
	waitHealthy   = "healthy"   // the healthcheck says healthy
	waitBake      = "bake"      // running, no restart, for the bake period
	waitCompleted = "completed" // exits 0: a one-shot others wait for with service_completed_successfully
)

// gateTarget is one container the gate watches.
type gateTarget struct {
	Service   string
	Container string // name: stable once apply is done, whatever the ID became
	Wait      string // wait* constant
	// Fresh is true for a container the apply created (create, recreate):
	// its restart count starts at zero, so a restart before the first look
	// counts too.
	Fresh bool
}

// gateTargets lists the containers the gate must watch after actions ran
// for p: every replica of each service that was created, recreated,
// started or restarted, unless the service opts out with
// lockstep.health-gate: "false". It is pure, so the plan can show it.
func gateTargets(p *compose.Project, actions []Action) []gateTarget {
	fresh := map[string]bool{} // container names created by the actions
	var services []string
	for _, a := range actions {
		switch a.Kind {
		case ActCreate, ActRecreate:
			fresh[a.Container] = true
		case ActStart, ActRestart:
		default:
			continue
		}
		if !slices.Contains(services, a.Service) {
			services = append(services, a.Service)
		}
	}
	completedDeps := map[string]bool{}
	for _, s := range p.Services {
		for _, d := range s.DependsOn {
			if d.Condition == compose.ConditionCompleted {
				completedDeps[d.Service] = true
			}
		}
	}
	var out []gateTarget
	// In the project's order (dependencies first), so the gate and the
	// plan list services the way apply started them.
	for i := range p.Services {
		svc := &p.Services[i]
		if !slices.Contains(services, svc.Name) || svc.Replicas <= 0 || gateOptOut(svc) {
			continue
		}
		wait := waitBake
		switch {
		case completedDeps[svc.Name]:
			wait = waitCompleted
		case svc.Healthcheck:
			wait = waitHealthy
		}
		for n := 1; n <= svc.Replicas; n++ {
			name := svc.ContainerNameFor(p.Name, n)
			out = append(out, gateTarget{Service: svc.Name, Container: name, Wait: wait, Fresh: fresh[name]})
		}
	}
	return out
}

func gateOptOut(svc *compose.Service) bool {
	if svc.Config == nil {
		return false
	}
	v, ok := svc.Config.Labels[LabelHealthGate]
	return ok && strings.EqualFold(strings.TrimSpace(v), "false")
}

// gateWords words what the gate waits for, once per service.
type gateWords struct {
	healthy, completed func(service string) string
	bake               func(service string, bake time.Duration) string
}

// describeGate lists, once per service in target order, what the gate
// waits for, in the given words.
func describeGate(targets []gateTarget, bake time.Duration, w gateWords) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range targets {
		if seen[t.Service] {
			continue
		}
		seen[t.Service] = true
		switch t.Wait {
		case waitHealthy:
			out = append(out, w.healthy(t.Service))
		case waitCompleted:
			out = append(out, w.completed(t.Service))
		default:
			out = append(out, w.bake(t.Service, bake))
		}
	}
	return out
}

// gatePlan is what the plan prints ("web healthy", "worker 15s without
// restart").
func gatePlan(targets []gateTarget, bake time.Duration) []string {
	return describeGate(targets, bake, gateWords{
		healthy:   func(s string) string { return s + " healthy" },
		completed: func(s string) string { return s + " exits 0" },
		bake:      func(s string, d time.Duration) string { return fmt.Sprintf("%s %s without restart", s, d) },
	})
}

// gateWaiting is the gate's log line: "web (healthcheck), worker (running
// 15s without restart)".
func gateWaiting(targets []gateTarget, bake time.Duration) string {
	return strings.Join(describeGate(targets, bake, gateWords{
		healthy:   func(s string) string { return s + " (healthcheck)" },
		completed: func(s string) string { return s + " (exit code 0)" },
		bake:      func(s string, d time.Duration) string { return fmt.Sprintf("%s (running %s without restart)", s, d) },
	}), ", ")
}

// errGateTimeout marks a target that did not get there before the timeout.
var errGateTimeout = errors.New("timeout")

// gateState is what the gate knows of one target between polls.
type gateState struct {
	t        gateTarget
	baseline int       // restart count at the start
	based    bool      // baseline is set
	since    time.Time // first seen running (bake)
	passed   bool
	last     compose.Container
}

// observe judges c, the target's current state: done when it passed, a
// reason when it failed for good, neither when it may still get there.
func (s *gateState) observe(c compose.Container, now time.Time, bake time.Duration) (bool, string) {
	s.last = c
	if !s.based {
		s.based = true
		if !s.t.Fresh {
			s.baseline = c.RestartCount
		}
	}
	restarts := c.RestartCount - s.baseline
	switch c.State {
	case "dead", "removing":
		return false, "container is " + c.State
	}
	wait := s.t.Wait
	if wait == waitBake && c.Health != "" {
		// The image defines a healthcheck the compose file does not
		// mention: it is the better judge.
		wait = waitHealthy
	}
	switch wait {
	case waitCompleted:
		switch {
		case c.State == "exited" && c.ExitCode == 0 && restarts == 0:
			return true, ""
		case c.State == "exited" && c.ExitCode != 0:
			return false, fmt.Sprintf("exited with code %d; services depending on it with service_completed_successfully need 0", c.ExitCode)
		case restarts > 0 || c.State == "restarting":
			return false, fmt.Sprintf("restarted %d time(s) instead of exiting with code 0", max(restarts, 1))
		}
	case waitHealthy:
		switch {
		case c.Health == "healthy":
			return true, ""
		case c.Health == "unhealthy":
			return false, "healthcheck reports unhealthy"
		case c.State == "exited":
			return false, fmt.Sprintf("exited with code %d before becoming healthy", c.ExitCode)
		case restarts > 0 || c.State == "restarting":
			return false, fmt.Sprintf("restarted %d time(s) before becoming healthy", max(restarts, 1))
		}
	default:
		switch {
		case c.State == "exited":
			return false, fmt.Sprintf("exited with code %d within the %s bake period", c.ExitCode, bake)
		case restarts > 0 || c.State == "restarting":
			return false, fmt.Sprintf("restarted %d time(s) within the %s bake period (crash loop?)", max(restarts, 1), bake)
		case c.State == "running":
			if s.since.IsZero() {
				s.since = now
			}
			if now.Sub(s.since) >= bake {
				return true, ""
			}
		}
	}
	return false, ""
}

// baking reports whether the target is running and only waits out the
// bake period, which the timeout does not cut short.
func (s *gateState) baking() bool { return !s.since.IsZero() }

func (s *gateState) timeoutReason(timeout time.Duration) string {
	what := "running"
	switch s.t.Wait {
	case waitHealthy:
		what = "healthy"
	case waitCompleted:
		what = "exited"
	}
	return fmt.Sprintf("not %s after %s (last state %s)", what, timeout, stateText(s.last))
}

// runGate watches targets until each passed, one failed, or the timeout
// passed. A failure is a *GateError with the container's last log lines;
// an engine that cannot be asked is a plain error (retried, not rolled
// back: the release may be fine).
func runGate(ctx context.Context, eng Engine, targets []gateTarget, opts GateOptions, log zerolog.Logger) error {
	if len(targets) == 0 {
		return nil
	}
	opts = opts.withDefaults()
	clock := opts.Clock
	log.Info().Str("waiting", gateWaiting(targets, opts.Bake)).Dur("timeout", opts.Timeout).
		Msg("health gate: waiting for " + gateWaiting(targets, opts.Bake))
	states := make([]*gateState, len(targets))
	for i, t := range targets {
		states[i] = &gateState{t: t}
	}
	deadline := clock.Now().Add(opts.Timeout)
	for {
		pending := 0
		for _, s := range states {
			if s.passed {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
			c, err := eng.InspectContainer(cctx, s.t.Container)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("health gate: stopped waiting for %s: %w", s.t.Container, ctx.Err())
				}
				return fmt.Errorf("health gate: inspect container %s of service %s: %w", s.t.Container, s.t.Service, err)
			}
			ok, reason := s.observe(c, clock.Now(), opts.Bake)
			if reason != "" {
				return gateFailure(ctx, eng, s, reason, opts, log)
			}
			if ok {
				s.passed = true
				log.Debug().Str("service", s.t.Service).Str("container", s.t.Container).Msg("health gate: passed")
				continue
			}
			pending++
		}
		if pending == 0 {
			log.Info().Int("containers", len(states)).Msg("health gate: passed")
			return nil
		}
		if !clock.Now().Before(deadline) {
			for _, s := range states {
				if !s.passed && !s.baking() {
					return gateFailure(ctx, eng, s, s.timeoutReason(opts.Timeout), opts, log)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health gate: stopped waiting: %w", ctx.Err())
		case <-clock.After(opts.PollInterval):
		}
	}
}

// gateFailure builds the GateError for s, with the container's last log
// lines. Reading them is best effort, even when ctx is done: a failure
// without its logs is still a failure.
func gateFailure(ctx context.Context, eng Engine, s *gateState, reason string, opts GateOptions, log zerolog.Logger) error {
	ge := &GateError{Service: s.t.Service, Container: s.t.Container, Reason: reason}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.CallTimeout)
	defer cancel()
	lines, err := eng.Logs(lctx, s.t.Container, opts.LogLines)
	if err != nil {
		log.Warn().Err(err).Str("container", s.t.Container).Msg("health gate: cannot read the failing container's logs")
	}
	ge.Logs = lines
	log.Error().Str("service", ge.Service).Str("container", ge.Container).Str("reason", reason).Strs("logs", lines).Msg("health gate failed")
	return ge
}

// convergedHealthy reports whether every replica the desired project runs
// is healthy right now, from one snapshot: running (and healthy, when it
// has a healthcheck, and never restarted), or exited 0 for a one-shot
// others wait for. A pass that changes nothing uses it to know it may call
// the revision healthy; when unsure it says no, since a crash-looping
// container can look running in any one snapshot.
func convergedHealthy(p *compose.Project, o compose.Observed) bool {
	byName := map[string]compose.Container{}
	for _, c := range o.Containers {
		byName[c.Name] = c
	}
	var all []Action
	for _, s := range p.Services {
		for n := 1; n <= s.Replicas; n++ {
			all = append(all, Action{Kind: ActStart, Service: s.Name, Container: s.ContainerNameFor(p.Name, n)})
		}
	}
	for _, t := range gateTargets(p, all) {
		c, ok := byName[t.Container]
		if !ok || c.RestartCount > 0 {
			return false
		}
		switch {
		case t.Wait == waitCompleted:
			if c.State != "exited" || c.ExitCode != 0 {
				return false
			}
		case c.State != "running":
			return false
		case c.Health != "" && c.Health != "healthy":
			return false
		case t.Wait == waitHealthy && c.Health != "healthy":
			return false
		}
	}
	return true
}

// dependencyGateError turns an apply that stopped because a dependency of
// the release failed into a *GateError for that dependency: it exited with
// the wrong code, turned unhealthy or died, or this apply (re)started it and
// it did not get there in time. Anything else (an engine error, a
// dependency the apply did not touch timing out) is nil: not the release's
// fault, retried.
func dependencyGateError(ctx context.Context, eng Engine, err error, applied *ApplyResult, opts GateOptions, log zerolog.Logger) error {
	var de *DependencyError
	if !errors.As(err, &de) || de.Container == "" {
		return nil
	}
	var failed *conditionFailedError
	var timeout *conditionTimeoutError
	switch {
	case errors.As(de.Err, &failed):
	case errors.As(de.Err, &timeout) && touched(applied, de.Dependency):
	default:
		return nil
	}
	s := &gateState{t: gateTarget{Service: de.Dependency, Container: de.Container}}
	reason := fmt.Sprintf("%v (%s waits for it with %s)", de.Err, de.Service, de.Condition)
	return gateFailure(ctx, eng, s, reason, opts, log)
}

// touched reports whether the apply created, recreated, started or
// restarted a container of service.
func touched(applied *ApplyResult, service string) bool {
	if applied == nil {
		return false
	}
	for _, a := range applied.Done {
		switch a.Kind {
		case ActCreate, ActRecreate, ActStart, ActRestart:
			if a.Service == service {
				return true
			}
		}
	}
	return false
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}
