package compose

import (
	"github.com/moby/moby/api/types/mount"
)

// stackViolations applies the deploy policy to a stack (CheckPolicy):
// what a swarm service can be given of its nodes. privileged, devices,
// network_mode and pid/ipc: host cannot be expressed in a swarm service
// and are refused by the loader, so what is left is cap_add, host binds
// (judged against the roots as on a single host: the paths are the
// nodes', which lockstep cannot see, so symlinks resolve as the manager
// has them), and attaching to the node's host network.
func stackViolations(st *Stack, pol Policy, roots, sockets []string) []Violation {
	var out []Violation
	allowedCaps := map[string]bool{}
	for _, c := range pol.AllowCapabilities {
		allowedCaps[normalizeCap(c)] = true
	}
	hostNets := map[string]bool{}
	for _, n := range st.Networks {
		if n.External && n.Name == "host" {
			hostNets[n.Name] = true
		}
	}
	for _, s := range st.Services {
		add := func(setting, rule, detail string) {
			out = append(out, Violation{Service: s.Key, Setting: setting, Rule: rule, Detail: detail})
		}
		cs := s.Spec.TaskTemplate.ContainerSpec
		if cs == nil {
			continue
		}
		for _, c := range cs.CapabilityAdd {
			if !allowedCaps[normalizeCap(c)] {
				add("cap_add", "allow_capabilities", c+" is not allowed ([policy].allow_capabilities = "+tomlList(pol.AllowCapabilities)+")")
			}
		}
		for _, a := range s.Spec.TaskTemplate.Networks {
			if hostNets[a.Target] && !pol.AllowHostNetwork {
				add("networks", "allow_host_network", "the host network is not allowed ([policy].allow_host_network = false)")
			}
		}
		for _, m := range cs.Mounts {
			if m.Type != mount.TypeBind {
				continue
			}
			if v, bad := checkBind(hostBind{source: m.Source, target: m.Target, setting: "volumes"}, pol, roots, sockets); bad {
				add("volumes", v.Rule, v.Detail)
			}
		}
	}
	return out
}
