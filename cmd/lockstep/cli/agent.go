package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/daemon"
	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// agent runs the daemon (cmd/lockstep/daemon) until the context is
// cancelled (SIGTERM/SIGINT in main). SIGHUP reloads the config: the
// running agent is replaced only by a generation built whole from the new
// file; otherwise it keeps running and the log and status say why.
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
	hup, stopHUP := c.hangups()
	defer stopHUP()
	err = daemon.Run(ctx, daemon.Options{
		Path:    config.PathFrom(g.config, c.getenv),
		Hangups: hup,
		Logger: func(cfg *config.Config) zerolog.Logger {
			return newLogger(c.stderr, cfg.Log, g.logLevel, g.logFormat)
		},
	})
	var ce *daemon.ConfigError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		c.configError(ce.Err)
		return exitConfig
	}
	fmt.Fprintf(c.stderr, "lockstep: agent: %v\n", err)
	return exitFailure
}

// hangupSignals delivers SIGHUP. A field of cli (hangups) so in-process
// tests can send reloads without signalling the test binary.
func hangupSignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// newPassRunner wires the real parts (cmd/lockstep/wire): the pipeline
// the agent runs too. The engine is connected on demand, so `validate`
// works on a host where the engine is down.
func newPassRunner(cfg *config.Config, log zerolog.Logger) (runner, io.Closer, error) {
	parts, err := wire.Build(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return passRunner{Pipeline: parts.Pipeline, releases: parts.Releases}, parts, nil
}

var _ runner = (*pass.Pipeline)(nil)
