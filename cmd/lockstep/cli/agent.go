package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/notify"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/webhook"
)

// agent runs the daemon until the context is cancelled (SIGTERM/SIGINT in
// main). SIGHUP reloads the config: the running agent is replaced only when
// the new file validates; otherwise it keeps running on the old one and the
// log says why.
func (c *cli) agent(ctx context.Context, g *globalFlags, args []string) int {
	fs := c.commandFlags("agent", g)
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return c.flagError("agent", err)
	}
	if len(rest) > 0 {
		return c.usageError("agent takes no arguments: it runs every environment of the config")
	}
	if code, ok := c.checkLogFlags(g); !ok {
		return code
	}
	path := config.PathFrom(g.config, c.getenv)
	cfg, err := config.Load(path)
	if err != nil {
		c.configError(err)
		return exitConfig
	}

	hup, stopHUP := c.hangups()
	defer stopHUP()
	for {
		log := newLogger(c.stderr, cfg.Log, g.logLevel, g.logFormat)
		next, err := c.runGeneration(ctx, cfg, log, hup, path)
		if err != nil {
			log.Error().Err(err).Msg("agent stopped")
			sdNotify(log, "STOPPING=1")
			return exitFailure
		}
		if next == nil {
			log.Info().Msg("agent stopped")
			return exitOK
		}
		cfg = next
	}
}

// hangupSignals delivers SIGHUP. A field of cli (hangups) so in-process
// tests can send reloads without signalling the test binary.
func hangupSignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// runGeneration runs one agent on cfg until ctx is done (returns nil, nil)
// or a SIGHUP brings a config that validates (returns it, after this
// generation has stopped cleanly).
func (c *cli) runGeneration(ctx context.Context, cfg *config.Config, log zerolog.Logger, hup <-chan os.Signal, path string) (*config.Config, error) {
	r, src, closer, err := buildRunner(cfg, log)
	if err != nil {
		return nil, err
	}
	defer closer.Close()

	envs := make([]reconcile.Environment, 0, len(cfg.Environments))
	projects := map[string]string{}
	for _, e := range cfg.Environments {
		envs = append(envs, environment(e))
		projects[e.Name] = e.Project
	}
	notifier, err := newNotifier(cfg, log)
	if err != nil {
		return nil, err
	}
	var metrics *api.Metrics // set before the agent runs; read by OnPass
	status := &statusLine{}
	ag, err := reconcile.NewAgent(r, src, reconcile.AgentOptions{
		Environments:  envs,
		PollInterval:  cfg.Repo.PollInterval,
		DriftInterval: cfg.Agent.DriftInterval,
		ShutdownGrace: cfg.Agent.ShutdownGrace,
		StateDir:      cfg.StateDir,
		Log:           log,
		Health:        reconcile.GateOptions{Timeout: cfg.Health.Timeout, Bake: cfg.Health.Bake},
		OnPass: func(rec reconcile.PassRecord) {
			metrics.ObservePass(rec)
			status.pass(rec)
			sdNotify(log, "STATUS="+status.String())
		},
		OnEvent: func(ev reconcile.Event) {
			notifier.Notify(notify.Event{
				Kind: ev.Kind, Environment: ev.Environment, Project: projects[ev.Environment],
				Commit: ev.Commit, Previous: ev.Previous, Service: ev.Service,
				Reason: ev.Reason, Logs: ev.Logs, Time: ev.Time,
			})
		},
	})
	if err != nil {
		return nil, err
	}
	metrics = api.NewMetrics(ag)
	server := api.NewServer(ag, metrics, log)

	// Everything of this generation stops when genCtx is cancelled: on
	// shutdown, or once a reload has a valid config to move to.
	genCtx, stop := context.WithCancel(ctx)
	defer stop()

	// Listen before saying READY: "ready" means status and sync answer.
	var listeners []func() error
	if cfg.API.Socket != "" {
		ln, err := api.ListenUnix(genCtx, cfg.API.Socket)
		if err != nil {
			return nil, fmt.Errorf("local API socket: %w", err)
		}
		listeners = append(listeners, func() error { return server.Serve(genCtx, ln) })
	}
	if cfg.API.Listen != "" {
		ln, err := api.ListenTCP(genCtx, cfg.API.Listen, log)
		if err != nil {
			return nil, fmt.Errorf("[api].listen: %w", err)
		}
		listeners = append(listeners, func() error { return server.Serve(genCtx, ln) })
	}
	if cfg.Webhook.Listen != "" {
		rcv, err := webhook.New(webhook.Options{
			SecretFile: cfg.Webhook.SecretFile,
			Branch:     cfg.Repo.Branch,
			Log:        log,
			Nudge: func(p webhook.Provider) {
				if err := ag.Sync("", "webhook"); err != nil {
					log.Warn().Err(err).Str("provider", string(p)).Msg("webhook nudge")
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(genCtx, "tcp", cfg.Webhook.Listen)
		if err != nil {
			return nil, fmt.Errorf("[webhook].listen %s: %w", cfg.Webhook.Listen, err)
		}
		listeners = append(listeners, func() error { return rcv.Serve(genCtx, ln) })
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(listeners)+1)
	for _, serve := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		}()
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(genCtx) }()
	// Notifications are delivered in the background; on shutdown the
	// queued ones get a short while to go out.
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		if notifier != nil {
			notifier.Run(genCtx)
		}
	}()

	sdNotify(log, "READY=1", "STATUS=started; first pass running")
	log.Info().Str("config", path).Int("environments", len(envs)).Str("socket", cfg.API.Socket).Msg("agent started")
	stopWatchdog := watchdog(genCtx, log, ag.Alive)
	defer stopWatchdog()

	var next *config.Config
	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			sdNotify(log, "STOPPING=1")
			log.Info().Dur("grace", cfg.Agent.ShutdownGrace).Msg("stopping: starting nothing new, letting the step in flight finish")
			break wait
		case err := <-errs:
			runErr = err
			break wait
		case err := <-agentDone:
			agentDone <- err // read again below
			if err != nil {
				runErr = err
			}
			break wait
		case <-hup:
			newCfg, err := config.Load(path)
			if err != nil {
				log.Error().Str("config", path).Str("problems", err.Error()).Msg("reload refused: the new config is invalid; still running on the old one")
				continue
			}
			// The key files are read when the new generation starts; one
			// that cannot be read must not stop the agent instead.
			if err := gitsource.CheckVerifyOptions(verifyOptions(newCfg.Repo.Verify)); err != nil {
				log.Error().Str("config", path).Str("problems", err.Error()).Msg("reload refused: a [repo.verify] key file cannot be used; still running on the old config")
				continue
			}
			sdNotify(log, "RELOADING=1")
			log.Info().Str("config", path).Msg("reloading: the new config is valid")
			next = newCfg
			break wait
		}
	}
	stop()
	if err := <-agentDone; err != nil && runErr == nil {
		runErr = err
	}
	wg.Wait()
	<-notified
	if runErr != nil {
		return nil, runErr
	}
	return next, nil
}

