package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// inspectParallelism bounds concurrent container inspects in Observe: enough
// to hide round trips on a host with dozens of containers, few enough not
// to queue up behind a busy daemon.
const inspectParallelism = 8

// Observe reads back what the engine has for p: one labelled container
// list, and an inspect only of the containers the list cannot decide (see
// observe_list.go).
func (e *Engine) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	obs := compose.Observed{Project: p.Name, Images: map[string]string{}}
	var err error
	if obs.Containers, err = e.observeContainers(ctx, p.Name); err != nil {
		return compose.Observed{}, err
	}
	// The API version is negotiated by now. Settings this engine would
	// silently drop are refused here, before anything is changed.
	if err := checkAPISupport(e.cli.ClientVersion(), p); err != nil {
		return compose.Observed{}, err
	}
	if obs.Networks, err = e.observeNetworks(ctx, p); err != nil {
		return compose.Observed{}, err
	}
	if obs.Volumes, err = e.observeVolumes(ctx, p); err != nil {
		return compose.Observed{}, err
	}
	if obs.PortHolders, err = e.observePorts(ctx, p); err != nil {
		return compose.Observed{}, err
	}
	for _, svc := range p.Services {
		if svc.Image == "" {
			continue
		}
		if _, done := obs.Images[svc.Image]; done {
			continue
		}
		img, err := e.cli.ImageInspect(ctx, svc.Image)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return compose.Observed{}, fmt.Errorf("observe project %s: inspect image %s of service %s: %w", p.Name, svc.Image, svc.Name, err)
		}
		obs.Images[svc.Image] = img.ID
	}
	return obs, nil
}

func projectFilter(project string) client.Filters {
	return make(client.Filters).Add("label", compose.LabelProject+"="+project)
}

func (e *Engine) observeContainers(ctx context.Context, project string) ([]compose.Container, error) {
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("observe project %s: list containers: %w", project, err)
	}
	known := e.facts.load(project)
	remember := map[string]inspectFacts{}
	var ctrs []compose.Container
	var inspect []string // IDs the list cannot decide
	keys := map[string]string{}
	for _, s := range list.Items {
		// One-off containers (`docker compose run`) are not part of the
		// project's desired state; touching them would kill someone's job.
		if s.Labels[compose.LabelOneoff] == "True" {
			continue
		}
		c, facts := fromSummary(s)
		if needsInspect(c, facts, known[s.ID]) {
			inspect = append(inspect, s.ID)
			keys[s.ID] = facts.key
			continue
		}
		remember[s.ID] = known[s.ID]
		ctrs = append(ctrs, withFacts(c, known[s.ID]))
	}
	inspected, err := e.inspectAll(ctx, project, inspect)
	if err != nil {
		return nil, err
	}
	for _, c := range inspected {
		if key := keys[c.ID]; key != "" {
			remember[c.ID] = factsOf(key, c)
		}
		ctrs = append(ctrs, c)
	}
	e.facts.store(project, remember)
	slices.SortFunc(ctrs, func(a, b compose.Container) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Number, b.Number), cmp.Compare(a.Name, b.Name))
	})
	return ctrs, nil
}

// inspectAll inspects ids, a few at a time; one removed since the list is
// left out.
func (e *Engine) inspectAll(ctx context.Context, project string, ids []string) ([]compose.Container, error) {
	out := make([]*compose.Container, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, inspectParallelism)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			switch {
			case cerrdefs.IsNotFound(err):
				// Removed between list and inspect: it is not there.
			case err != nil:
				errs[i] = fmt.Errorf("observe project %s: inspect container %s: %w", project, shortID(id), err)
			default:
				c := fromInspect(res.Container)
				out[i] = &c
			}
		}()
	}
	wg.Wait()
	var ctrs []compose.Container
	for i := range ids {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if out[i] != nil {
			ctrs = append(ctrs, *out[i])
		}
	}
	return ctrs, nil
}

// fromInspect converts an inspect response into the observed model.
func fromInspect(in container.InspectResponse) compose.Container {
	c := compose.Container{
		ID:           in.ID,
		Name:         strings.TrimPrefix(in.Name, "/"),
		RestartCount: in.RestartCount,
		ImageID:      in.Image,
	}
	if in.Config != nil {
		c.Image = in.Config.Image
		c.Labels = maps.Clone(in.Config.Labels)
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	setFromLabels(&c)
	if c.Hash == "" {
		// A container lockstep did not create, which it may adopt: the plan
		// says how it differs, from this.
		c.Spec = specOf(in)
	}
	if ns := in.NetworkSettings; ns != nil && len(ns.Networks) > 0 {
		c.Networks = make(map[string]compose.Endpoint, len(ns.Networks))
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			c.Networks[name] = compose.Endpoint{NetworkID: ep.NetworkID, Aliases: slices.Clone(ep.Aliases)}
		}
	}
	if st := in.State; st != nil {
		c.State = string(st.Status)
		c.ExitCode = st.ExitCode
		if st.Health != nil && st.Health.Status != container.NoHealthcheck {
			c.Health = string(st.Health.Status)
		}
	}
	return c
}

