package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/notify"
	"github.com/lockstep-gitops/lockstep/notify/forge"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/agent"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/webhook"
)

// generation is one config's running agent: its parts, its agent loop, its
// notifier and the servers on its listeners. It is built whole (every file
// read, every listener bound) before it replaces the one running.
type generation struct {
	cfg      *config.Config
	log      zerolog.Logger
	parts    *wire.Parts
	agent    *agent.Agent
	notifier *notify.Notifier
	forge    *forge.Reporter // deploy statuses on the forge; nil without [forge]
	metrics  *api.Metrics
	serves   []func(ctx context.Context) error
	bound    listeners // what this generation serves on

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error // a server that failed on its own
	stopped chan error // the agent loop's return
}

// build makes generation N+1 for cfg, taking over old's listeners where
// the addresses are unchanged. On error everything it made is released and
// the running generation is untouched.
func build(ctx context.Context, cfg *config.Config, log zerolog.Logger, old listeners, status *statusLine, reloadErr func() string) (g *generation, err error) {
	if err := wire.Preflight(cfg); err != nil {
		return nil, &ConfigError{Err: err}
	}
	g = &generation{cfg: cfg, log: log, bound: listeners{}, errs: make(chan error, 4), stopped: make(chan error, 1)}
	defer func() {
		if err != nil {
			g.release(old)
		}
	}()
	if g.parts, err = wire.Build(cfg, log); err != nil {
		return nil, &ConfigError{Err: err}
	}
	if g.notifier, err = wire.NewNotifier(cfg, log); err != nil {
		return nil, &ConfigError{Err: err}
	}
	if g.forge, err = wire.NewForge(cfg, log, g.envInfo, forge.Options{}); err != nil {
		return nil, &ConfigError{Err: err}
	}
	if g.forge != nil {
		g.parts.Pipeline.Started = func(env pass.Environment, commit string) { g.forge.Started(env.Name, commit) }
	}
	g.agent, err = agent.New(g.parts.Pipeline, g.parts.Releases, agent.Options{
		Environments:  wire.Environments(cfg),
		Sets:          wire.Sets(cfg),
		Pins:          g.parts.Releases,
		PollInterval:  cfg.Repo.PollInterval,
		DriftInterval: cfg.Agent.DriftInterval,
		ShutdownGrace: cfg.Agent.ShutdownGrace,
		Log:           log,
		OnPass:        g.onPass(status),
		OnEvent:       g.onEvent(),
	})
	if err != nil {
		return nil, err
	}
	measure := func(ctx context.Context) (gitsource.DiskUsage, error) {
		return gitsource.MeasureDiskUsage(ctx, cfg.StateDir)
	}
	g.metrics = api.NewMetrics(g.agent)
	g.metrics.MeasureStateDir(measure)
	server := api.NewServer(g.agent, g.metrics, log)
	server.ReloadError = reloadErr
	server.DiskUsage = measure
	lns, err := bindAPI(ctx, old, g.bound, cfg.API.Socket, cfg.API.Listen, log)
	if err != nil {
		return nil, err
	}
	for _, ln := range lns {
		g.serves = append(g.serves, func(ctx context.Context) error { return server.Serve(ctx, ln) })
	}
	return g, g.buildWebhook(ctx, old)
}

// buildWebhook reads the webhook secret and binds (or takes over) its
// listener, the one that may face the internet.
func (g *generation) buildWebhook(ctx context.Context, old listeners) error {
	cfg := g.cfg
	if cfg.Webhook.Listen == "" {
		return nil
	}
	rcv, err := webhook.New(webhook.Options{
		SecretFile: cfg.Webhook.SecretFile,
		Branch:     cfg.Repo.Branch,
		Log:        g.log,
		Nudge: func(p webhook.Provider) {
			if err := g.agent.Sync("", reconcile.TriggerWebhook); err != nil {
				g.log.Warn().Err(err).Str("provider", string(p)).Msg("webhook nudge")
			}
		},
	})
	if err != nil {
		return &ConfigError{Err: err}
	}
	ln, err := old.bind("webhook tcp "+cfg.Webhook.Listen, g.bound, func() (net.Listener, error) {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", cfg.Webhook.Listen)
		if err != nil {
			return nil, fmt.Errorf("[webhook].listen %s: %w", cfg.Webhook.Listen, err)
		}
		return ln, nil
	})
	if err != nil {
		return err
	}
	g.serves = append(g.serves, func(ctx context.Context) error { return rcv.Serve(ctx, ln) })
	return nil
}

func (g *generation) onPass(status *statusLine) func(reconcile.PassRecord) {
	return func(rec reconcile.PassRecord) {
		g.metrics.ObservePass(rec) // set before the agent runs
		g.forge.Passed(rec)
		status.pass(rec)
		sdNotify(g.log, "STATUS="+status.String())
	}
}

// envInfo is what the forge reporter needs of an environment beyond its
// name: a review environment's URL, and that it is one. It asks the agent,
// whose set environments come and go.
func (g *generation) envInfo(name string) forge.EnvInfo {
	if g.agent == nil {
		return forge.EnvInfo{}
	}
	env, ok := g.agent.Environment(name)
	if !ok {
		return forge.EnvInfo{}
	}
	return forge.EnvInfo{URL: env.URL, Review: env.Set != ""}
}

func (g *generation) onEvent() func(reconcile.Event) {
	projects := map[string]string{}
	for _, e := range g.cfg.Environments {
		projects[e.Name] = e.Project
	}
	return func(ev reconcile.Event) {
		if ev.Kind == reconcile.EventTeardown {
			g.forge.TornDown(ev.Environment, ev.Commit)
		}
		project, ok := projects[ev.Environment]
		if !ok {
			project = ev.Environment // a set's environment: its project is its name
		}
		g.notifier.Notify(notify.Event{
			Kind: ev.Kind, Environment: ev.Environment, Project: project,
			Commit: ev.Commit, Previous: ev.Previous, Service: ev.Service,
			Reason: ev.Reason, Logs: ev.Logs, Time: ev.Time,
		})
	}
}

// start runs the generation: its agent loop, its servers and its
// notifier. It cannot fail; what fails later arrives on g.errs.
func (g *generation) start(ctx context.Context) {
	ctx, g.cancel = context.WithCancel(ctx)
	for _, serve := range g.serves {
		g.wg.Go(func() {
			if err := serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
				g.errs <- err
			}
		})
	}
	go func() { g.stopped <- g.agent.Run(ctx) }()
	// Deploy statuses get the same short while on shutdown.
	g.wg.Go(func() { g.forge.Run(ctx) })
	g.wg.Go(func() {
		if g.notifier != nil {
			// On shutdown the queued notifications get a short while.
			g.notifier.Run(ctx)
		}
	})
}

// stop stops the generation and waits for it: the pass in flight finishes
// (within [agent].shutdown_grace), servers drain, notifications go out.
// Listeners are left bound for whoever comes next; release unbinds them.
func (g *generation) stop() error {
	g.cancel()
	err := <-g.stopped
	g.wg.Wait()
	return err
}

// release closes what g holds that keep does not: its engine client and
// the listeners that the next generation does not take over.
func (g *generation) release(keep listeners) {
	for key, h := range g.bound {
		if _, kept := keep[key]; !kept {
			h.close()
		}
	}
	if g.parts != nil {
		if err := g.parts.Close(); err != nil {
			g.log.Warn().Err(err).Msg("close the engine client")
		}
	}
}
