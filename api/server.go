// Package api owns the agent's local HTTP API: its routes and wire format
// (status, history, sync, retry, rollback, health, metrics), the server that answers on the
// unix socket or a TCP address, the Prometheus metrics, and the client the
// CLI uses to talk to a running agent.
//
// It is a package of its own because the agent and the CLI are two
// processes that must agree on one wire format: the JSON shapes, the paths
// and the error mapping live here once, next to the client that reads them,
// and are tested against each other.
//
// It never runs a pass, reads git or talks to the Docker engine: every
// answer comes from the Agent interface, and a sync request only queues a
// pass. It never serves webhooks (those face the internet and live in
// package webhook, on their own listener), and never registers anything in
// Prometheus' global default registry: the Metrics value owns its registry.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Agent is what the API needs from the agent loop. It is declared here, by
// its consumer; the agent implements it.
type Agent interface {
	// Status returns what the agent knows of every environment now.
	Status() []reconcile.EnvStatus
	// History returns the last limit passes of env, newest first. An
	// unknown env is an error implementing NotFound.
	History(env string, limit int) ([]reconcile.PassRecord, error)
	// Sync queues a pass of env with the given trigger and returns without
	// waiting for it. An unknown env is an error implementing NotFound.
	Sync(env string, trigger reconcile.Trigger) error
	// Ready reports whether the agent has run its first pass: /healthz
	// answers 503 until then, so a deploy script or a load balancer does
	// not take a freshly started agent for a converged one.
	Ready() bool
	// Retry clears env's quarantined commits and queues a pass. An unknown
	// env is an error implementing NotFound.
	Retry(env string) error
	// Rollback queues applying env's last healthy revision again, holding
	// the pinned commit back. An unknown env is NotFound; no revision to
	// roll back to is an error implementing Conflict.
	Rollback(env string) error
}

// Conflict is implemented by errors that mean "the request cannot be done
// in the environment's current state" (nothing to roll back to). The
// server answers them with 409.
type Conflict interface{ Conflict() bool }

// NotFound is implemented by errors that mean "no such environment". The
// server answers them with 404 instead of 500.
type NotFound interface{ NotFound() bool }

// History limits.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 1000
)

// maxRequestBody bounds every request body: the API takes at most a form
// with an environment name.
const maxRequestBody = 1 << 20

// diskUsageTimeout bounds the measure of the state dir in a status answer.
const diskUsageTimeout = 5 * time.Second

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	Environments []reconcile.EnvStatus `json:"environments"`
	// ReloadError is why the last SIGHUP was refused (the agent runs on
	// the config it had); absent once a reload succeeds.
	ReloadError string `json:"reload_error,omitempty"`
	// StateDir is what the agent's state dir takes on disk, measured for
	// this answer; absent when the server has no measure or it failed.
	StateDir *gitsource.DiskUsage `json:"state_dir,omitempty"`
}

// HistoryResponse is the body of GET /v1/history.
type HistoryResponse struct {
	Environment string                 `json:"environment"`
	Passes      []reconcile.PassRecord `json:"passes"`
}

// QueuedResponse is the body of POST /v1/retry and POST /v1/rollback.
type QueuedResponse struct {
	Environment string `json:"environment"`
	Queued      string `json:"queued"` // "retry" or "rollback"
}

