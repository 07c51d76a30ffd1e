package engine

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// ConnectNetwork attaches container id to network with the endpoint
// settings svc declares for it: the very endpoint CreateContainer would
// connect (aliases, static addresses, driver options), so a reconnected
// container is wired as a new one would be. The engine connects a running
// container live; a stopped one gets the endpoint at its next start.
func (e *Engine) ConnectNetwork(ctx context.Context, svc *compose.Service, id, network string) error {
	e.call(ctx, "connect-network", id)
	_, _, nets := compose.ContainerCreate(svc, 1)
	ep := nets.EndpointsConfig[network]
	if ep == nil {
		return fmt.Errorf("connect container %s to network %s: service %s declares no endpoint on that network", shortID(id), network, svc.Name)
	}
	if _, err := e.cli.NetworkConnect(ctx, network, client.NetworkConnectOptions{Container: id, EndpointConfig: ep}); err != nil {
		return fmt.Errorf("connect container %s to network %s (service %s): %w", shortID(id), network, svc.Name, err)
	}
	e.logger(ctx).Debug().Str("container_id", shortID(id)).Str("network", network).Strs("aliases", ep.Aliases).Msg("connected container to network")
	return nil
}

// DisconnectNetwork detaches container id from network. Force is set: it
// is what makes the engine drop the endpoint of a stopped container whose
// network was removed since, which no plain disconnect can reach.
func (e *Engine) DisconnectNetwork(ctx context.Context, id, network string) error {
	e.call(ctx, "disconnect-network", id)
	if _, err := e.cli.NetworkDisconnect(ctx, network, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		return fmt.Errorf("disconnect container %s from network %s: %w", shortID(id), network, err)
	}
	e.logger(ctx).Debug().Str("container_id", shortID(id)).Str("network", network).Msg("disconnected container from network")
	return nil
}
