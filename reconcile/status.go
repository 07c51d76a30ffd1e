package reconcile

import "time"

// Result is how a pass ended, as recorded in history and counted in
// metrics.
type Result string

// Pass results.
const (
	ResultApplied Result = "applied" // the host changed and now matches the revision
	ResultNoop    Result = "noop"    // the host already matched: nothing was done
	// ResultPaused: the pin says paused, or a new release waits for its
	// deploy window with nothing running yet: changes were pending, none
	// applied (PassRecord.Held says why).
	ResultPaused Result = "paused"
	ResultFailed Result = "failed" // the pass stopped at an error (see Error and Class)
	// ResultRolledBack: the pinned revision failed the health gate and the
	// last healthy revision was applied again (RolledBackTo), or an
	// operator ran `lockstep rollback`. Never a success.
	ResultRolledBack Result = "rolled-back"
	// ResultRemoved: a teardown pass removed a review environment (its
	// pin file was deleted, or its ttl expired).
	ResultRemoved Result = "removed"
)

// Class is what a failure means for whoever reads it: decided in one
// place (Classify) so the loop, the status and the metrics agree.
type Class string

// Error classes.
const (
	// ClassPermanent needs a human: a broken compose file, a bad pin, a
	// commit that is not on the branch. Retrying the same revision cannot
	// help; the agent waits for the branch to move.
	ClassPermanent Class = "permanent"
	// ClassGit is a failure to reach or read the repository: retried with
	// backoff.
	ClassGit Class = "git"
	// ClassEngine is a failure of the Docker engine or a registry: retried
	// with backoff.
	ClassEngine Class = "engine"
	// ClassHealth is a release that was applied but did not become
	// healthy (a *GateError). Not retried: the commit is quarantined until
	// the pin names another one or an operator runs `lockstep retry`.
	ClassHealth Class = "health"
)

// PassRecord is one pass of one environment, as kept in its history.
type PassRecord struct {
	ID          string        `json:"id"` // unique per pass; on every log line of the pass
	Environment string        `json:"environment"`
	Trigger     Trigger       `json:"trigger"` // poll, webhook, sync, drift, start
	Start       time.Time     `json:"start"`
	Duration    time.Duration `json:"duration_ns"`
	Head        string        `json:"head,omitempty"`
	Commit      string        `json:"commit,omitempty"`
	Plan        string        `json:"plan,omitempty"` // Plan.Summary()
	Result      Result        `json:"result"`         // Result* constant
	Error       string        `json:"error,omitempty"`
	Class       Class         `json:"class,omitempty"` // Class* constant, for failures
	Created     int           `json:"created,omitempty"`
	Recreated   int           `json:"recreated,omitempty"`
	// Updated counts the swarm services sent a new spec.
	Updated int `json:"updated,omitempty"`
	Removed int `json:"removed,omitempty"`
	// Adopted counts the containers, networks and volumes taken over from
	// Docker Compose without a change.
	Adopted int `json:"adopted,omitempty"`
	// Service is the service that failed the health gate, Logs its
	// container's last log lines.
	Service string   `json:"service,omitempty"`
	Logs    []string `json:"logs,omitempty"`
	// RolledBackTo is the healthy commit applied again by a rollback.
	RolledBackTo string `json:"rolled_back_to,omitempty"`
	// Held is set when a release was not applied: paused in its pin file,
	// or waiting for the deploy window (the pass then planned, and
	// repaired, what already runs).
	Held *Hold `json:"held,omitempty"`
	// ForceWindow: `lockstep apply --force-window` applied a release while
	// its deploy window was closed.
	ForceWindow bool `json:"force_window,omitempty"`
	// Swarm is the swarm as the pass saw it (a swarm environment's, once
	// observed): on which node it ran, leader or follower, the nodes lost.
	Swarm *SwarmStatus `json:"swarm,omitempty"`
}

// HoldKind is why a release is held back; metrics label by it.
type HoldKind string

// Hold kinds.
const (
	HoldPaused HoldKind = "paused" // paused = true in its pin file
	HoldWindow HoldKind = "window" // outside its deploy windows
	// HoldFollower: another agent applies (a swarm manager that is not
	// the Raft leader); this one plans and reports.
	HoldFollower HoldKind = "follower"
)

