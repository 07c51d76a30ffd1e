package daemon

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

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
		parts = append(parts, fmt.Sprintf("%s@%s %s", env, reconcile.Short(rec.Commit), rec.Result))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
