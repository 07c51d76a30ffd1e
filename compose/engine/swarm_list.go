package engine

import (
	"cmp"
	"context"
	"slices"

	"github.com/moby/moby/api/types/network"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// externalNetworks are the names of the external networks desired needs.
func externalNetworks(desired *compose.Stack) []string {
	var names []string
	for _, n := range desired.Networks {
		if n.External {
			names = append(names, n.Name)
		}
	}
	return names
}

// externalObjects are the names of the external configs or secrets among
// objs.
func externalObjects(objs []compose.StackObject) []string {
	var names []string
	for _, o := range objs {
		if o.External {
			names = append(names, o.Name)
		}
	}
	return names
}

// byNames filters a list by names. The engine's name filter matches more
// than the exact name (a prefix, or a substring for networks), so callers
// keep only exact matches.
func byNames(names []string) client.Filters {
	return make(client.Filters).Add("name", names...)
}

// listed merges what the label filter found with the externals found by
// name (exact names only, each object once), sorted by name.
func listed[T any](labelled, named []T, id, name func(T) string, externals []string) []T {
	seen := map[string]bool{}
	var out []T
	for _, v := range labelled {
		seen[id(v)] = true
		out = append(out, v)
	}
	for _, v := range named {
		if !seen[id(v)] && slices.Contains(externals, name(v)) {
			seen[id(v)] = true
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Or(cmp.Compare(name(a), name(b)), cmp.Compare(id(a), id(b))) })
	return out
}

// stackNetworks lists the networks labelled with the stack, and the
// external ones it names.
func (s *Swarm) stackNetworks(ctx context.Context, byStack client.Filters, externals []string) ([]compose.ObservedStackNetwork, error) {
	labelled, err := s.cli.NetworkList(ctx, client.NetworkListOptions{Filters: byStack})
	if err != nil {
		return nil, err
	}
	var named client.NetworkListResult
	if len(externals) > 0 {
		if named, err = s.cli.NetworkList(ctx, client.NetworkListOptions{Filters: byNames(externals)}); err != nil {
			return nil, err
		}
	}
	nets := listed(labelled.Items, named.Items,
		func(n network.Summary) string { return n.ID }, func(n network.Summary) string { return n.Name }, externals)
	var out []compose.ObservedStackNetwork
	for _, n := range nets {
		out = append(out, compose.ObservedStackNetwork{
			ID: n.ID, Name: n.Name, Driver: n.Driver, Scope: n.Scope,
			Labels: n.Labels, Attachable: n.Attachable, Internal: n.Internal,
		})
	}
	return out, nil
}

// stackConfigs lists the configs labelled with the stack, and the external
// ones it names.
func (s *Swarm) stackConfigs(ctx context.Context, byStack client.Filters, externals []string) ([]compose.ObservedObject, error) {
	labelled, err := s.cli.ConfigList(ctx, client.ConfigListOptions{Filters: byStack})
	if err != nil {
		return nil, err
	}
	var named client.ConfigListResult
	if len(externals) > 0 {
		if named, err = s.cli.ConfigList(ctx, client.ConfigListOptions{Filters: byNames(externals)}); err != nil {
			return nil, err
		}
	}
	cfgs := listed(labelled.Items, named.Items,
		func(c swarmapi.Config) string { return c.ID }, func(c swarmapi.Config) string { return c.Spec.Name }, externals)
	var out []compose.ObservedObject
	for _, c := range cfgs {
		out = append(out, compose.ObservedObject{ID: c.ID, Name: c.Spec.Name, Labels: c.Spec.Labels})
	}
	return out, nil
}

// stackSecrets lists the secrets labelled with the stack, and the external
// ones it names. The list carries no content.
func (s *Swarm) stackSecrets(ctx context.Context, byStack client.Filters, externals []string) ([]compose.ObservedObject, error) {
	labelled, err := s.cli.SecretList(ctx, client.SecretListOptions{Filters: byStack})
	if err != nil {
		return nil, err
	}
	var named client.SecretListResult
	if len(externals) > 0 {
		if named, err = s.cli.SecretList(ctx, client.SecretListOptions{Filters: byNames(externals)}); err != nil {
			return nil, err
		}
	}
	secs := listed(labelled.Items, named.Items,
		func(c swarmapi.Secret) string { return c.ID }, func(c swarmapi.Secret) string { return c.Spec.Name }, externals)
	var out []compose.ObservedObject
	for _, c := range secs {
		out = append(out, compose.ObservedObject{ID: c.ID, Name: c.Spec.Name, Labels: c.Spec.Labels})
	}
	return out, nil
}
