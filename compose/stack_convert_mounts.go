package compose

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

// stackAttachments are the service's networks as docker stack deploy
// attaches them: each stack network by its name, with the compose aliases
// and the service key as one more (on user-defined networks), sorted by
// name. A service that names none is on <stack>_default.
func (c *converter) stackAttachments(s types.ServiceConfig) ([]swarm.NetworkAttachmentConfig, error) {
	var out []swarm.NetworkAttachmentConfig
	nets := s.Networks
	if len(nets) == 0 {
		nets = map[string]*types.ServiceNetworkConfig{"default": nil}
	}
	for _, key := range sortedKeys(nets) {
		sn := nets[key]
		fail := func(k, msg string) error { return located(c.src, s.Name, "networks."+key+"."+k, msg) }
		target := c.opts.Project + "_" + key
		if n, ok := c.cp.Networks[key]; ok && n.Name != "" {
			target = n.Name
		} else if !ok && key != "default" {
			return nil, located(c.src, s.Name, "networks", fmt.Sprintf("network %q is not declared under the top-level networks:; declare it", key))
		}
		a := swarm.NetworkAttachmentConfig{Target: target}
		if sn != nil {
			for _, f := range []struct {
				set bool
				key string
			}{
				{sn.Ipv4Address != "", "ipv4_address"}, {sn.Ipv6Address != "", "ipv6_address"},
				{len(sn.LinkLocalIPs) > 0, "link_local_ips"}, {sn.MacAddress != "", "mac_address"},
				{sn.Priority != 0, "priority"}, {sn.GatewayPriority != 0, "gw_priority"}, {sn.InterfaceName != "", "interface_name"},
			} {
				if f.set {
					return nil, fail(f.key, f.key+" cannot be set for a swarm service, whose tasks the swarm addresses itself on every node; remove it")
				}
			}
			a.Aliases = slices.Clone(sn.Aliases)
			a.DriverOpts = cloneMap(sn.DriverOpts)
		}
		if container.NetworkMode(target).IsUserDefined() && sn.ServiceNameAliasEnabled() {
			a.Aliases = append(a.Aliases, s.Name)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b swarm.NetworkAttachmentConfig) int { return cmp.Compare(a.Target, b.Target) })
	return out, nil
}

// stackEndpoint is deploy.endpoint_mode with the published ports. Ports
// are published by the routing mesh (mode ingress, the default) on every
// node, or on the node running the task (mode host).
func (c *converter) stackEndpoint(s types.ServiceConfig, mode string) (*swarm.EndpointSpec, error) {
	fail := func(msg string) error { return located(c.src, s.Name, "ports", msg) }
	out := &swarm.EndpointSpec{Mode: swarm.ResolutionMode(strings.ToLower(mode))}
	switch out.Mode {
	case "", swarm.ResolutionModeVIP, swarm.ResolutionModeDNSRR:
	default:
		return nil, located(c.src, s.Name, "deploy.endpoint_mode", fmt.Sprintf("unknown endpoint_mode %q; use vip or dnsrr", mode))
	}
	for _, p := range s.Ports {
		pc := swarm.PortConfig{Protocol: network.IPProtocol(p.Protocol), TargetPort: p.Target, PublishMode: swarm.PortConfigPublishMode(p.Mode)}
		if pc.Protocol == "" {
			pc.Protocol = network.TCP
		}
		switch pc.PublishMode {
		case "":
			pc.PublishMode = swarm.PortConfigPublishModeIngress
		case swarm.PortConfigPublishModeIngress, swarm.PortConfigPublishModeHost:
		default:
			return nil, fail(fmt.Sprintf("%d: unknown mode %q; use ingress or host", p.Target, p.Mode))
		}
		if p.HostIP != "" {
			return nil, fail(fmt.Sprintf("%d: host_ip %s cannot be honoured: a swarm publishes a port on every address of a node; remove host_ip", p.Target, p.HostIP))
		}
		if p.Published != "" {
			n, err := strconv.ParseUint(p.Published, 10, 16)
			if err != nil {
				return nil, fail(fmt.Sprintf("%d: published %q must be one port number for a swarm service (ranges are not published by the swarm)", p.Target, p.Published))
			}
			pc.PublishedPort = uint32(n)
		}
		if out.Mode == swarm.ResolutionModeDNSRR && pc.PublishMode == swarm.PortConfigPublishModeIngress {
			return nil, fail(fmt.Sprintf("%d: a port published through the routing mesh (mode ingress) needs endpoint_mode vip; publish it with mode: host, or remove endpoint_mode: dnsrr", p.Target))
		}
		for _, o := range out.Ports {
			if pc.PublishedPort != 0 && o.PublishedPort == pc.PublishedPort && o.Protocol == pc.Protocol {
				return nil, fail(fmt.Sprintf("%d/%s is published twice; the swarm refuses duplicate published ports", pc.PublishedPort, pc.Protocol))
			}
		}
		out.Ports = append(out.Ports, pc)
	}
	slices.SortFunc(out.Ports, func(a, b swarm.PortConfig) int {
		return cmp.Or(cmp.Compare(a.PublishedPort, b.PublishedPort), cmp.Compare(a.TargetPort, b.TargetPort),
			cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.PublishMode, b.PublishMode))
	})
	return out, nil
}

