package reconcile

import "time"

// EventKind is what an Event is about; notifications and the config's
// [[notify]].events use these values.
type EventKind string

// Event kinds.
const (
	// EventFailure: a release did not pass the health gate (whether or not
	// a rollback followed), or a rollback did not.
	EventFailure EventKind = "failure"
	// EventRollback: the last healthy revision was applied again and
	// passed the gate (after a failure, or by `lockstep rollback`).
	EventRollback EventKind = "rollback"
	// EventRecovery: the first healthy deployment of an environment after
	// a failure event.
	EventRecovery EventKind = "recovery"
	// EventDeploy: every pass that changed the host and passed the gate.
	EventDeploy EventKind = "deploy"
	// EventHeld: a new release is pending and not applied, paused in its
	// pin file or waiting for the deploy window (Reason says which, and
	// when it opens). Said once per environment, pending commit and
	// reason, not every pass.
	EventHeld EventKind = "held"
	// EventTeardown: a review environment (of an [[environment_set]]) was
	// torn down, its pin file deleted or its ttl expired.
	EventTeardown EventKind = "teardown"
)

// Event is something people should hear about: what notifications are
// made of. It carries no secrets: commits, service names, the gate's
// reason and the failing container's last log lines.
type Event struct {
	Kind        EventKind `json:"kind"` // Event* constant
	Environment string    `json:"environment"`
	// Commit is the commit the event is about: the one that failed, the
	// one rolled back from (failed, or held back by `lockstep rollback`),
	// the one deployed or healthy again.
	Commit string `json:"commit,omitempty"`
	// Previous is the revision rolled back to (rollback; failure when a
	// rollback follows or failed), or what ran before (deploy, recovery).
	Previous string    `json:"previous,omitempty"`
	Service  string    `json:"service,omitempty"` // the service that failed the gate
	Reason   string    `json:"reason,omitempty"`
	Logs     []string  `json:"logs,omitempty"`
	Time     time.Time `json:"time"`
}

// EventKinds are every event kind, in the order they are documented.
var EventKinds = []EventKind{EventFailure, EventRollback, EventRecovery, EventDeploy, EventHeld, EventTeardown}
