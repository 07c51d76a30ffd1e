package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// ObserveStack reads what the swarm has of desired's stack: the services,
// networks, configs and secrets with its namespace label, the external
// networks, configs and secrets desired names (an external one that does
// not exist is absent from the result), every task of those services and
// the swarm's nodes. It costs six list calls (services, tasks, networks,
// configs, secrets, nodes; no task list without services) plus one per kind
// of external object the stack names.
func (s *Swarm) ObserveStack(ctx context.Context, desired *compose.Stack) (compose.ObservedStack, error) {
	if desired == nil || desired.Namespace == "" {
		return compose.ObservedStack{}, fmt.Errorf("observe a stack: no stack namespace given")
	}
	ns := desired.Namespace
	out := compose.ObservedStack{Namespace: ns}
	byStack := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+ns)

	services, err := s.cli.ServiceList(ctx, client.ServiceListOptions{Filters: byStack})
	if err != nil {
		return out, fmt.Errorf("list the services of stack %s: %w", ns, err)
	}
	ids := make([]string, 0, len(services.Items))
	for _, svc := range services.Items {
		ids = append(ids, svc.ID)
	}
	tasks, err := s.tasks(ctx, ids...)
	if err != nil {
		return out, fmt.Errorf("list the tasks of stack %s: %w", ns, err)
	}
	for _, svc := range services.Items {
		out.Services = append(out.Services, observedService(svc, tasks[svc.ID]))
	}
	slices.SortFunc(out.Services, func(a, b compose.ObservedService) int { return cmp.Compare(a.Name, b.Name) })

	if out.Networks, err = s.stackNetworks(ctx, byStack, externalNetworks(desired)); err != nil {
		return out, fmt.Errorf("list the networks of stack %s: %w", ns, err)
	}
	if out.Configs, err = s.stackConfigs(ctx, byStack, externalObjects(desired.Configs)); err != nil {
		return out, fmt.Errorf("list the configs of stack %s: %w", ns, err)
	}
	if out.Secrets, err = s.stackSecrets(ctx, byStack, externalObjects(desired.Secrets)); err != nil {
		return out, fmt.Errorf("list the secrets of stack %s: %w", ns, err)
	}
	if out.Nodes, err = s.nodes(ctx); err != nil {
		return out, fmt.Errorf("list the swarm's nodes: %w", err)
	}
	return out, nil
}

// Service re-reads one service and its tasks: two calls.
func (s *Swarm) Service(ctx context.Context, id string) (compose.ObservedService, error) {
	res, err := s.cli.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return compose.ObservedService{}, fmt.Errorf("inspect service %s: %w", shortID(id), err)
	}
	tasks, err := s.tasks(ctx, res.Service.ID)
	if err != nil {
		return compose.ObservedService{}, fmt.Errorf("list the tasks of service %s: %w", res.Service.Spec.Name, err)
	}
	return observedService(res.Service, tasks[res.Service.ID]), nil
}

// tasks lists the tasks of the services ids in one call (the service
// filter takes several), by service id, newest first. None for no ids.
func (s *Swarm) tasks(ctx context.Context, ids ...string) (map[string][]compose.ObservedTask, error) {
	out := map[string][]compose.ObservedTask{}
	if len(ids) == 0 {
		return out, nil
	}
	res, err := s.cli.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", ids...)})
	if err != nil {
		return nil, err
	}
	for _, t := range res.Items {
		out[t.ServiceID] = append(out[t.ServiceID], observedTask(t))
	}
	for _, ts := range out {
		slices.SortStableFunc(ts, func(a, b compose.ObservedTask) int {
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
	}
	return out, nil
}

func observedService(svc swarmapi.Service, tasks []compose.ObservedTask) compose.ObservedService {
	o := compose.ObservedService{
		ID:           svc.ID,
		Name:         svc.Spec.Name,
		Version:      svc.Version.Index,
		Spec:         svc.Spec,
		PreviousSpec: svc.PreviousSpec,
		UpdatedAt:    svc.UpdatedAt,
		Tasks:        tasks,
	}
	if u := svc.UpdateStatus; u != nil {
		o.UpdateState = string(u.State)
		o.UpdateMessage = u.Message
	}
	return o
}

// observedTask is t as the gate reads it. The swarm API reports no
// container health: a task whose container has a healthcheck stays in
// state starting until the check passes, and fails when it does not, so
// Health stays "".
func observedTask(t swarmapi.Task) compose.ObservedTask {
	o := compose.ObservedTask{
		ID:           t.ID,
		Slot:         t.Slot,
		NodeID:       t.NodeID,
		State:        string(t.Status.State),
		DesiredState: string(t.DesiredState),
		Message:      t.Status.Message,
		Err:          t.Status.Err,
		CreatedAt:    t.CreatedAt,
	}
	if cs := t.Status.ContainerStatus; cs != nil {
		o.ExitCode = cs.ExitCode
	}
	if c := t.Spec.ContainerSpec; c != nil {
		o.Image = c.Image
	}
	return o
}

// nodes lists every node of the swarm, by hostname.
func (s *Swarm) nodes(ctx context.Context) ([]compose.ObservedNode, error) {
	res, err := s.cli.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]compose.ObservedNode, 0, len(res.Items))
	for _, n := range res.Items {
		o := compose.ObservedNode{
			ID:           n.ID,
			Hostname:     n.Description.Hostname,
			Role:         string(n.Spec.Role),
			State:        string(n.Status.State),
			Availability: string(n.Spec.Availability),
		}
		if m := n.ManagerStatus; m != nil {
			o.Leader = m.Leader
			o.Reachability = string(m.Reachability)
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b compose.ObservedNode) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}
