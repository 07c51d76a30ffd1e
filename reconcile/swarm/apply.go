package swarm

import (
	"context"
	"fmt"
	"strings"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// ApplyOptions tune Apply. The zero value is usable.
type ApplyOptions struct {
	Log zerolog.Logger
	// CallTimeout bounds each engine call but an image resolution
	// (default 2m).
	CallTimeout time.Duration
	// ResolveTimeout bounds resolving one image's digest at its registry
	// (default 5m).
	ResolveTimeout time.Duration
}

func (o ApplyOptions) withDefaults() ApplyOptions {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Minute
	}
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = 5 * time.Minute
	}
	return o
}

// Apply carries out plan for desired; observed is the snapshot the plan
// was built from (the ids and versions of what exists).
//
// It checks the preconditions (Check) and pins the image of every service
// it creates or updates to its digest before it changes anything, so a
// missing external network or an unknown image leaves the swarm as it
// was. A service whose image reference did not change keeps the digest
// the swarm runs: a tag that moved is never a reason to update, and a
// rollback to a reference the service ran just before gets that digest
// back. It then performs the actions in order and stops at the first
// error, with what was done so far in the result. The plan's removals of
// configs and secrets are left for Prune, after the health gate. A plan
// with nothing else makes no engine call.
func Apply(ctx context.Context, eng Engine, desired *compose.Stack, observed compose.ObservedStack, plan *reconcile.Plan, opts ApplyOptions) (*reconcile.ApplyResult, error) {
	res := &reconcile.ApplyResult{Done: []reconcile.Action{}}
	if !Changes(plan) {
		return res, nil
	}
	if err := Check(desired, observed); err != nil {
		return res, err
	}
	a := &applier{
		eng:      eng,
		st:       newIndex(desired, observed),
		opts:     opts.withDefaults(),
		res:      res,
		ids:      map[kind]map[string]string{kindConfig: {}, kindSecret: {}},
		pinned:   map[string]string{},
		resolved: map[string]string{},
	}
	for k, objs := range a.st.have {
		for name, o := range objs {
			a.ids[k][name] = o.ID
		}
	}
	if err := a.pinImages(ctx, plan.Actions); err != nil {
		return res, err
	}
	for _, act := range plan.Actions {
		if err := a.do(ctx, act); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Changes reports whether plan has anything for Apply to do: actions
// other than the removals of configs and secrets left for Prune.
func Changes(plan *reconcile.Plan) bool {
	if plan == nil {
		return false
	}
	for _, act := range plan.Actions {
		if !isPrune(act) {
			return true
		}
	}
	return false
}

func isPrune(act reconcile.Action) bool {
	return act.Kind == reconcile.ActRemoveConfig || act.Kind == reconcile.ActRemoveSecret
}

type applier struct {
	eng      Engine
	st       *stackIndex
	opts     ApplyOptions
	res      *reconcile.ApplyResult
	ids      map[kind]map[string]string // object name -> id, observed or created
	pinned   map[string]string          // service name -> the image it is sent with
	resolved map[string]string          // reference -> pinned, resolved once per apply
}

// pinImages decides the image of every service the plan creates or
// updates, resolving each reference at most once.
func (a *applier) pinImages(ctx context.Context, acts []reconcile.Action) error {
	for _, act := range acts {
		if act.Kind != reconcile.ActCreate && act.Kind != reconcile.ActUpdate && act.Kind != reconcile.ActRecreate {
			continue
		}
		svc, err := a.service(act)
		if err != nil {
			return err
		}
		img, err := a.pin(ctx, svc)
		if err != nil {
			return fmt.Errorf("resolve image %s of service %s (%s): %w", svc.Image, svc.Key, svc.Name, err)
		}
		a.pinned[svc.Name] = img
	}
	return nil
}

// pin is the pinned image svc is sent with: the one the swarm runs, or
// ran just before, when it is the same reference; else the reference
// resolved now.
func (a *applier) pin(ctx context.Context, svc *compose.StackService) (string, error) {
	if hasDigest(svc.Image) {
		return svc.Image, nil // the compose file pins it
	}
	if obs, ok := a.st.services[svc.Name]; ok {
		if img := imageOf(obs.Spec); hasDigest(img) && samePinnedRef(img, svc.Image) {
			return img, nil
		}
		if prev := obs.PreviousSpec; prev != nil {
			if img := imageOf(*prev); hasDigest(img) && samePinnedRef(img, svc.Image) {
				return img, nil
			}
		}
	}
	if img, ok := a.resolved[svc.Image]; ok {
		return img, nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.opts.ResolveTimeout)
	defer cancel()
	img, err := a.eng.ResolveImage(rctx, svc.Image)
	if err != nil {
		return "", err
	}
	a.opts.Log.Info().Str("image", svc.Image).Str("pinned", img).Msg("image resolved")
	a.resolved[svc.Image] = img
	return img, nil
}

func hasDigest(ref string) bool { return strings.Contains(ref, "@sha256:") }

func (a *applier) service(act reconcile.Action) (*compose.StackService, error) {
	svc := a.st.wantServices[act.SwarmService]
	if svc == nil {
		return nil, fmt.Errorf("the compose files declare no service %s (plan and stack do not match: re-plan)", act.SwarmService)
	}
	return svc, nil
}

func (a *applier) do(ctx context.Context, act reconcile.Action) error {
	if isPrune(act) {
		return nil // Prune's, once the stack converged
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", describe(act), err)
	}
	ev := a.opts.Log.Info().Str("action", string(act.Kind)).Strs("reasons", act.Reasons)
	for _, f := range [][2]string{{"service", act.SwarmService}, {"network", act.Network}, {"config", act.Config}, {"secret", act.Secret}} {
		if f[1] != "" {
			ev = ev.Str(f[0], f[1])
		}
	}
	if act.Drift {
		ev = ev.Bool("drift", true)
	}
	ev.Msg("apply")
	cctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	defer cancel()
	var err error
	switch act.Kind {
	case reconcile.ActCreateNetwork:
		err = a.createNetwork(cctx, act)
	case reconcile.ActCreateConfig:
		err = a.createObject(cctx, kindConfig, act.Config)
	case reconcile.ActCreateSecret:
		err = a.createObject(cctx, kindSecret, act.Secret)
	case reconcile.ActCreate:
		act.ObjectID, err = a.createService(cctx, act)
	case reconcile.ActUpdate:
		err = a.updateService(cctx, act)
	case reconcile.ActRemove:
		err = a.eng.RemoveService(cctx, act.ObjectID)
	case reconcile.ActRecreate:
		if err = a.eng.RemoveService(cctx, act.ObjectID); err == nil {
			act.ObjectID, err = a.createService(cctx, act)
		}
	default:
		err = fmt.Errorf("unknown action kind %q for a swarm stack (plan from a newer lockstep?)", act.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", describe(act), err)
	}
	a.res.Done = append(a.res.Done, act)
	switch act.Kind {
	case reconcile.ActCreate:
		a.res.Created++
	case reconcile.ActUpdate:
		a.res.Updated++
	case reconcile.ActRemove:
		a.res.Removed++
	case reconcile.ActRecreate:
		a.res.Recreated++
	}
	return nil
}

// describe names an action in an error message.
func describe(act reconcile.Action) string {
	switch act.Kind {
	case reconcile.ActCreateNetwork:
		return "create network " + act.Network
	case reconcile.ActCreateConfig, reconcile.ActRemoveConfig:
		return fmt.Sprintf("%s %s", act.Kind, act.Config)
	case reconcile.ActCreateSecret, reconcile.ActRemoveSecret:
		return fmt.Sprintf("%s %s", act.Kind, act.Secret)
	}
	return fmt.Sprintf("%s service %s", act.Kind, act.SwarmService)
}

func (a *applier) createNetwork(ctx context.Context, act reconcile.Action) error {
	for _, n := range a.st.desired.Networks {
		if n.Name == act.Network {
			_, err := a.eng.CreateNetwork(ctx, n)
			return err
		}
	}
	return fmt.Errorf("the compose files declare no network named %s (plan and stack do not match: re-plan)", act.Network)
}

func (a *applier) createObject(ctx context.Context, k kind, name string) error {
	o, ok := a.st.want[k][name]
	if !ok {
		return fmt.Errorf("the compose files declare no %s named %s (plan and stack do not match: re-plan)", k, name)
	}
	create := a.eng.CreateConfig
	if k == kindSecret {
		create = a.eng.CreateSecret
	}
	id, err := create(ctx, o)
	if err != nil {
		return err
	}
	a.ids[k][name] = id
	return nil
}

func (a *applier) createService(ctx context.Context, act reconcile.Action) (string, error) {
	svc, err := a.service(act)
	if err != nil {
		return "", err
	}
	spec, err := a.specFor(svc)
	if err != nil {
		return "", err
	}
	return a.eng.CreateService(ctx, spec)
}

func (a *applier) updateService(ctx context.Context, act reconcile.Action) error {
	svc, err := a.service(act)
	if err != nil {
		return err
	}
	obs, ok := a.st.services[svc.Name]
	if !ok {
		return fmt.Errorf("the swarm has no service %s any more (re-plan)", svc.Name)
	}
	spec, err := a.specFor(svc)
	if err != nil {
		return err
	}
	return a.eng.UpdateService(ctx, obs.ID, obs.Version, spec)
}

// specFor is the spec svc is sent with: the desired one with its image
// pinned and the ids of its configs and secrets filled in. The desired
// stack is not changed.
func (a *applier) specFor(svc *compose.StackService) (swarmapi.ServiceSpec, error) {
	spec := svc.Spec
	cs := containerOf(spec)
	cs.Image = a.pinned[svc.Name]
	cs.Configs = make([]*swarmapi.ConfigReference, 0, len(containerOf(svc.Spec).Configs))
	for _, r := range containerOf(svc.Spec).Configs {
		ref := *r
		if ref.ConfigID = a.ids[kindConfig][ref.ConfigName]; ref.ConfigID == "" {
			return spec, fmt.Errorf("config %s does not exist (plan and stack do not match: re-plan)", ref.ConfigName)
		}
		cs.Configs = append(cs.Configs, &ref)
	}
	cs.Secrets = make([]*swarmapi.SecretReference, 0, len(containerOf(svc.Spec).Secrets))
	for _, r := range containerOf(svc.Spec).Secrets {
		ref := *r
		if ref.SecretID = a.ids[kindSecret][ref.SecretName]; ref.SecretID == "" {
			return spec, fmt.Errorf("secret %s does not exist (plan and stack do not match: re-plan)", ref.SecretName)
		}
		cs.Secrets = append(cs.Secrets, &ref)
	}
	if len(cs.Configs) == 0 {
		cs.Configs = nil
	}
	if len(cs.Secrets) == 0 {
		cs.Secrets = nil
	}
	spec.TaskTemplate.ContainerSpec = &cs
	return spec, nil
}