// stackMounts converts the service's volumes and tmpfs as docker stack
// deploy does: a named volume by its stack name, with the volume's driver,
// options and labels (namespace included) for the node that creates it;
// an anonymous volume; a host bind; a tmpfs. A bind of a release path is
// refused: the release exists only on the manager that loaded it.
func (c *converter) stackMounts(s types.ServiceConfig) ([]mount.Mount, error) {
	var out []mount.Mount
	for _, v := range s.Volumes {
		fail := func(msg string) error { return located(c.src, s.Name, "volumes", fmt.Sprintf("%s: %s", v.Target, msg)) }
		m := mount.Mount{Type: mount.Type(v.Type), Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "") {
				m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
			}
			if v.Source == "" {
				break
			}
			vol, ok := c.cp.Volumes[v.Source]
			if !ok {
				return nil, fail(fmt.Sprintf("volume %q is not declared under the top-level volumes:; declare it", v.Source))
			}
			sv := c.stackVolume(v.Source, vol)
			m.Source = sv.Name
			if m.VolumeOptions == nil {
				m.VolumeOptions = &mount.VolumeOptions{}
			}
			if sv.External {
				break
			}
			m.VolumeOptions.Labels = sv.Labels
			if v.Volume != nil {
				for k, val := range v.Volume.Labels {
					m.VolumeOptions.Labels[k] = val
				}
			}
			if sv.Driver != "" || sv.DriverOpts != nil {
				m.VolumeOptions.DriverConfig = &mount.Driver{Name: sv.Driver, Options: sv.DriverOpts}
			}
		case types.VolumeTypeBind:
			if within(c.opts.ReleaseDir, v.Source) {
				return nil, fail(fmt.Sprintf("bind of %s from the release refused: the release directory exists only on the manager that loaded it, not on the nodes that run the tasks; ship the file as a config (configs: with file:) or in the image", c.src.rel(v.Source)))
			}
			if v.Bind != nil {
				if v.Bind.SELinux != "" {
					return nil, fail("bind.selinux cannot be set on a swarm mount; relabel the host path yourself, or remove it")
				}
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
				if msg := setRecursive(m.BindOptions, v.Bind.Recursive); msg != "" {
					return nil, fail(msg)
				}
				if *m.BindOptions == (mount.BindOptions{}) {
					m.BindOptions = nil
				}
			}
			m.Source = v.Source
		case types.VolumeTypeTmpfs:
			if v.Tmpfs != nil && (v.Tmpfs.Size != 0 || v.Tmpfs.Mode != 0) {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
		default:
			return nil, fail(fmt.Sprintf("volume type %q is not supported by lockstep for a swarm service; use volume, bind or tmpfs", v.Type))
		}
		out = append(out, m)
	}
	for _, t := range s.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		if opts != "" {
			return nil, located(c.src, s.Name, "tmpfs", fmt.Sprintf("%s: tmpfs options (%s) cannot be read into a swarm mount; use the long volumes: syntax, type: tmpfs with tmpfs.size and tmpfs.mode", target, opts))
		}
		out = append(out, mount.Mount{Type: mount.TypeTmpfs, Target: target})
	}
	seen := map[string]bool{}
	for _, m := range out {
		if seen[m.Target] {
			return nil, located(c.src, s.Name, "volumes", fmt.Sprintf("%s: mounted twice; the swarm refuses a duplicate mount point", m.Target))
		}
		seen[m.Target] = true
	}
	return out, nil
}
