package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
)

// reconnectAction plans re-wiring a replica whose configuration is right
// but whose network endpoints are not what svc declares: a network it is
// missing from (disconnected by hand, or its network removed and, by this
// plan, re-created), an endpoint on a network that was removed and
// re-created under the same name, aliases other than the compose file's,
// or a network of this project the service does not use. Docker Compose
// recreates such a container; a reconnect repairs the same without a
// restart, and apply connects with the very endpoint settings a create
// would use.
//
// A service with no endpoints of its own (network_mode: host, none,
// service:x, container:x) is left alone: its wiring is not the engine's
// endpoints.
func reconnectAction(desired *compose.Project, observed compose.Observed, svc *compose.Service, c compose.Container, name string) (Action, bool) {
	if svc.Networking == nil || len(svc.Networking.EndpointsConfig) == 0 {
		return Action{}, false
	}
	a := Action{Kind: ActReconnect, Service: svc.Name, Number: c.Number, Container: name, ContainerID: c.ID, Drift: true}
	for _, net := range sortedNames(svc.Networking.EndpointsConfig) {
		var want []string
		if ep := svc.Networking.EndpointsConfig[net]; ep != nil {
			want = ep.Aliases
		}
		have, attached := c.Networks[net]
		current := findNetwork(observed, net)
		switch {
		case !attached:
			a.Connect = append(a.Connect, net)
			a.Reasons = append(a.Reasons, fmt.Sprintf("not on network %s", net))
		case current == nil || (have.NetworkID != "" && current.ID != "" && have.NetworkID != current.ID):
			// The endpoint names a network that no longer exists: removed
			// by hand while the container was stopped, perhaps re-created.
			a.Disconnect = append(a.Disconnect, net)
			a.Connect = append(a.Connect, net)
			a.Reasons = append(a.Reasons, fmt.Sprintf("on a network %s that was removed (id %s)", net, shortID(have.NetworkID)))
		default:
			if got := fileAliases(have.Aliases, want, c); !sameSet(got, want) {
				a.Disconnect = append(a.Disconnect, net)
				a.Connect = append(a.Connect, net)
				a.Reasons = append(a.Reasons, fmt.Sprintf("network %s: aliases %s, want %s", net, aliasList(got), aliasList(want)))
			}
		}
	}
	for _, net := range sortedNames(c.Networks) {
		if _, wanted := svc.Networking.EndpointsConfig[net]; wanted {
			continue
		}
		// Only the project's own networks: one an operator attached from
		// elsewhere (a monitoring network) is theirs, as compose leaves it.
		if on := findNetwork(observed, net); on != nil && on.Labels[compose.LabelProject] == desired.Name {
			a.Disconnect = append(a.Disconnect, net)
			a.Reasons = append(a.Reasons, fmt.Sprintf("on network %s, which service %s does not use", net, svc.Name))
		}
	}
	return a, len(a.Reasons) > 0
}

// fileAliases drops from the aliases the engine reports those it adds by
// itself (the container's short ID before API 1.45) and the container's
// name, which it resolves anyway, unless the compose file asks for them
// too (want): what is left is what the compose file is compared with.
func fileAliases(aliases, want []string, c compose.Container) []string {
	var out []string
	for _, al := range aliases {
		engines := al == c.Name || (len(c.ID) >= 12 && (al == c.ID[:12] || al == c.ID))
		if engines && !slices.Contains(want, al) {
			continue
		}
		out = append(out, al)
	}
	return out
}

func sameSet(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

func aliasList(as []string) string {
	if len(as) == 0 {
		return "none"
	}
	s := slices.Clone(as)
	slices.Sort(s)
	return strings.Join(s, ", ")
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