// specOf is what an inspected container was created with, as the planner
// compares it: configured binds and volumes, environment digests, port
// bindings as configured (not as running) and the command.
func specOf(in container.InspectResponse) *compose.ContainerSpec {
	spec := &compose.ContainerSpec{}
	if in.Config != nil {
		spec.Env = compose.EnvDigests(in.Config.Env)
		spec.Cmd = slices.Clone([]string(in.Config.Cmd))
		spec.Entrypoint = slices.Clone([]string(in.Config.Entrypoint))
	}
	if in.HostConfig != nil {
		spec.Ports = compose.PortList(in.HostConfig.PortBindings)
	}
	for _, m := range in.Mounts {
		sm := compose.SpecMount{Type: string(m.Type), Source: m.Source, Target: m.Destination}
		if m.Type == mount.TypeVolume {
			sm.Source = m.Name
		}
		spec.Mounts = append(spec.Mounts, sm)
	}
	spec.Mounts = compose.SortMounts(spec.Mounts)
	return spec
}

// observeNetworks returns the networks labelled with the project, plus the
// ones p names that exist without the label (external networks, or one a
// human created by hand), so the planner can tell "missing" from "foreign".
func (e *Engine) observeNetworks(ctx context.Context, p *compose.Project) ([]compose.ObservedNetwork, error) {
	list, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: projectFilter(p.Name)})
	if err != nil {
		return nil, fmt.Errorf("observe project %s: list networks: %w", p.Name, err)
	}
	byName := map[string]compose.ObservedNetwork{}
	for _, n := range list.Items {
		byName[n.Name] = observedNetwork(n.Network)
	}
	for _, want := range p.Networks {
		if _, ok := byName[want.Name]; ok {
			continue
		}
		n, found, err := e.inspectNetwork(ctx, want.Name)
		if err != nil {
			return nil, fmt.Errorf("observe project %s: network %s (networks.%s): %w", p.Name, want.Name, want.Key, err)
		}
		if found {
			byName[n.Name] = n
		}
	}
	return slices.SortedFunc(maps.Values(byName), func(a, b compose.ObservedNetwork) int {
		return cmp.Compare(a.Name, b.Name)
	}), nil
}

// inspectNetwork looks a network up by exact name. The engine also resolves
// IDs and ID prefixes, so a name that happens to look like one could match
// another network: only an exact name counts.
func (e *Engine) inspectNetwork(ctx context.Context, name string) (compose.ObservedNetwork, bool, error) {
	res, err := e.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return compose.ObservedNetwork{}, false, nil
	}
	if err != nil {
		return compose.ObservedNetwork{}, false, fmt.Errorf("inspect network %s: %w", name, err)
	}
	if res.Network.Name != name {
		return compose.ObservedNetwork{}, false, nil
	}
	return observedNetwork(res.Network.Network), true, nil
}

// observedNetwork is the engine's network in the observed model, with the
// settings a network Docker Compose created is compared by.
func observedNetwork(n network.Network) compose.ObservedNetwork {
	on := compose.ObservedNetwork{
		ID: n.ID, Name: n.Name, Labels: maps.Clone(n.Labels),
		Driver: n.Driver, Options: maps.Clone(n.Options),
		Internal: n.Internal, Attachable: n.Attachable, EnableIPv6: n.EnableIPv6,
	}
	if n.IPAM.Driver != "" || len(n.IPAM.Config) > 0 || len(n.IPAM.Options) > 0 {
		ipam := n.IPAM
		ipam.Config = slices.Clone(n.IPAM.Config)
		ipam.Options = maps.Clone(n.IPAM.Options)
		on.IPAM = &ipam
	}
	return on
}

func (e *Engine) observeVolumes(ctx context.Context, p *compose.Project) ([]compose.ObservedVolume, error) {
	list, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: projectFilter(p.Name)})
	if err != nil {
		return nil, fmt.Errorf("observe project %s: list volumes: %w", p.Name, err)
	}
	byName := map[string]compose.ObservedVolume{}
	for _, v := range list.Items {
		byName[v.Name] = compose.ObservedVolume{Name: v.Name, Labels: maps.Clone(v.Labels), Driver: v.Driver, Options: maps.Clone(v.Options)}
	}
	for _, want := range p.Volumes {
		if _, ok := byName[want.Name]; ok {
			continue
		}
		res, err := e.cli.VolumeInspect(ctx, want.Name, client.VolumeInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("observe project %s: inspect volume %s (volumes.%s): %w", p.Name, want.Name, want.Key, err)
		}
		byName[res.Volume.Name] = compose.ObservedVolume{Name: res.Volume.Name, Labels: maps.Clone(res.Volume.Labels), Driver: res.Volume.Driver, Options: maps.Clone(res.Volume.Options)}
	}
	return slices.SortedFunc(maps.Values(byName), func(a, b compose.ObservedVolume) int {
		return cmp.Compare(a.Name, b.Name)
	}), nil
}
