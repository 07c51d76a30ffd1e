// Package daemon is `lockstep agent`'s supervisor: it runs one generation
// (a config's agent, API servers, webhook receiver and notifier) at a time,
// replaces it on SIGHUP only with a generation built whole from the new
// config, and talks to systemd (READY, RELOADING, STOPPING, STATUS, the
// watchdog).
//
// It never stops the running generation before its replacement is built:
// a reload whose config or any file it names cannot be used is refused,
// logged and shown in `lockstep status`, and the agent goes on. It decides
// nothing about passes; reconcile/agent and reconcile/pass do.
package daemon

import (
	"context"
	"errors"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
)

// ConfigError is a config that cannot be used: the file, or a file it
// names. At start-up it is exit code 78, which systemd does not restart.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Options are what the supervisor needs from the command line.
type Options struct {
	Path    string                              // the config file
	Logger  func(*config.Config) zerolog.Logger // the log of a generation
	Hangups <-chan os.Signal                    // SIGHUP: reload
}

// supervisor is the daemon's own state: the running generation and why
// the last reload was refused.
type supervisor struct {
	opts   Options
	status statusLine

	mu        sync.Mutex
	reloadErr string
}

func (s *supervisor) reloadError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadErr
}

func (s *supervisor) setReloadError(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadErr = msg
}

// Run runs the agent until ctx is done. It returns nil on a clean stop, a
// *ConfigError when the config cannot be used at start-up, and any other
// error when the agent could not start or a server failed.
func Run(ctx context.Context, opts Options) error {
	s := &supervisor{opts: opts}
	cfg, err := config.Load(opts.Path)
	if err != nil {
		return &ConfigError{Err: err}
	}
	log := opts.Logger(cfg)
	g, err := build(ctx, cfg, log, listeners{}, &s.status, s.reloadError)
	if err != nil {
		return err
	}
	g.start(ctx)
	sdNotify(log, "READY=1", "STATUS=started; first pass running")
	log.Info().Str("config", opts.Path).Int("environments", len(cfg.Environments)).Str("socket", cfg.API.Socket).Msg("agent started")
	for {
		next, err := s.serve(ctx, g)
		if next == nil {
			g.release(listeners{})
			return err
		}
		g = next
	}
}

// serve waits while g runs. It returns (nil, err) when the agent stops
// (ctx done: err nil), and the new generation, already started, after a
// reload that built one.
func (s *supervisor) serve(ctx context.Context, g *generation) (*generation, error) {
	stopWatchdog := watchdog(ctx, g.log, g.agent.Alive)
	defer stopWatchdog()
	for {
		select {
		case <-ctx.Done():
			sdNotify(g.log, "STOPPING=1")
			g.log.Info().Dur("grace", g.cfg.Agent.ShutdownGrace).Msg("stopping: starting nothing new, letting the step in flight finish")
			err := g.stop()
			g.log.Info().Msg("agent stopped")
			return nil, err
		case err := <-g.errs:
			sdNotify(g.log, "STOPPING=1")
			_ = g.stop()
			g.log.Error().Err(err).Msg("agent stopped")
			return nil, err
		case err := <-g.stopped:
			g.stopped <- err // stop reads it again
			_ = g.stop()
			return nil, err
		case <-s.opts.Hangups:
			if next := s.reload(ctx, g); next != nil {
				return next, nil
			}
		}
	}
}

// reload builds the next generation from the config file as it is now.
// On any failure the running generation keeps going and the reason is
// logged and kept for `lockstep status`; on success the running one is
// stopped (its pass in flight finishes) and the new one started.
func (s *supervisor) reload(ctx context.Context, g *generation) *generation {
	path := s.opts.Path
	cfg, err := config.Load(path)
	var next *generation
	if err != nil {
		err = &ConfigError{Err: err}
	} else {
		next, err = build(ctx, cfg, s.opts.Logger(cfg), g.bound, &s.status, s.reloadError)
	}
	if err != nil {
		s.setReloadError("reload refused: " + err.Error())
		what := "the new config cannot be used"
		var ce *ConfigError
		if !errors.As(err, &ce) {
			what = "the new generation could not be built"
		}
		g.log.Error().Str("config", path).Str("problems", err.Error()).
			Msg("reload refused: " + what + "; still running on the old config")
		return nil
	}
	sdNotify(g.log, "RELOADING=1")
	g.log.Info().Str("config", path).Msg("reloading: the new generation is built; stopping the old one")
	if err := g.stop(); err != nil {
		g.log.Warn().Err(err).Msg("the old generation stopped with an error")
	}
	g.release(next.bound)
	s.setReloadError("")
	next.start(ctx)
	sdNotify(next.log, "READY=1")
	next.log.Info().Str("config", path).Int("environments", len(cfg.Environments)).Msg("reloaded: running on the new config")
	next.log.Info().Str("config", path).Int("environments", len(cfg.Environments)).Str("socket", cfg.API.Socket).Msg("agent started")
	return next
}
