package main

import (
	"errors"
	"io"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
)

// errNotWired is returned until the pass runner (reconcile/pass.go's Runner
// over gitsource, compose and compose/engine) is connected here.
var errNotWired = errors.New("plan, apply and validate are not wired to the pass runner in this build yet")

// newPassRunner builds the production runner for cfg.
func newPassRunner(cfg *config.Config, log zerolog.Logger) (runner, io.Closer, error) {
	return nil, nil, errNotWired
}
