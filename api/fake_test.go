package api_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// fakeAgent stands in for the agent loop behind the api.Agent interface.
type fakeAgent struct {
	mu       sync.Mutex
	envs     []reconcile.EnvStatus
	history  map[string][]reconcile.PassRecord
	syncs    []string // "env/trigger"
	limits   []int    // limits History was asked for
	syncErr  error
	readyVal atomic.Bool
	actions  []string // "retry/env", "rollback/env"
	// nothingToRollBack lists environments Rollback answers Conflict for.
	nothingToRollBack map[string]bool
}

type conflictError struct{ env string }

func (e *conflictError) Error() string {
	return fmt.Sprintf("environment %s has no healthy revision to roll back to", e.env)
}
func (e *conflictError) Conflict() bool { return true }

func (f *fakeAgent) Retry(env string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.history[env]; !ok {
		return &unknownEnvError{env}
	}
	f.actions = append(f.actions, "retry/"+env)
	return nil
}

func (f *fakeAgent) Rollback(env string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.history[env]; !ok {
		return &unknownEnvError{env}
	}
	if f.nothingToRollBack[env] {
		return &conflictError{env}
	}
	f.actions = append(f.actions, "rollback/"+env)
	return nil
}

func (f *fakeAgent) actionCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

type unknownEnvError struct{ name string }

func (e *unknownEnvError) Error() string {
	return fmt.Sprintf("unknown environment %q: this agent runs staging and production", e.name)
}
func (e *unknownEnvError) NotFound() bool { return true }

func newFakeAgent() *fakeAgent {
	return &fakeAgent{
		envs: []reconcile.EnvStatus{
			{Name: "staging", Project: "staging", Pinned: sha('a'), Running: sha('a'), Passes: map[reconcile.Result]int{"applied": 1}},
			{Name: "production", Project: "prod", Pinned: sha('b'), LastError: "fetch: connection refused"},
		},
		history: map[string][]reconcile.PassRecord{
			"staging": {
				{ID: "p3", Environment: "staging", Trigger: "poll", Result: reconcile.ResultNoop},
				{ID: "p2", Environment: "staging", Trigger: "sync", Result: reconcile.ResultApplied, Commit: sha('a')},
				{ID: "p1", Environment: "staging", Trigger: "start", Result: reconcile.ResultFailed, Class: reconcile.ClassGit, Error: "fetch: timeout"},
			},
			"production": nil,
		},
	}
}

func sha(c byte) string {
	b := make([]byte, 40)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func (f *fakeAgent) Status() []reconcile.EnvStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]reconcile.EnvStatus(nil), f.envs...)
}

func (f *fakeAgent) History(env string, limit int) ([]reconcile.PassRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, limit)
	h, ok := f.history[env]
	if !ok {
		return nil, &unknownEnvError{env}
	}
	if len(h) > limit {
		h = h[:limit]
	}
	return h, nil
}

func (f *fakeAgent) Sync(env string, trigger reconcile.Trigger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncErr != nil {
		return f.syncErr
	}
	if _, ok := f.history[env]; !ok {
		return fmt.Errorf("queue: %w", &unknownEnvError{env})
	}
	f.syncs = append(f.syncs, env+"/"+string(trigger))
	return nil
}

func (f *fakeAgent) Ready() bool { return f.readyVal.Load() }

func (f *fakeAgent) syncCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.syncs...)
}

var errWedged = errors.New("the agent is shutting down")
