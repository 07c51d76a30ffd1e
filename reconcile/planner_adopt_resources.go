package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
)

// composeNetworkDiffers says how a network of the project without a
// lockstep.hash (Docker Compose created it) differs from n: nil when it is
// equal. Compose's config-hash label, when it equals n.ConfigHash, settles
// it at once. Otherwise the engine's settings decide (driver, driver_opts,
// ipam, internal, attachable, enable_ipv6, labels): they are what the
// containers see, and a hash can also move for what changes nothing on the
// engine (another compose-go's serialization), which must not earn a
// network a permanent "stop the project" warning.
func composeNetworkDiffers(n compose.Network, on compose.ObservedNetwork) []string {
	if h := on.Labels[compose.LabelConfigHash]; h != "" && h == n.ConfigHash {
		return nil
	}
	var out []string
	if want, got := orDefault(n.Driver, "bridge"), orDefault(on.Driver, "bridge"); want != got {
		out = append(out, fmt.Sprintf("driver %s -> %s", got, want))
	}
	if keys := differentKeys(n.DriverOpts, on.Options); len(keys) > 0 {
		out = append(out, "driver_opts "+strings.Join(keys, ", "))
	}
	out = append(out, flagDiff("internal", on.Internal, n.Internal)...)
	out = append(out, flagDiff("attachable", on.Attachable, n.Attachable)...)
	out = append(out, flagDiff("enable_ipv6", on.EnableIPv6, n.EnableIPv6)...)
	if n.IPAM != nil {
		// Without ipam in the compose files the engine picks the subnet:
		// nothing to compare.
		if want, got := ipamText(n.IPAM), ipamText(on.IPAM); want != got {
			out = append(out, fmt.Sprintf("ipam %s -> %s", got, want))
		}
	}
	if keys := differentKeys(userLabels(n.Labels), userLabels(on.Labels)); len(keys) > 0 {
		out = append(out, "labels "+strings.Join(keys, ", "))
	}
	return out
}

// volumeDiffers says how an existing volume of the project differs from
// v: nil when equal, by Compose's config-hash label or else by driver,
// driver_opts and labels.
func volumeDiffers(v compose.Volume, ov compose.ObservedVolume) []string {
	if h := ov.Labels[compose.LabelConfigHash]; h != "" && h == v.ConfigHash {
		return nil
	}
	var out []string
	if want, got := orDefault(v.Driver, "local"), orDefault(ov.Driver, "local"); want != got {
		out = append(out, fmt.Sprintf("driver %s -> %s", got, want))
	}
	if keys := differentKeys(v.DriverOpts, ov.Options); len(keys) > 0 {
		out = append(out, "driver_opts "+strings.Join(keys, ", "))
	}
	if keys := differentKeys(userLabels(v.Labels), userLabels(ov.Labels)); len(keys) > 0 {
		out = append(out, "labels "+strings.Join(keys, ", "))
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func flagDiff(name string, got, want bool) []string {
	if got == want {
		return nil
	}
	return []string{fmt.Sprintf("%s %t -> %t", name, got, want)}
}

// differentKeys lists, sorted, the keys whose values differ between a and
// b (a key missing on one side counts); nil and empty maps are equal.
func differentKeys(a, b map[string]string) []string {
	var keys []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// userLabels drops the labels the tools set themselves (com.docker.compose.*,
// lockstep.*): they say who made the resource, not how it is configured.
func userLabels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	maps.DeleteFunc(out, func(k, _ string) bool {
		return strings.HasPrefix(k, "com.docker.compose.") || strings.HasPrefix(k, "lockstep.")
	})
	return out
}

// ipamText renders the IPAM settings that can be configured (driver and
// pools) in a stable form for comparing and for the warning.
func ipamText(ipam *network.IPAM) string {
	if ipam == nil {
		return "default"
	}
	var pools []string
	for _, c := range ipam.Config {
		pool := c.Subnet.String()
		if c.IPRange.IsValid() {
			pool += " range " + c.IPRange.String()
		}
		if c.Gateway.IsValid() {
			pool += " gateway " + c.Gateway.String()
		}
		pools = append(pools, pool)
	}
	slices.Sort(pools)
	s := orDefault(ipam.Driver, "default")
	if len(pools) > 0 {
		s += " [" + strings.Join(pools, "; ") + "]"
	}
	return s
}
