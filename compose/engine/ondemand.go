package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

var _ reconcile.Engine = (*OnDemand)(nil)

// errClosed is what an OnDemand answers after Close.
var errClosed = errors.New("docker engine client is closed")

// OnDemand is reconcile.Engine that connects at the first call needing the
// engine, so commands that do not (validate) work while it is down. A
// failed connect is returned and not remembered: the next call connects
// again, paced by the caller's backoff, so an agent started before dockerd
// recovers without a restart. Once connected the client is kept: it dials
// the socket again per request by itself, so an engine restart needs no
// new client.
type OnDemand struct {
	host string // as for Connect
	log  zerolog.Logger
	// FactDir, when set before the first call, is where the engine keeps
	// the inspect facts Observe remembers (see Engine.RememberFactsIn).
	FactDir string

	mu     sync.Mutex // held across a connect, so concurrent calls make one
	cli    *client.Client
	eng    *Engine
	swarm  *Swarm // on cli, made by the first Swarm call
	closed bool
}

// NewOnDemand returns an OnDemand for the engine at host ("" means
// DOCKER_HOST, or the default socket). It does not connect.
func NewOnDemand(host string, log zerolog.Logger) *OnDemand {
	return &OnDemand{host: host, log: log}
}

// engine returns the connected Engine, connecting first when there is none.
func (o *OnDemand) engine(ctx context.Context) (*Engine, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errClosed
	}
	if o.eng != nil {
		return o.eng, nil
	}
	cli, err := Connect(ctx, o.host)
	if err != nil {
		return nil, err
	}
	o.cli, o.eng = cli, New(cli, o.log)
	if o.FactDir != "" {
		o.eng.RememberFactsIn(o.FactDir)
	}
	o.eng.logger(ctx).Debug().Str("engine_host", redactHost(cli.DaemonHost())).Msg("connected to the docker engine")
	return o.eng, nil
}

// Close closes the client, if one was made; later calls fail.
func (o *OnDemand) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.cli == nil {
		return nil
	}
	err := o.cli.Close()
	o.cli, o.eng, o.swarm = nil, nil, nil
	return err
}

// Swarm is the swarm calls on the same connection, connecting first when
// there is none (the swarm backend's engine).
func (o *OnDemand) Swarm(ctx context.Context) (*Swarm, error) {
	if _, err := o.engine(ctx); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cli == nil {
		return nil, errClosed
	}
	if o.swarm == nil {
		o.swarm = NewSwarm(o.cli, o.log)
	}
	return o.swarm, nil
}

func (o *OnDemand) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return compose.Observed{}, err
	}
	return e.Observe(ctx, p)
}

func (o *OnDemand) Pull(ctx context.Context, ref string) (string, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return "", err
	}
	return e.Pull(ctx, ref)
}

func (o *OnDemand) CreateNetwork(ctx context.Context, n compose.Network) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.CreateNetwork(ctx, n)
}

func (o *OnDemand) CreateVolume(ctx context.Context, v compose.Volume) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.CreateVolume(ctx, v)
}

func (o *OnDemand) CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return "", err
	}
	return e.CreateContainer(ctx, p, svc, number, name, inheritFrom)
}

func (o *OnDemand) StartContainer(ctx context.Context, id string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.StartContainer(ctx, id)
}

func (o *OnDemand) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.StopContainer(ctx, id, timeout)
}

func (o *OnDemand) RemoveContainer(ctx context.Context, id string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.RemoveContainer(ctx, id)
}

func (o *OnDemand) RenameContainer(ctx context.Context, id, name string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.RenameContainer(ctx, id, name)
}

func (o *OnDemand) RemoveNetwork(ctx context.Context, name string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.RemoveNetwork(ctx, name)
}

func (o *OnDemand) RemoveVolume(ctx context.Context, name string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.RemoveVolume(ctx, name)
}

func (o *OnDemand) Environments(ctx context.Context) (map[string]string, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return nil, err
	}
	return e.Environments(ctx)
}

func (o *OnDemand) ConnectNetwork(ctx context.Context, svc *compose.Service, id, network string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.ConnectNetwork(ctx, svc, id, network)
}

func (o *OnDemand) DisconnectNetwork(ctx context.Context, id, network string) error {
	e, err := o.engine(ctx)
	if err != nil {
		return err
	}
	return e.DisconnectNetwork(ctx, id, network)
}

func (o *OnDemand) InspectContainer(ctx context.Context, id string) (compose.Container, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return compose.Container{}, err
	}
	return e.InspectContainer(ctx, id)
}

func (o *OnDemand) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	e, err := o.engine(ctx)
	if err != nil {
		return nil, err
	}
	return e.Logs(ctx, id, tail)
}
