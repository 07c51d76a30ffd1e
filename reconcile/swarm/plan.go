package swarm

import (
	"fmt"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Reasons a plan gives for what is missing.
const (
	reasonNewService      = "new service"
	reasonServiceMissing  = "service missing (removed outside lockstep)"
	reasonNetworkMissing  = "network does not exist"
	reasonNewObject       = "new %s"
	reasonObjectMissing   = "%s missing (removed outside lockstep)"
	reasonOutsideLockstep = " (changed outside lockstep)"
)

// Check refuses a stack that needs what lockstep must not create: an
// external network, config or secret that does not exist, or an external
// network a swarm service cannot attach to. It is run before any change,
// so a refused stack leaves the swarm as it was; the error is a
// *reconcile.PreconditionError (permanent: a person has to act).
func Check(desired *compose.Stack, observed compose.ObservedStack) error {
	if problems := preconditionProblems(desired, observed); len(problems) > 0 {
		return &reconcile.PreconditionError{Problems: problems}
	}
	return nil
}

func preconditionProblems(desired *compose.Stack, observed compose.ObservedStack) []string {
	var out []string
	for _, n := range desired.Networks {
		if !n.External {
			continue
		}
		o, ok := findNetwork(observed, n.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("external network %s (networks.%s) does not exist: create it (docker network create --driver overlay %s) or remove external: true", n.Name, n.Key, n.Name))
		case o.Scope != "" && o.Scope != "swarm":
			out = append(out, fmt.Sprintf("external network %s (networks.%s) is %s-scoped: a swarm service needs a swarm-scoped network (overlay)", n.Name, n.Key, o.Scope))
		}
	}
	for _, k := range []struct {
		kind string
		want []compose.StackObject
		have []compose.ObservedObject
	}{{"config", desired.Configs, observed.Configs}, {"secret", desired.Secrets, observed.Secrets}} {
		for _, o := range k.want {
			if o.External && !hasObject(k.have, o.Name) {
				out = append(out, fmt.Sprintf("external %s %s (%ss.%s) does not exist: create it (docker %s create %s FILE) or remove external: true", k.kind, o.Name, k.kind, o.Key, k.kind, o.Name))
			}
		}
	}
	return out
}

func findNetwork(o compose.ObservedStack, name string) (compose.ObservedStackNetwork, bool) {
	for _, n := range o.Networks {
		if n.Name == name {
			return n, true
		}
	}
	return compose.ObservedStackNetwork{}, false
}

func hasObject(objs []compose.ObservedObject, name string) bool {
	for _, o := range objs {
		if o.Name == name {
			return true
		}
	}
	return false
}

// BuildPlan compares the desired stack with what the swarm has and returns
// the actions that make the swarm match, in the order Apply performs them:
// networks, configs, secrets, services created, updated, removed, and
// last the configs and secrets to remove once the stack converged. It is
// pure: the same inputs always give an identical plan.
func BuildPlan(desired *compose.Stack, observed compose.ObservedStack) *reconcile.Plan {
	return BuildPlanSince(desired, observed, nil)
}

// BuildPlanSince is BuildPlan knowing what the last successful apply of
// the environment deployed (DeployedOf; nil when unknown): a missing
// service the last apply ran is drift ("service missing"), one it did not
// is new in this revision.
func BuildPlanSince(desired *compose.Stack, observed compose.ObservedStack, last *reconcile.Deployed) *reconcile.Plan {
	st := newIndex(desired, observed)
	p := &reconcile.Plan{Project: desired.Namespace, Actions: []reconcile.Action{}}
	p.Environment, p.Commit = releaseOf(desired)
	p.Warnings = preconditionProblems(desired, observed)
	nets, warns := st.planNetworks()
	p.Actions = append(p.Actions, nets...)
	p.Warnings = append(p.Warnings, warns...)
	p.Actions = append(p.Actions, st.planObjects(kindConfig)...)
	p.Actions = append(p.Actions, st.planObjects(kindSecret)...)
	creates, updates := st.planServices(last)
	p.Actions = append(p.Actions, creates...)
	p.Actions = append(p.Actions, updates...)
	p.Actions = append(p.Actions, st.planRemovals()...)
	p.Actions = append(p.Actions, st.planPrune(kindConfig)...)
	p.Actions = append(p.Actions, st.planPrune(kindSecret)...)
	if len(p.Warnings) == 0 {
		p.Warnings = nil
	}
	return p
}

// releaseOf reads the environment and commit the converter put on the
// desired services' labels.
func releaseOf(desired *compose.Stack) (env, commit string) {
	for _, s := range desired.Services {
		if env == "" {
			env = s.Spec.Labels[compose.LabelEnvironment]
		}
		if commit == "" {
			commit = s.Spec.Labels[compose.LabelCommit]
		}
	}
	return env, commit
}

// DeployedOf is the record of desired running at commit, as of at, for
// BuildPlanSince (reconcile.DeployedOf of the stack: each service by key,
// a global service or a job as 1).
func DeployedOf(desired *compose.Stack, commit string, at time.Time) *reconcile.Deployed {
	return reconcile.DeployedOf(&compose.Project{Name: desired.Namespace, Commit: commit, Stack: desired}, at)
}

