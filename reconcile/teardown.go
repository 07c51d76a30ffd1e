package reconcile

import (
	"context"
	"fmt"

	"github.com/lockstep-gitops/lockstep/compose"
)

// TeardownPlan is the plan that removes a whole project: every container
// observed for it, then its networks, then (only when removeVolumes) its
// named volumes, each with reason. It is the one plan that removes
// networks and volumes; a normal pass never does. External networks and
// volumes carry no project label, so they are never observed here and
// never removed.
func TeardownPlan(env, project string, observed compose.Observed, removeVolumes bool, reason string) *Plan {
	plan := &Plan{Environment: env, Project: project, Actions: []Action{}}
	for _, c := range sortedContainers(observed.Containers) {
		plan.Actions = append(plan.Actions, Action{
			Kind: ActRemove, Service: c.Service, Number: c.Number, Container: c.Name, ContainerID: c.ID,
			Reasons: []string{reason},
		})
	}
	for _, n := range observed.Networks {
		if n.Labels[compose.LabelProject] != project {
			continue
		}
		plan.Actions = append(plan.Actions, Action{Kind: ActRemoveNetwork, Network: n.Name, Reasons: []string{reason}})
	}
	for _, v := range observed.Volumes {
		if v.Labels[compose.LabelProject] != project {
			continue
		}
		if !removeVolumes {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("volume %s is kept (the set's remove_volumes is false)", v.Name))
			continue
		}
		plan.Actions = append(plan.Actions, Action{Kind: ActRemoveVolume, Volume: v.Name, Reasons: []string{reason}})
	}
	return plan
}

func (a *applier) removeNetwork(ctx context.Context, act Action) error {
	cctx, cancel := a.call(ctx)
	defer cancel()
	return a.eng.RemoveNetwork(cctx, act.Network)
}

func (a *applier) removeVolume(ctx context.Context, act Action) error {
	cctx, cancel := a.call(ctx)
	defer cancel()
	return a.eng.RemoveVolume(cctx, act.Volume)
}
