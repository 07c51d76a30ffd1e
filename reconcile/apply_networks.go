package reconcile

import (
	"context"
	"fmt"
	"strings"
)

// reconnect re-wires a container to the networks its service declares,
// without restarting it: first the endpoints that must go (stale, other
// aliases, a project network the service does not use), then the ones the
// service needs, with the endpoint settings of a create. Networks the plan
// creates come earlier in the same plan, so they exist by now.
func (a *applier) reconnect(ctx context.Context, act Action) error {
	svc := a.desired.Service(act.Service)
	if svc == nil {
		return fmt.Errorf("the compose files declare no service %s (plan and project do not match: re-plan)", act.Service)
	}
	for _, net := range act.Connect {
		if svc.Networking == nil || svc.Networking.EndpointsConfig[net] == nil {
			return fmt.Errorf("service %s declares no network %s (plan and project do not match: re-plan)", svc.Name, net)
		}
	}
	for _, net := range act.Disconnect {
		cctx, cancel := a.call(ctx)
		err := a.eng.DisconnectNetwork(cctx, act.ContainerID, net)
		cancel()
		if err != nil {
			return fmt.Errorf("disconnect container %s from network %s: %w", shortID(act.ContainerID), net, err)
		}
	}
	for i, net := range act.Connect {
		cctx, cancel := a.call(ctx)
		err := a.eng.ConnectNetwork(cctx, svc, act.ContainerID, net)
		cancel()
		if err != nil {
			return fmt.Errorf("connect container %s to network %s: %w%s", shortID(act.ContainerID), net, err, stillOff(act, i))
		}
	}
	return nil
}

// stillOff says which networks a reconnect that failed at Connect[i] left
// the container off, so the operator knows what is unreachable until the
// next pass repairs it.
func stillOff(act Action, i int) string {
	off := act.Connect[i:]
	if len(off) == 0 {
		return ""
	}
	return fmt.Sprintf(" (container %s is not on %s until the next pass)", act.Container, strings.Join(off, ", "))
}