// HoldKinds are every hold kind (metrics create a series for each).
var HoldKinds = []HoldKind{HoldPaused, HoldWindow, HoldFollower}

// Hold is a release that is pending and not applied, and why.
type Hold struct {
	Kind   HoldKind `json:"kind"`
	Commit string   `json:"commit"` // the pending release
	// Reason is for people: "paused in its pin file environments/x.toml",
	// "waiting for the deploy window (opens Mon 09:00 CET)".
	Reason string `json:"reason"`
	// Opens is when the deploy window opens (zero for a pause, or when
	// none opens within a week).
	Opens time.Time `json:"opens,omitempty"`
}

// Same reports whether h and o hold the same commit for the same reason:
// what is said once (EventHeld).
func (h *Hold) Same(o *Hold) bool {
	return h != nil && o != nil && h.Kind == o.Kind && h.Commit == o.Commit && h.Reason == o.Reason
}

// EnvStatus is what the agent knows of one environment now.
type EnvStatus struct {
	Name        string      `json:"name"`
	Project     string      `json:"project"`
	Pinned      string      `json:"pinned,omitempty"`       // commit the pin resolves to, at the last pass
	Running     string      `json:"running,omitempty"`      // commit last applied successfully (what runs)
	LastHealthy string      `json:"last_healthy,omitempty"` // last commit that passed the health gate
	LastPass    *PassRecord `json:"last_pass,omitempty"`
	LastError   string      `json:"last_error,omitempty"`
	LastSuccess time.Time   `json:"last_success,omitempty"`
	// Waiting is set when a permanent error keeps the agent from retrying
	// until the branch moves.
	Waiting string `json:"waiting,omitempty"`
	// NextRetry is when a failed pass is retried (zero when not backing off).
	NextRetry time.Time `json:"next_retry,omitempty"`
	// Held says why a new release is not applied ("paused in its pin file
	// environments/x.toml", "waiting for the deploy window (opens Mon
	// 09:00 CET)"), Pending which commit waits, HeldBy which kind of hold
	// it is (HoldPaused, HoldWindow), Opens when the window opens; all
	// empty when nothing is held.
	Held    string    `json:"held,omitempty"`
	Pending string    `json:"pending,omitempty"`
	HeldBy  HoldKind  `json:"held_by,omitempty"`
	Opens   time.Time `json:"opens,omitempty"`
	// Swarm is a swarm environment's swarm as the last pass saw it (nil
	// when that pass did not reach the engine): this agent's node, whether
	// it applies, the nodes that are down.
	Swarm *SwarmStatus `json:"swarm,omitempty"`
	// Counters since the agent started, for metrics.
	Passes       map[Result]int `json:"passes"` // by Result*
	Recreated    int            `json:"containers_recreated"`
	GitErrors    int            `json:"git_errors"`
	EngineErrors int            `json:"engine_errors"`
	// Quarantined are the commits the agent will not apply until the pin
	// names another commit or `lockstep retry` clears them.
	Quarantined []string `json:"quarantined,omitempty"`
	// LastFailure is why the last release failed its health gate.
	LastFailure  string `json:"last_failure,omitempty"`
	Rollbacks    int    `json:"rollbacks"`
	GateFailures int    `json:"health_gate_failures"`

	// Set is the [[environment_set]] a review environment belongs to, ""
	// for a fixed environment; URL its review app's address, when the set
	// names one; PinFile the pin file it comes from.
	Set     string `json:"set,omitempty"`
	URL     string `json:"url,omitempty"`
	PinFile string `json:"pin_file,omitempty"`
	// NotDeployed is set on the entry of a set's pin file that does not
	// run, saying why (over the set's max, a clashing name, its ttl
	// expired); such an entry is no environment the agent runs.
	NotDeployed string `json:"not_deployed,omitempty"`
}

// Results are every pass result; Classes every error class (metrics
// create a series for each up front).
var (
	Results = []Result{ResultApplied, ResultNoop, ResultPaused, ResultFailed, ResultRolledBack, ResultRemoved}
	Classes = []Class{ClassGit, ClassEngine, ClassPermanent, ClassHealth}
)