// newNotifier reads the [[notify]] targets' URL files now, so a missing
// file is an error at start, not at the first failure. With no target it
// returns a nil Notifier, which does nothing.
func newNotifier(cfg *config.Config, log zerolog.Logger) (*notify.Notifier, error) {
	if len(cfg.Notify) == 0 {
		return nil, nil
	}
	targets := make([]notify.Target, 0, len(cfg.Notify))
	for _, t := range cfg.Notify {
		targets = append(targets, notify.Target{Kind: t.Kind, URLFile: t.URLFile, Events: t.Events})
	}
	n, err := notify.New(targets, notify.Options{Log: log, Version: versionString()})
	if err != nil {
		return nil, fmt.Errorf("[[notify]]: %w", err)
	}
	return n, nil
}

// watchdog pings systemd's watchdog at half its interval while alive()
// says the loop makes progress. A wedged loop stops the pings and systemd
// restarts the service. Nothing happens outside systemd.
func watchdog(ctx context.Context, log zerolog.Logger, alive func() bool) func() {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if alive() {
					sdNotify(log, "WATCHDOG=1")
				} else {
					log.Error().Msg("agent loop is not making progress: withholding the watchdog ping so systemd restarts it")
				}
			}
		}
	}()
	return cancel
}

// sdNotify tells systemd about the agent's state; a no-op outside systemd.
func sdNotify(log zerolog.Logger, states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Debug().Err(err).Msg("sd_notify")
	}
}

// statusLine is the one-line summary systemd shows (STATUS=): the last
// result per environment.
type statusLine struct {
	mu   sync.Mutex
	last map[string]reconcile.PassRecord
}

func (s *statusLine) pass(rec reconcile.PassRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]reconcile.PassRecord{}
	}
	s.last[rec.Environment] = rec
}

func (s *statusLine) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for env, rec := range s.last {
		commit := rec.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		parts = append(parts, fmt.Sprintf("%s@%s %s", env, commit, rec.Result))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