// SyncResponse is the body of POST /v1/sync.
type SyncResponse struct {
	Queued []string `json:"queued"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Server answers the local API for one agent.
type Server struct {
	agent   Agent
	metrics *Metrics
	log     zerolog.Logger
	// ReloadError, when set, says why the last reload was refused ("" when
	// none was); the daemon's supervisor owns the answer.
	ReloadError func() string
	// DiskUsage, when set, measures the state dir for GET /v1/status.
	DiskUsage func(ctx context.Context) (gitsource.DiskUsage, error)
}

// NewServer returns a server answering from agent. metrics may be nil,
// in which case /metrics is not served.
func NewServer(agent Agent, metrics *Metrics, log zerolog.Logger) *Server {
	return &Server{agent: agent, metrics: metrics, log: log}
}

// Handler returns the API's routes:
//
//	GET  /v1/status                  {"environments":[...]}
//	GET  /v1/history?env=E&limit=N   {"environment":E,"passes":[...]} (404 unknown env, 400 bad limit)
//	POST /v1/sync[?env=E]            202 {"queued":[...]} (every environment without env)
//	POST /v1/retry?env=E             202 {"environment":E,"queued":"retry"} (404 unknown env)
//	POST /v1/rollback?env=E          202 {"environment":E,"queued":"rollback"} (404 unknown env, 409 nothing to roll back to)
//	GET  /healthz                    503 "starting" until the agent is ready, then 200 "ok"
//	GET  /metrics                    Prometheus text format
//
// Errors are JSON {"error":"..."} (except for the plain-text /healthz).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/status", only(http.MethodGet, http.HandlerFunc(s.status)))
	mux.Handle("/v1/history", only(http.MethodGet, http.HandlerFunc(s.history)))
	mux.Handle("/v1/sync", only(http.MethodPost, http.HandlerFunc(s.sync)))
	mux.Handle("/v1/retry", only(http.MethodPost, s.envAction("retry", s.agent.Retry)))
	mux.Handle("/v1/rollback", only(http.MethodPost, s.envAction("rollback", s.agent.Rollback)))
	mux.Handle("/healthz", only(http.MethodGet, http.HandlerFunc(s.healthz)))
	if s.metrics != nil {
		mux.Handle("/metrics", only(http.MethodGet, s.metrics.Handler()))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s: the API serves /v1/status, /v1/history, /v1/sync, /v1/retry, /v1/rollback, /healthz and /metrics", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		mux.ServeHTTP(w, r)
	})
}

// only answers 405 with a JSON error for any method but method (and HEAD
// for GET).
func only(method string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, method))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	envs := s.agent.Status()
	if envs == nil {
		envs = []reconcile.EnvStatus{}
	}
	resp := StatusResponse{Environments: envs}
	if s.ReloadError != nil {
		resp.ReloadError = s.ReloadError()
	}
	if s.DiskUsage != nil {
		// A walk of the state dir; bounded so a huge one cannot hold the
		// answer hostage.
		ctx, cancel := context.WithTimeout(r.Context(), diskUsageTimeout)
		u, err := s.DiskUsage(ctx)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Msg("status: measure the state dir")
		} else {
			resp.StateDir = &u
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	env := q.Get("env")
	if env == "" {
		writeError(w, http.StatusBadRequest, "history: the env query parameter is required (GET /v1/history?env=NAME)")
		return
	}
	limit := DefaultHistoryLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxHistoryLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("history: limit must be a whole number from 1 to %d, got %q", MaxHistoryLimit, v))
			return
		}
		limit = n
	}
	passes, err := s.agent.History(env, limit)
	if err != nil {
		s.agentError(w, r, err)
		return
	}
	if passes == nil {
		passes = []reconcile.PassRecord{}
	}
	writeJSON(w, http.StatusOK, HistoryResponse{Environment: env, Passes: passes})
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "sync: request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "sync: "+err.Error())
		return
	}
	var envs []string
	if env := r.Form.Get("env"); env != "" {
		envs = []string{env}
	} else {
		// Queue each environment by name rather than leaving "all" to the
		// agent, so the answer lists exactly what was queued.
		for _, st := range s.agent.Status() {
			if st.NotDeployed == "" { // a set's pin file that does not run
				envs = append(envs, st.Name)
			}
		}
	}
	queued := []string{}
	for _, env := range envs {
		if err := s.agent.Sync(env, reconcile.TriggerSync); err != nil {
			s.agentError(w, r, fmt.Errorf("sync %s: %w", env, err))
			return
		}
		queued = append(queued, env)
	}
	s.log.Info().Strs("queued", queued).Msg("sync requested over the API")
	writeJSON(w, http.StatusAccepted, SyncResponse{Queued: queued})
}

// envAction answers a POST that queues something for one environment
// (retry, rollback): env is required, the agent decides the rest.
func (s *Server) envAction(name string, act func(env string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeError(w, http.StatusRequestEntityTooLarge, name+": request body too large")
				return
			}
			writeError(w, http.StatusBadRequest, name+": "+err.Error())
			return
		}
		env := r.Form.Get("env")
		if env == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: the env parameter is required (POST /v1/%s?env=NAME)", name, name))
			return
		}
		if err := act(env); err != nil {
			s.agentError(w, r, fmt.Errorf("%s %s: %w", name, env, err))
			return
		}
		s.log.Info().Str("env", env).Msg(name + " requested over the API")
		writeJSON(w, http.StatusAccepted, QueuedResponse{Environment: env, Queued: name})
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.agent.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("starting\n"))
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

// agentError answers an error of the agent: 404 for an unknown
// environment, 409 for a request the environment's state refuses, 500 for
// anything else.
func (s *Server) agentError(w http.ResponseWriter, r *http.Request, err error) {
	var nf NotFound
	if errors.As(err, &nf) && nf.NotFound() {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	var c Conflict
	if errors.As(err, &c) && c.Conflict() {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Error().Err(err).Str("path", r.URL.Path).Msg("API request failed")
	writeError(w, http.StatusInternalServerError, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	// The status line is gone; an encoding error can only be a broken
	// connection, which the client sees.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

// Server timeouts: the API is local and its answers are small, so a client
// that stalls is cut off rather than holding a connection.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context is done.
	ShutdownTimeout = 5 * time.Second
)

// Serve answers the API on ln until ctx is done, then shuts down gracefully
// (bounded by ShutdownTimeout), closes ln (which removes a unix socket
// file) and returns nil. It returns an error only if serving fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		// Serve only returns on its own when the listener fails.
		return fmt.Errorf("api: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// ServeUnix is ListenUnix followed by Serve.
func (s *Server) ServeUnix(ctx context.Context, path string) error {
	ln, err := ListenUnix(ctx, path)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// ServeTCP is ListenTCP followed by Serve.
func (s *Server) ServeTCP(ctx context.Context, addr string) error {
	ln, err := ListenTCP(ctx, addr, s.log)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}
