package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// ContainerSpec is the part of a container's configuration a plan names
// when it explains why a container lockstep did not create differs from
// the compose files: its mounts, environment, published ports and command.
// The engine adapter reads it only for containers without a lockstep.hash
// (the ones lockstep may adopt), so a converged project costs nothing more;
// SpecOf gives the same view of a desired service, so both sides compare
// alike.
//
// Environment values are carried as digests only: they may be secrets, and
// a plan names keys, never values.
type ContainerSpec struct {
	Mounts     []SpecMount       // sorted by Target
	Env        map[string]string // name -> EnvDigest(value)
	Ports      []string          // "[host_ip:]host_port:container_port/proto", sorted
	Cmd        []string          // nil when the create config leaves it to the image
	Entrypoint []string          // nil when the create config leaves it to the image
}

// SpecMount is one mount: for a bind, Source is the host path; for a
// volume, the volume name ("" for an anonymous one on the desired side).
type SpecMount struct {
	Type   string // "bind", "volume", "tmpfs"
	Source string
	Target string
}

// EnvDigest is what ContainerSpec keeps of an environment value.
func EnvDigest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// EnvDigests turns a create config's "NAME=value" list into ContainerSpec's
// map. A name without "=" is unset in the container and left out.
func EnvDigests(env []string) map[string]string {
	out := make(map[string]string, len(env))
	for _, kv := range env {
		if name, value, ok := strings.Cut(kv, "="); ok {
			out[name] = EnvDigest(value)
		}
	}
	return out
}

// PortList renders port bindings as ContainerSpec's sorted list.
func PortList(pm network.PortMap) []string {
	var out []string
	for port, binds := range pm {
		for _, b := range binds {
			host := b.HostPort
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				host = b.HostIP.String() + ":" + host
			}
			out = append(out, host+":"+port.String())
		}
	}
	slices.Sort(out)
	return out
}

// SortMounts orders mounts by target, the order ContainerSpec keeps them in.
func SortMounts(ms []SpecMount) []SpecMount {
	slices.SortFunc(ms, func(a, b SpecMount) int { return strings.Compare(a.Target, b.Target) })
	return ms
}

// SpecOf is svc's create configuration as a ContainerSpec: binds and named
// volumes of HostConfig.Binds and HostConfig.Mounts, the environment, the
// published ports and the command.
func SpecOf(svc *Service) ContainerSpec {
	var spec ContainerSpec
	if svc.Config != nil {
		spec.Env = EnvDigests(svc.Config.Env)
		spec.Cmd = slices.Clone([]string(svc.Config.Cmd))
		spec.Entrypoint = slices.Clone([]string(svc.Config.Entrypoint))
	}
	if svc.Host == nil {
		return spec
	}
	spec.Ports = PortList(svc.Host.PortBindings)
	for _, b := range svc.Host.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		m := SpecMount{Type: string(mount.TypeVolume), Source: parts[0], Target: parts[1]}
		if strings.HasPrefix(parts[0], "/") {
			m.Type = string(mount.TypeBind)
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, m := range svc.Host.Mounts {
		spec.Mounts = append(spec.Mounts, SpecMount{Type: string(m.Type), Source: m.Source, Target: m.Target})
	}
	spec.Mounts = SortMounts(spec.Mounts)
	return spec
}
