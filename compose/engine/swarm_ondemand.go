package engine

import (
	"context"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
)

// OnDemandSwarm is the swarm calls of an OnDemand: each connects first
// when there is no connection, so an agent whose engine is down starts,
// and its passes recover when the engine is back (as for OnDemand).
type OnDemandSwarm struct{ o *OnDemand }

// SwarmCalls is o's swarm calls, on o's connection.
func (o *OnDemand) SwarmCalls() *OnDemandSwarm { return &OnDemandSwarm{o} }

func (d *OnDemandSwarm) Info(ctx context.Context) (compose.SwarmInfo, error) {
	s, err := d.o.Swarm(ctx)
	if err != nil {
		return compose.SwarmInfo{}, err
	}
	return s.Info(ctx)
}

func (d *OnDemandSwarm) ObserveStack(ctx context.Context, desired *compose.Stack) (compose.ObservedStack, error) {
	s, err := d.o.Swarm(ctx)
	if err != nil {
		return compose.ObservedStack{}, err
	}
	return s.ObserveStack(ctx, desired)
}

func (d *OnDemandSwarm) Service(ctx context.Context, id string) (compose.ObservedService, error) {
	s, err := d.o.Swarm(ctx)
	if err != nil {
		return compose.ObservedService{}, err
	}
	return s.Service(ctx, id)
}

func (d *OnDemandSwarm) ResolveImage(ctx context.Context, ref string) (string, error) {
	return d.str(ctx, func(s *Swarm) (string, error) { return s.ResolveImage(ctx, ref) })
}

func (d *OnDemandSwarm) CreateNetwork(ctx context.Context, n compose.StackNetwork) (string, error) {
	return d.str(ctx, func(s *Swarm) (string, error) { return s.CreateNetwork(ctx, n) })
}

func (d *OnDemandSwarm) CreateConfig(ctx context.Context, o compose.StackObject) (string, error) {
	return d.str(ctx, func(s *Swarm) (string, error) { return s.CreateConfig(ctx, o) })
}

func (d *OnDemandSwarm) CreateSecret(ctx context.Context, o compose.StackObject) (string, error) {
	return d.str(ctx, func(s *Swarm) (string, error) { return s.CreateSecret(ctx, o) })
}

func (d *OnDemandSwarm) CreateService(ctx context.Context, spec swarmapi.ServiceSpec) (string, error) {
	return d.str(ctx, func(s *Swarm) (string, error) { return s.CreateService(ctx, spec) })
}

func (d *OnDemandSwarm) UpdateService(ctx context.Context, id string, version uint64, spec swarmapi.ServiceSpec) error {
	return d.do(ctx, func(s *Swarm) error { return s.UpdateService(ctx, id, version, spec) })
}

func (d *OnDemandSwarm) RemoveNetwork(ctx context.Context, id string) error {
	return d.do(ctx, func(s *Swarm) error { return s.RemoveNetwork(ctx, id) })
}

func (d *OnDemandSwarm) RemoveConfig(ctx context.Context, id string) error {
	return d.do(ctx, func(s *Swarm) error { return s.RemoveConfig(ctx, id) })
}

func (d *OnDemandSwarm) RemoveSecret(ctx context.Context, id string) error {
	return d.do(ctx, func(s *Swarm) error { return s.RemoveSecret(ctx, id) })
}

func (d *OnDemandSwarm) RemoveService(ctx context.Context, id string) error {
	return d.do(ctx, func(s *Swarm) error { return s.RemoveService(ctx, id) })
}

func (d *OnDemandSwarm) str(ctx context.Context, call func(*Swarm) (string, error)) (string, error) {
	s, err := d.o.Swarm(ctx)
	if err != nil {
		return "", err
	}
	return call(s)
}

func (d *OnDemandSwarm) do(ctx context.Context, call func(*Swarm) error) error {
	s, err := d.o.Swarm(ctx)
	if err != nil {
		return err
	}
	return call(s)
}
