package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	swarmapi "github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// CreateNetwork creates a stack network, swarm-scoped (overlay unless the
// stack says otherwise), and returns its id.
func (s *Swarm) CreateNetwork(ctx context.Context, n compose.StackNetwork) (string, error) {
	s.call(ctx, "create-network", n.Name)
	ipam, err := stackIPAM(n.IPAM)
	if err != nil {
		return "", fmt.Errorf("create network %s: %w", n.Name, err)
	}
	driver := n.Driver
	if driver == "" {
		driver = "overlay"
	}
	opts := client.NetworkCreateOptions{
		Driver:     driver,
		Scope:      "swarm",
		Attachable: n.Attachable,
		Internal:   n.Internal,
		Options:    n.DriverOpts,
		Labels:     n.Labels,
		IPAM:       ipam,
	}
	if n.EnableIPv6 {
		opts.EnableIPv6 = &n.EnableIPv6
	}
	res, err := s.cli.NetworkCreate(ctx, n.Name, opts)
	if err != nil {
		return "", fmt.Errorf("create network %s: %w", n.Name, err)
	}
	for _, w := range res.Warning {
		s.logger(ctx).Warn().Str("network", n.Name).Str("warning", w).Msg("the engine warned about a network it created")
	}
	return res.ID, nil
}

// stackIPAM is the API's form of a network's ipam: block, its addresses
// parsed (the API takes them typed).
func stackIPAM(in *compose.StackIPAM) (*network.IPAM, error) {
	if in == nil {
		return nil, nil
	}
	out := &network.IPAM{Driver: in.Driver, Options: in.Options}
	for i, p := range in.Config {
		var c network.IPAMConfig
		var err error
		if c.Subnet, err = parsePrefix(p.Subnet); err != nil {
			return nil, fmt.Errorf("ipam.config[%d].subnet: %w", i, err)
		}
		if c.IPRange, err = parsePrefix(p.IPRange); err != nil {
			return nil, fmt.Errorf("ipam.config[%d].ip_range: %w", i, err)
		}
		if p.Gateway != "" {
			if c.Gateway, err = netip.ParseAddr(p.Gateway); err != nil {
				return nil, fmt.Errorf("ipam.config[%d].gateway: %w", i, err)
			}
		}
		for name, a := range p.AuxAddress {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("ipam.config[%d].aux_addresses.%s: %w", i, name, err)
			}
			if c.AuxAddress == nil {
				c.AuxAddress = map[string]netip.Addr{}
			}
			c.AuxAddress[name] = addr
		}
		out.Config = append(out.Config, c)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	return netip.ParsePrefix(s)
}

// RemoveNetwork removes a stack network by id; one already gone is what
// was asked for. The swarm frees a removed network a moment later: until
// then it is still listed (ObserveStack sees it), and removing it again
// gets a "network ID not found" that is not typed as such (HTTP 500),
// which is read as gone too.
func (s *Swarm) RemoveNetwork(ctx context.Context, id string) error {
	s.call(ctx, "remove-network", id)
	_, err := s.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) && !strings.HasSuffix(err.Error(), "network "+id+" not found") {
		return fmt.Errorf("remove network %s: %w", shortID(id), err)
	}
	return nil
}

// CreateConfig creates a stack config with o's content and returns its id.
func (s *Swarm) CreateConfig(ctx context.Context, o compose.StackObject) (string, error) {
	s.call(ctx, "create-config", o.Name)
	res, err := s.cli.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: swarmapi.ConfigSpec{
		Annotations: swarmapi.Annotations{Name: o.Name, Labels: o.Labels},
		Data:        o.Data(),
	}})
	if err != nil {
		return "", fmt.Errorf("create config %s: %w", o.Name, err)
	}
	return res.ID, nil
}

// RemoveConfig removes a config by id; one already gone is what was asked
// for.
func (s *Swarm) RemoveConfig(ctx context.Context, id string) error {
	s.call(ctx, "remove-config", id)
	if _, err := s.cli.ConfigRemove(ctx, id, client.ConfigRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove config %s: %w", shortID(id), err)
	}
	return nil
}

// CreateSecret creates a stack secret with o's content and returns its
// id. The content goes to the engine only; errors name the secret, never
// quote it.
func (s *Swarm) CreateSecret(ctx context.Context, o compose.StackObject) (string, error) {
	s.call(ctx, "create-secret", o.Name)
	res, err := s.cli.SecretCreate(ctx, client.SecretCreateOptions{Spec: swarmapi.SecretSpec{
		Annotations: swarmapi.Annotations{Name: o.Name, Labels: o.Labels},
		Data:        o.Data(),
	}})
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", o.Name, err)
	}
	return res.ID, nil
}

// RemoveSecret removes a secret by id; one already gone is what was asked
// for.
func (s *Swarm) RemoveSecret(ctx context.Context, id string) error {
	s.call(ctx, "remove-secret", id)
	if _, err := s.cli.SecretRemove(ctx, id, client.SecretRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove secret %s: %w", shortID(id), err)
	}
	return nil
}

// CreateService creates a service from spec as it is: its image already
// pinned (ResolveImage), no registry query and no credentials sent (see
// Swarm). The engine's warnings are logged.
func (s *Swarm) CreateService(ctx context.Context, spec swarmapi.ServiceSpec) (string, error) {
	s.call(ctx, "create-service", spec.Name)
	res, err := s.cli.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec})
	if err != nil {
		return "", fmt.Errorf("create service %s: %w", spec.Name, err)
	}
	s.warnings(ctx, spec.Name, res.Warnings)
	return res.ID, nil
}

// UpdateService sends spec for service id at version, the one the caller
// read: the swarm refuses it when the service changed since, and that
// error is ErrStaleVersion. The engine's warnings are logged.
func (s *Swarm) UpdateService(ctx context.Context, id string, version uint64, spec swarmapi.ServiceSpec) error {
	s.call(ctx, "update-service", spec.Name)
	res, err := s.cli.ServiceUpdate(ctx, id, client.ServiceUpdateOptions{
		Version: swarmapi.Version{Index: version},
		Spec:    spec,
	})
	if err != nil {
		if isOutOfSequence(err) {
			return fmt.Errorf("update service %s at version %d: %w: %v", spec.Name, version, ErrStaleVersion, err)
		}
		return fmt.Errorf("update service %s at version %d: %w", spec.Name, version, err)
	}
	s.warnings(ctx, spec.Name, res.Warnings)
	return nil
}

// isOutOfSequence tells the swarm's refusal of a stale version: swarmkit
// says "update out of sequence" and the engine passes it on as text only.
func isOutOfSequence(err error) bool {
	return strings.Contains(err.Error(), "out of sequence")
}

// RemoveService removes a service by id, and with it its tasks; one
// already gone is what was asked for.
func (s *Swarm) RemoveService(ctx context.Context, id string) error {
	s.call(ctx, "remove-service", id)
	if _, err := s.cli.ServiceRemove(ctx, id, client.ServiceRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove service %s: %w", shortID(id), err)
	}
	return nil
}

// warnings logs what the engine warned about when it accepted a service
// spec (an image it could not pin, a deprecated option).
func (s *Swarm) warnings(ctx context.Context, service string, ws []string) {
	for _, w := range ws {
		s.logger(ctx).Warn().Str("service", service).Str("warning", w).Msg("the engine warned about a service spec")
	}
}
