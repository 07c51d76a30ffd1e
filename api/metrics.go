package api

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// MetricsSource is what the metrics read at scrape time. The agent
// implements it (every Agent does).
type MetricsSource interface {
	Status() []reconcile.EnvStatus
	Ready() bool
}

// Metrics holds the agent's Prometheus metrics in a registry of its own
// (never the global default one, so two agents in one test process, or a
// library that registers globally, cannot collide).
//
// Counters and the duration histogram are fed by ObservePass; what is
// deployed, when the last success was and readiness are read from the
// source at scrape time, so they are right even for passes run before the
// agent restarted (the agent reloads them from its state directory).
type Metrics struct {
	registry  *prometheus.Registry
	passes    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	recreated *prometheus.CounterVec
	errors    *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	gateFails *prometheus.CounterVec

	mu          sync.Mutex
	known       map[string]bool      // environments whose series are initialised
	lastSuccess map[string]time.Time // end of the last successful pass observed, by environment
}

// NewMetrics builds the metrics of an agent. source may be nil (no
// deployed_info, last_success from the source, or ready metric then).
func NewMetrics(source MetricsSource) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_passes_total",
			Help: "Passes run, by environment and result (applied, noop, paused, failed, rolled-back, removed).",
		}, []string{"environment", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lockstep_pass_duration_seconds",
			Help: "Duration of a pass, from trigger to recorded result.",
			// From a no-op pass (tens of milliseconds) to one that pulls
			// images and waits out a health gate (minutes).
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"environment"}),
		recreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_containers_recreated_total",
			Help: "Containers recreated because their configuration or image changed, or drifted.",
		}, []string{"environment"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_errors_total",
			Help: "Failed passes, by environment and error class (git, engine, permanent, health).",
		}, []string{"environment", "class"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_rollbacks_total",
			Help: "Rollbacks to the last healthy revision (automatic after a health gate failure, or lockstep rollback).",
		}, []string{"environment"}),
		gateFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_health_gate_failures_total",
			Help: "Releases (and rollbacks) that did not pass the health gate.",
		}, []string{"environment"}),
		known:       map[string]bool{},
		lastSuccess: map[string]time.Time{},
	}
	m.registry.MustRegister(m.passes, m.duration, m.recreated, m.errors, m.rollbacks, m.gateFails,
		&stateCollector{m: m, source: source},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	if source != nil {
		for _, st := range source.Status() {
			if st.NotDeployed == "" {
				m.ensureEnv(st.Name)
			}
		}
	}
	return m
}

// ensureEnv creates every series of env at zero, so that alerts such as
// increase(lockstep_errors_total[1h]) > 0 see a series before the first
// error rather than nothing.
func (m *Metrics) ensureEnv(env string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.known[env] {
		return
	}
	m.known[env] = true
	for _, r := range reconcile.Results {
		m.passes.WithLabelValues(env, string(r))
	}
	for _, c := range reconcile.Classes {
		m.errors.WithLabelValues(env, string(c))
	}
	m.recreated.WithLabelValues(env)
	m.rollbacks.WithLabelValues(env)
	m.gateFails.WithLabelValues(env)
}

// ObservePass counts one finished pass. It is safe for concurrent use.
func (m *Metrics) ObservePass(rec reconcile.PassRecord) {
	env := rec.Environment
	m.ensureEnv(env)
	result := rec.Result
	if result == "" {
		result = "unknown"
	}
	m.passes.WithLabelValues(env, string(result)).Inc()
	m.duration.WithLabelValues(env).Observe(rec.Duration.Seconds())
	if rec.Recreated > 0 {
		m.recreated.WithLabelValues(env).Add(float64(rec.Recreated))
	}
	if rec.Class == reconcile.ClassHealth {
		m.gateFails.WithLabelValues(env).Inc()
	}
	if result == reconcile.ResultRolledBack {
		// A rollback is never a success: last_success does not move.
		m.rollbacks.WithLabelValues(env).Inc()
		return
	}
	if result == reconcile.ResultFailed {
		class := rec.Class
		if class == "" {
			class = "unknown"
		}
		m.errors.WithLabelValues(env, string(class)).Inc()
		return
	}
	if !rec.Start.IsZero() {
		end := rec.Start.Add(rec.Duration)
		m.mu.Lock()
		if end.After(m.lastSuccess[env]) {
			m.lastSuccess[env] = end
		}
		m.mu.Unlock()
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		// A collector failing (the process collector cannot read /proc
		// under some sandboxes) must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Gatherer exposes the registry, for tests and for callers that push or
// merge metrics.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.registry }

// stateCollector reads what the agent knows at scrape time.
type stateCollector struct {
	m      *Metrics
	source MetricsSource
}

var (
	deployedDesc = prometheus.NewDesc("lockstep_deployed_info",
		"The commit an environment runs (last applied successfully); always 1.",
		[]string{"environment", "commit"}, nil)
	lastSuccessDesc = prometheus.NewDesc("lockstep_last_success_timestamp_seconds",
		"Unix time at which the last successful pass of an environment ended.",
		[]string{"environment"}, nil)
	heldDesc = prometheus.NewDesc("lockstep_environment_held",
		"1 while a new release of an environment is held back, by reason: paused (in its pin file), window (waiting for its deploy window) or follower (a swarm manager that is not the leader: the leader's agent applies); else 0.",
		[]string{"environment", "reason"}, nil)
	readyDesc = prometheus.NewDesc("lockstep_ready",
		"1 once the agent has run its first pass (when /healthz turns 200), else 0.",
		nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deployedDesc
	ch <- lastSuccessDesc
	ch <- readyDesc
	ch <- heldDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	last := map[string]time.Time{}
	c.m.mu.Lock()
	for env, t := range c.m.lastSuccess {
		last[env] = t
	}
	c.m.mu.Unlock()

	if c.source != nil {
		ready := 0.0
		if c.source.Ready() {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
		for _, st := range c.source.Status() {
			if st.Running != "" {
				ch <- prometheus.MustNewConstMetric(deployedDesc, prometheus.GaugeValue, 1, st.Name, st.Running)
			}
			for _, k := range reconcile.HoldKinds {
				v := 0.0
				if st.HeldBy == k {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, v, st.Name, string(k))
			}
			if st.LastSuccess.After(last[st.Name]) {
				last[st.Name] = st.LastSuccess
			}
		}
	}
	for env, t := range last {
		ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, env)
	}
}
