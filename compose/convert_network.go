package compose

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

func (c *converter) network(key string, n types.NetworkConfig) (Network, error) {
	out := Network{
		Key:        key,
		Name:       n.Name,
		External:   bool(n.External),
		Driver:     n.Driver,
		DriverOpts: cloneMap(n.DriverOpts),
		Internal:   n.Internal,
		Attachable: n.Attachable,
		EnableIPv6: n.EnableIPv6 != nil && *n.EnableIPv6,
	}
	fail := func(k, msg string) error {
		file, line := c.src.find("networks", key)
		return &LoadError{File: file, Line: line, Key: "networks." + key + "." + k, Msg: msg}
	}
	if n.EnableIPv4 != nil && !*n.EnableIPv4 {
		return Network{}, fail("enable_ipv4", "IPv4-less networks are not supported by lockstep; remove enable_ipv4")
	}
	if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 || len(n.Ipam.Options) > 0 {
		ipam := &network.IPAM{Driver: n.Ipam.Driver, Options: cloneMap(n.Ipam.Options)}
		for _, pool := range n.Ipam.Config {
			var cfg network.IPAMConfig
			var err error
			if pool.Subnet != "" {
				if cfg.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
					return Network{}, fail("ipam.config.subnet", fmt.Sprintf("invalid subnet %q: %v", pool.Subnet, err))
				}
			}
			if pool.IPRange != "" {
				if cfg.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
					return Network{}, fail("ipam.config.ip_range", fmt.Sprintf("invalid ip_range %q: %v", pool.IPRange, err))
				}
			}
			if pool.Gateway != "" {
				if cfg.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
					return Network{}, fail("ipam.config.gateway", fmt.Sprintf("invalid gateway %q: %v", pool.Gateway, err))
				}
			}
			for _, name := range sortedKeys(pool.AuxiliaryAddresses) {
				a, err := netip.ParseAddr(pool.AuxiliaryAddresses[name])
				if err != nil {
					return Network{}, fail("ipam.config.aux_addresses", fmt.Sprintf("invalid address for %q: %v", name, err))
				}
				if cfg.AuxAddress == nil {
					cfg.AuxAddress = map[string]netip.Addr{}
				}
				cfg.AuxAddress[name] = a
			}
			ipam.Config = append(ipam.Config, cfg)
		}
		out.IPAM = ipam
	}
	if !out.External {
		out.Labels = cloneMap(n.Labels)
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[LabelProject] = c.opts.Project
		out.Labels[LabelNetwork] = key
		out.Labels[LabelVersion] = c.opts.Version
	}
	h := out
	h.Labels = withoutKeys(out.Labels, LabelVersion)
	h.Hash = ""
	out.Hash = hashJSON(h)
	if !out.External {
		// Set after Hash, which must not cover it (see Network.ConfigHash).
		var err error
		if out.ConfigHash, err = composeNetworkHash(n); err != nil {
			return Network{}, err
		}
	}
	return out, nil
}

func ports(s types.ServiceConfig, cfg *container.Config, host *container.HostConfig, out *Service) error {
	for _, p := range s.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, ok := network.PortFrom(uint16(p.Target), network.IPProtocol(proto))
		if !ok || p.Target == 0 || p.Target > 65535 {
			return fmt.Errorf("invalid container port %d/%s", p.Target, proto)
		}
		b := network.PortBinding{HostPort: p.Published}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return fmt.Errorf("invalid host_ip %q: %v", p.HostIP, err)
			}
			b.HostIP = a
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
			host.PortBindings = network.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		host.PortBindings[port] = append(host.PortBindings[port], b)
		// An unpublished entry ("80") gets an ephemeral host port, which
		// never collides with the old container during a start-first
		// update; only a fixed host port does.
		if p.Published != "" {
			out.PublishesPorts = true
		}
	}
	return nil
}