// planNetworks creates the stack's missing networks, and warns about
// existing ones whose settings differ: a swarm network cannot be changed
// while services use it, so lockstep leaves it as it is.
func (st *stackIndex) planNetworks() ([]reconcile.Action, []string) {
	var acts []reconcile.Action
	var warns []string
	for _, n := range st.desired.Networks {
		if n.External {
			continue
		}
		o, ok := findNetwork(st.observed, n.Name)
		if !ok {
			acts = append(acts, reconcile.Action{Kind: reconcile.ActCreateNetwork, Network: n.Name, Reasons: []string{reasonNetworkMissing}})
			continue
		}
		if d := networkDiff(n, o); len(d) > 0 {
			warns = append(warns, fmt.Sprintf("network %s (networks.%s) differs from the compose files (%s); lockstep does not recreate a network services use: remove the stack (docker stack rm %s) and the next pass recreates it",
				n.Name, n.Key, strings.Join(d, ", "), st.desired.Namespace))
		}
	}
	return acts, warns
}

func networkDiff(want compose.StackNetwork, got compose.ObservedStackNetwork) []string {
	var out []string
	driver := want.Driver
	if driver == "" {
		driver = "overlay"
	}
	if got.Driver != "" && got.Driver != driver {
		out = append(out, fmt.Sprintf("driver %s -> %s", got.Driver, driver))
	}
	if got.Attachable != want.Attachable {
		out = append(out, fmt.Sprintf("attachable %t -> %t", got.Attachable, want.Attachable))
	}
	if got.Internal != want.Internal {
		out = append(out, fmt.Sprintf("internal %t -> %t", got.Internal, want.Internal))
	}
	return out
}

// planServices creates the missing services and updates those whose spec
// changed, in the stack's (key) order.
func (st *stackIndex) planServices(last *reconcile.Deployed) (creates, updates []reconcile.Action) {
	for i := range st.desired.Services {
		svc := &st.desired.Services[i]
		obs, ok := st.services[svc.Name]
		if !ok {
			creates = append(creates, st.createAction(svc, last))
			continue
		}
		if a, changed := st.updateAction(svc, obs); changed {
			updates = append(updates, a)
		}
	}
	return creates, updates
}

func (st *stackIndex) createAction(svc *compose.StackService, last *reconcile.Deployed) reconcile.Action {
	a := reconcile.Action{Kind: reconcile.ActCreate, Service: svc.Key, SwarmService: svc.Name, Image: svc.Image, Reasons: []string{reasonNewService}}
	ran := false
	if last != nil {
		ran = last.Replicas[svc.Key] > 0
	} else if commit := svc.Spec.Labels[compose.LabelCommit]; commit != "" {
		// Without a record, a stack that already runs this revision
		// (another service carries its commit) lost the service by hand.
		for _, o := range st.observed.Services {
			if o.Spec.Labels[compose.LabelCommit] == commit {
				ran = true
			}
		}
	}
	if ran {
		a.Reasons, a.Drift = []string{reasonServiceMissing}, true
	}
	return a
}

// updateAction decides whether svc, found as obs, needs its spec sent
// again: its lockstep.hash differs (the revision changed it), or a field
// that matters differs although the hash is the same (changed by hand:
// drift).
func (st *stackIndex) updateAction(svc *compose.StackService, obs compose.ObservedService) (reconcile.Action, bool) {
	a := reconcile.Action{Kind: reconcile.ActUpdate, Service: svc.Key, SwarmService: svc.Name, ObjectID: obs.ID, Image: svc.Image}
	if u := svc.Spec.UpdateConfig; u != nil {
		a.Order = string(u.Order)
	}
	diff := specDiff(st, svc, obs)
	have := obs.Spec.Labels[compose.LabelHash]
	if wm, gm := modeKind(svc.Spec.Mode), modeKind(obs.Spec.Mode); wm != gm {
		// The swarm refuses to change a service's mode in an update.
		a.Kind, a.Order = reconcile.ActRecreate, ""
		a.Reasons = append(diff, "the swarm cannot change a service's mode in place: it is removed and created again")
		a.Drift = have == svc.Hash
		return a, true
	}
	switch {
	case have == svc.Hash && len(diff) == 0:
		return a, false
	case have == svc.Hash:
		for _, d := range diff {
			if !strings.Contains(d, "outside lockstep") {
				d += reasonOutsideLockstep
			}
			a.Reasons = append(a.Reasons, d)
		}
		a.Drift = true
	case have == "":
		// Deployed by docker stack deploy, or by hand: taken over, with
		// lockstep's labels added.
		a.Reasons = append(diff, "not deployed by lockstep (no lockstep.hash label): taken over")
		a.Adopt = true
	case len(diff) == 0:
		a.Reasons = []string{fmt.Sprintf("configuration changed (lockstep.hash %s -> %s)", short(have), short(svc.Hash))}
	default:
		a.Reasons = diff
	}
	return a, true
}

// planRemovals removes the services of the stack no longer in the compose
// files.
func (st *stackIndex) planRemovals() []reconcile.Action {
	var out []reconcile.Action
	for _, o := range st.observed.Services {
		if _, ok := st.wantServices[o.Name]; ok {
			continue
		}
		key := strings.TrimPrefix(o.Name, st.desired.Namespace+"_")
		out = append(out, reconcile.Action{Kind: reconcile.ActRemove, Service: key, SwarmService: o.Name, ObjectID: o.ID,
			Reasons: []string{fmt.Sprintf("service %s removed from the compose files", key)}})
	}
	return out
}

// short is the 12-hex form of a hash, for reasons.
func short(h string) string {
	if h == "" {
		return "none"
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
