package swarm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// pruneCallTimeout bounds each removal of Prune.
const pruneCallTimeout = 2 * time.Minute

// Prune removes the configs and secrets of the stack (its namespace
// label) that the desired stack does not use and that no service of the
// stack references any more, once the stack converged: observed must be
// read after the health gate passed. While an update is in progress it
// removes nothing (the tasks being replaced may still need an object).
// It tries every removal and returns those done, and what failed joined;
// a failure only costs a leftover object, which the next prune removes.
func Prune(ctx context.Context, eng Engine, desired *compose.Stack, observed compose.ObservedStack) ([]reconcile.Action, error) {
	log := zerolog.Ctx(ctx)
	for _, s := range observed.Services {
		if s.UpdateState == updateUpdating || s.UpdateState == "rollback_started" {
			log.Debug().Str("service", s.Name).Msg("not pruning configs and secrets: an update is in progress")
			return nil, nil
		}
	}
	st := newIndex(desired, observed)
	var done []reconcile.Action
	var errs []error
	for _, k := range []kind{kindConfig, kindSecret} {
		remove := eng.RemoveConfig
		if k == kindSecret {
			remove = eng.RemoveSecret
		}
		for _, act := range st.planPrune(k) {
			name := act.Config + act.Secret
			if st.referenced(k, name) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, pruneCallTimeout)
			err := remove(cctx, act.ObjectID)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("remove %s %s: %w", k, name, err))
				continue
			}
			log.Info().Str(string(k), name).Strs("reasons", act.Reasons).Msg("pruned")
			done = append(done, act)
		}
	}
	return done, errors.Join(errs...)
}
