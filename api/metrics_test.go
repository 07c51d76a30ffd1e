package api_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

func TestMetricsAfterObservePass(t *testing.T) {
	agent := newFakeAgent()
	agent.readyVal.Store(true)
	// What the agent reloaded from its state: production last succeeded
	// before this process started.
	agent.envs[1].LastSuccess = time.Unix(1_600_000_000, 0)
	agent.envs[1].HeldBy, agent.envs[1].Held = reconcile.HoldWindow, "waiting for the deploy window (opens Mon 09:00 CET)"
	m := api.NewMetrics(agent)

	start := time.Unix(1_700_000_000, 0)
	m.ObservePass(reconcile.PassRecord{Environment: "staging", Result: reconcile.ResultApplied, Start: start, Duration: 2 * time.Second, Recreated: 3})
	m.ObservePass(reconcile.PassRecord{Environment: "staging", Result: reconcile.ResultFailed, Class: reconcile.ClassGit, Start: start.Add(time.Minute), Duration: 300 * time.Millisecond})
	m.ObservePass(reconcile.PassRecord{Environment: "staging", Result: reconcile.ResultNoop, Start: start.Add(-time.Hour), Duration: 40 * time.Millisecond})
	m.ObservePass(reconcile.PassRecord{Environment: "production", Result: reconcile.ResultFailed, Class: reconcile.ClassEngine, Start: start, Duration: time.Second})
	// A release that failed its gate and was rolled back: not a success.
	m.ObservePass(reconcile.PassRecord{Environment: "production", Result: reconcile.ResultRolledBack, Class: reconcile.ClassHealth, Start: start.Add(time.Hour), Duration: time.Second})
	// A first deploy that failed its gate, with nothing to roll back to.
	m.ObservePass(reconcile.PassRecord{Environment: "staging", Result: reconcile.ResultFailed, Class: reconcile.ClassHealth, Start: start.Add(time.Hour), Duration: 10 * time.Millisecond})

	// Every family, with every label, exactly: series of known
	// environments start at zero; the deployed commit comes from the
	// agent's status; the last success is the latest of what was observed
	// and what the agent knew.
	expected := `
# HELP lockstep_passes_total Passes run, by environment and result (applied, noop, paused, failed, rolled-back, removed).
# TYPE lockstep_passes_total counter
lockstep_passes_total{environment="production",result="applied"} 0
lockstep_passes_total{environment="production",result="failed"} 1
lockstep_passes_total{environment="production",result="noop"} 0
lockstep_passes_total{environment="production",result="paused"} 0
lockstep_passes_total{environment="production",result="removed"} 0
lockstep_passes_total{environment="production",result="rolled-back"} 1
lockstep_passes_total{environment="staging",result="applied"} 1
lockstep_passes_total{environment="staging",result="failed"} 2
lockstep_passes_total{environment="staging",result="noop"} 1
lockstep_passes_total{environment="staging",result="paused"} 0
lockstep_passes_total{environment="staging",result="removed"} 0
lockstep_passes_total{environment="staging",result="rolled-back"} 0
# HELP lockstep_rollbacks_total Rollbacks to the last healthy revision (automatic after a health gate failure, or lockstep rollback).
# TYPE lockstep_rollbacks_total counter
lockstep_rollbacks_total{environment="production"} 1
lockstep_rollbacks_total{environment="staging"} 0
# HELP lockstep_health_gate_failures_total Releases (and rollbacks) that did not pass the health gate.
# TYPE lockstep_health_gate_failures_total counter
lockstep_health_gate_failures_total{environment="production"} 1
lockstep_health_gate_failures_total{environment="staging"} 1
# HELP lockstep_containers_recreated_total Containers recreated because their configuration or image changed, or drifted.
# TYPE lockstep_containers_recreated_total counter
lockstep_containers_recreated_total{environment="production"} 0
lockstep_containers_recreated_total{environment="staging"} 3
# HELP lockstep_errors_total Failed passes, by environment and error class (git, engine, permanent, health).
# TYPE lockstep_errors_total counter
lockstep_errors_total{class="engine",environment="production"} 1
lockstep_errors_total{class="git",environment="production"} 0
lockstep_errors_total{class="health",environment="production"} 0
lockstep_errors_total{class="permanent",environment="production"} 0
lockstep_errors_total{class="engine",environment="staging"} 0
lockstep_errors_total{class="git",environment="staging"} 1
lockstep_errors_total{class="health",environment="staging"} 1
lockstep_errors_total{class="permanent",environment="staging"} 0
# HELP lockstep_deployed_info The commit an environment runs (last applied successfully); always 1.
# TYPE lockstep_deployed_info gauge
lockstep_deployed_info{commit="` + sha('a') + `",environment="staging"} 1
# HELP lockstep_last_success_timestamp_seconds Unix time at which the last successful pass of an environment ended.
# TYPE lockstep_last_success_timestamp_seconds gauge
lockstep_last_success_timestamp_seconds{environment="production"} 1.6e+09
lockstep_last_success_timestamp_seconds{environment="staging"} 1.700000002e+09
# HELP lockstep_environment_held 1 while a new release of an environment is held back, by reason: paused (in its pin file), window (waiting for its deploy window) or follower (a swarm manager that is not the leader: the leader's agent applies); else 0.
# TYPE lockstep_environment_held gauge
lockstep_environment_held{environment="production",reason="follower"} 0
lockstep_environment_held{environment="production",reason="paused"} 0
lockstep_environment_held{environment="production",reason="window"} 1
lockstep_environment_held{environment="staging",reason="follower"} 0
lockstep_environment_held{environment="staging",reason="paused"} 0
lockstep_environment_held{environment="staging",reason="window"} 0
# HELP lockstep_ready 1 once the agent has run its first pass (when /healthz turns 200), else 0.
# TYPE lockstep_ready gauge
lockstep_ready 1
`
	names := []string{
		"lockstep_passes_total", "lockstep_containers_recreated_total", "lockstep_errors_total",
		"lockstep_rollbacks_total", "lockstep_health_gate_failures_total",
		"lockstep_deployed_info", "lockstep_last_success_timestamp_seconds", "lockstep_ready",
		"lockstep_environment_held",
	}
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(expected), names...); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.Gatherer(), "lockstep_pass_duration_seconds"); err != nil || n != 2 {
		t.Errorf("pass duration series: %d (%v), want one per environment", n, err)
	}
	problems, err := testutil.GatherAndLint(m.Gatherer(), append(names, "lockstep_pass_duration_seconds")...)
	if err != nil || len(problems) > 0 {
		t.Errorf("metric naming problems: %v %v", problems, err)
	}

	// The scrape over HTTP carries the histogram with its labels, and the
	// process metrics of the agent.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`lockstep_pass_duration_seconds_bucket{environment="staging",le="0.05"} 2`,
		`lockstep_pass_duration_seconds_count{environment="staging"} 4`,
		`lockstep_pass_duration_seconds_sum{environment="production"} 2`,
		"go_goroutines ",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// Two Metrics in one process each own their registry: building the second
// does not panic on duplicate registration, and counts do not leak.
func TestMetricsRegistriesAreSeparate(t *testing.T) {
	agent := newFakeAgent()
	a, b := api.NewMetrics(agent), api.NewMetrics(nil)
	a.ObservePass(reconcile.PassRecord{Environment: "staging", Result: reconcile.ResultApplied})
	if n, _ := testutil.GatherAndCount(b.Gatherer(), "lockstep_passes_total"); n != 0 {
		t.Errorf("second registry has %d passes series, want 0", n)
	}
	if n, _ := testutil.GatherAndCount(b.Gatherer(), "lockstep_deployed_info", "lockstep_ready"); n != 0 {
		t.Errorf("metrics without a source report %d state series, want 0", n)
	}
}