func expose(s types.ServiceConfig, cfg *container.Config) error {
	for _, e := range s.Expose {
		spec, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		lo, hi, isRange := strings.Cut(spec, "-")
		if !isRange {
			hi = lo
		}
		start, err1 := strconv.ParseUint(lo, 10, 16)
		end, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || start == 0 || end < start {
			return fmt.Errorf("invalid port %q", e)
		}
		for n := start; n <= end; n++ {
			port, ok := network.PortFrom(uint16(n), network.IPProtocol(proto))
			if !ok {
				return fmt.Errorf("invalid port %q", e)
			}
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = network.PortSet{}
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	return nil
}

// networking sets HostConfig.NetworkMode and one endpoint per network.
//
// network_mode values are passed through as the engine spells them, with
// one exception the engine adapter must resolve at create time:
// "service:<name>" names a compose service, and becomes
// "container:<id of that service's first container>". "container:<name>"
// is already an engine value.
func (c *converter) networking(s types.ServiceConfig, host *container.HostConfig) (*network.NetworkingConfig, error) {
	fail := func(key, msg string) error { return located(c.src, s.Name, key, msg) }
	if s.NetworkMode != "" {
		if s.MacAddress != "" {
			return nil, fail("mac_address", "mac_address needs a network endpoint; it cannot be combined with network_mode")
		}
		host.NetworkMode = container.NetworkMode(s.NetworkMode)
		return &network.NetworkingConfig{}, nil
	}
	nets := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	for i, key := range s.NetworksByPriority() {
		n, ok := c.cp.Networks[key]
		if !ok {
			return nil, fail("networks", fmt.Sprintf("network %q is not declared under the top-level networks:; declare it", key))
		}
		cfg := s.Networks[key]
		ep := &network.EndpointSettings{}
		if cfg.ServiceNameAliasEnabled() {
			ep.Aliases = append(ep.Aliases, s.Name)
		}
		mac := ""
		if cfg != nil {
			for _, a := range cfg.Aliases {
				if !slices.Contains(ep.Aliases, a) {
					ep.Aliases = append(ep.Aliases, a)
				}
			}
			ipam, err := c.endpointIPAM(s.Name, key, cfg)
			if err != nil {
				return nil, err
			}
			ep.IPAMConfig = ipam
			ep.DriverOpts = cloneMap(cfg.DriverOpts)
			if cfg.InterfaceName != "" {
				if ep.DriverOpts == nil {
					ep.DriverOpts = map[string]string{}
				}
				ep.DriverOpts["com.docker.network.endpoint.ifname"] = cfg.InterfaceName
			}
			ep.GwPriority = cfg.GatewayPriority
			mac = cfg.MacAddress
		}
		// Compose puts the service-level mac_address on the primary
		// (highest priority) network's endpoint.
		if i == 0 && s.MacAddress != "" {
			if mac != "" && mac != s.MacAddress {
				return nil, fail("mac_address", fmt.Sprintf("conflicts with networks.%s.mac_address; set it in one place", key))
			}
			mac = s.MacAddress
		}
		if mac != "" {
			hw, err := net.ParseMAC(mac)
			if err != nil {
				return nil, fail("mac_address", fmt.Sprintf("invalid MAC address %q: %v", mac, err))
			}
			ep.MacAddress = network.HardwareAddr(hw)
		}
		if i == 0 {
			host.NetworkMode = container.NetworkMode(n.Name)
		}
		nets.EndpointsConfig[n.Name] = ep
	}
	return nets, nil
}

// endpointIPAM parses the static addresses of service's endpoint on the
// network key: their errors name the key they come from. It returns nil
// when none is set, so such an endpoint has no IPAMConfig and the engine
// allocates its address.
func (c *converter) endpointIPAM(service, key string, cfg *types.ServiceNetworkConfig) (*network.EndpointIPAMConfig, error) {
	fail := func(sub, msg string) error { return located(c.src, service, "networks."+key+"."+sub, msg) }
	ipam := &network.EndpointIPAMConfig{}
	var err error
	if cfg.Ipv4Address != "" {
		if ipam.IPv4Address, err = netip.ParseAddr(cfg.Ipv4Address); err != nil {
			return nil, fail("ipv4_address", fmt.Sprintf("invalid address %q: %v", cfg.Ipv4Address, err))
		}
	}
	if cfg.Ipv6Address != "" {
		if ipam.IPv6Address, err = netip.ParseAddr(cfg.Ipv6Address); err != nil {
			return nil, fail("ipv6_address", fmt.Sprintf("invalid address %q: %v", cfg.Ipv6Address, err))
		}
	}
	for _, l := range cfg.LinkLocalIPs {
		a, err := netip.ParseAddr(l)
		if err != nil {
			return nil, fail("link_local_ips", fmt.Sprintf("invalid address %q: %v", l, err))
		}
		ipam.LinkLocalIPs = append(ipam.LinkLocalIPs, a)
	}
	if !ipam.IPv4Address.IsValid() && !ipam.IPv6Address.IsValid() && len(ipam.LinkLocalIPs) == 0 {
		return nil, nil
	}
	return ipam, nil
}
