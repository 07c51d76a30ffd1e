package reconcile

// ActionKind names one kind of change apply can make.
type ActionKind string

const (
	// ActPull pulls an image the revision needs (missing locally, or
	// pull_policy: always).
	ActPull ActionKind = "pull"
	// ActCreateNetwork and ActCreateVolume create a missing project network
	// or named volume.
	ActCreateNetwork ActionKind = "create-network"
	ActCreateVolume  ActionKind = "create-volume"
	// ActCreate creates and starts a replica that does not exist.
	ActCreate ActionKind = "create"
	// ActRecreate replaces a replica whose effective configuration changed.
	ActRecreate ActionKind = "recreate"
	// ActStart starts a replica whose configuration is right but which is
	// not running (drift: stopped by hand, or exited).
	ActStart ActionKind = "start"
	// ActRemove stops and removes a container that should not exist: an
	// orphan (service gone from the compose file), a replica above the
	// desired scale, or a duplicate left by an interrupted apply. Volumes are
	// never removed.
	ActRemove ActionKind = "remove"
	// ActRestart stops and starts a running replica that is otherwise
	// right, because a dependency it declares with `restart: true` is
	// created or recreated by the same plan (as compose does).
	ActRestart ActionKind = "restart"
	// ActReconnect repairs a replica that is right but wired to the wrong
	// networks (drift: disconnected by hand, its network removed and
	// re-created, other aliases): it disconnects the container from the
	// networks in Disconnect, then connects it to those in Connect with the
	// service's endpoint settings (aliases, addresses), without a restart.
	ActReconnect ActionKind = "reconnect"
	// ActAdopt takes over, without touching it, a container, network or
	// volume of the project that Docker Compose created and whose
	// configuration equals the compose files'. Apply changes nothing on the
	// engine for it; the pass records the container (reconcile/state) so
	// later passes treat it as one lockstep created.
	ActAdopt ActionKind = "adopt"
	// ActRemoveNetwork and ActRemoveVolume remove a network or a named
	// volume of the project. Only a teardown plans them (TeardownPlan):
	// the removal of a whole review environment.
	ActRemoveNetwork ActionKind = "remove-network"
	ActRemoveVolume  ActionKind = "remove-volume"

	// The kinds below are a Docker Swarm stack's (reconcile/swarm): its
	// service actions are ActCreate, ActUpdate, ActRemove and ActRecreate
	// (a service whose mode changed, which the swarm cannot update: removed
	// and created again) with SwarmService set, its networks
	// ActCreateNetwork.

	// ActUpdate sends a swarm service its new spec: the swarm rolls its
	// tasks over as the service's update_config says.
	ActUpdate ActionKind = "update"
	// ActCreateConfig and ActCreateSecret create a swarm config or secret
	// the stack needs. Each is named by its content, so a changed file is
	// a new object, never an edit in place.
	ActCreateConfig ActionKind = "create-config"
	ActCreateSecret ActionKind = "create-secret"
	// ActRemoveConfig and ActRemoveSecret remove a config or secret of the
	// stack that the compose files no longer use (an older content). They
	// are the plan's last phase, carried out only once the stack converged
	// and no service references the object: apply skips them, the prune
	// after the health gate does them.
	ActRemoveConfig ActionKind = "remove-config"
	ActRemoveSecret ActionKind = "remove-secret"
)

// Action is one step of a plan. Reasons say why, in words an operator reads
// ("image 127.0.0.1:5000/web:a -> :b", "file nginx/nginx.conf changed",
// "container missing").
type Action struct {
	Kind        ActionKind `json:"kind"`
	Service     string     `json:"service,omitempty"`
	Number      int        `json:"number,omitempty"`       // replica number, for container actions
	Container   string     `json:"container,omitempty"`    // container name
	ContainerID string     `json:"container_id,omitempty"` // existing container (recreate, start, remove)
	Network     string     `json:"network,omitempty"`
	Volume      string     `json:"volume,omitempty"`
	Image       string     `json:"image,omitempty"`
	// Order is StopFirst or StartFirst for a recreate.
	Order   string   `json:"order,omitempty"`
	Reasons []string `json:"reasons"`
	// Drift is true when the action repairs a change made outside lockstep
	// (a container removed, stopped or replaced by hand) rather than a
	// change of the revision.
	Drift bool `json:"drift,omitempty"`
	// Adopt is true when the action takes a project over from Docker
	// Compose: the container (network, volume) has no lockstep.hash. It is
	// an ActAdopt, or a recreate of a container whose configuration differs
	// from the compose files, with the difference in Reasons. Never drift.
	Adopt bool `json:"adopt,omitempty"`
	// Disconnect and Connect are the networks a reconnect detaches the
	// container from, then attaches it to; a network in both is
	// re-attached with the right settings.
	Disconnect []string `json:"disconnect,omitempty"`
	Connect    []string `json:"connect,omitempty"`
	// SwarmService is the swarm service an action of a stack is about
	// (<stack>_<key>, as docker stack deploy names it); Service is then
	// the compose service key.
	SwarmService string `json:"swarm_service,omitempty"`
	// Config and Secret name the swarm config or secret an action creates
	// or removes (<stack>_<key>_<content hash>).
	Config string `json:"config,omitempty"`
	Secret string `json:"secret,omitempty"`
	// ObjectID is the swarm object (service, config, secret) an update or
	// a removal is of; in an ApplyResult, the service a create made.
	ObjectID string `json:"object_id,omitempty"`
}

// Plan is the list of actions that would make the host match a revision.
// It is plain data: printable, serializable, comparable in golden tests.
// Actions are in the order apply performs them.
type Plan struct {
	Environment string   `json:"environment"`
	Project     string   `json:"project"`
	Commit      string   `json:"commit"`
	Actions     []Action `json:"actions"`
	// Warnings are things the operator should know that apply does not
	// change (e.g. a network whose settings differ from the compose file).
	Warnings []string `json:"warnings,omitempty"`
	// Gate is what apply waits for once the actions are done, one entry
	// per service ("web healthy", "worker 15s without restart", "migrate
	// exits 0"). Set by the Runner, which knows the environment's bake
	// period; empty when nothing is gated.
	Gate []string `json:"gate,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Actions) == 0 }

// ApplyResult says what an apply did. Done lists the actions completed, in
// order; on error it is the part of the plan that was carried out. The
// counts are of images and containers; networks and volumes created are in
// Done only.
type ApplyResult struct {
	Done      []Action `json:"done"`
	Pulled    int      `json:"pulled"`
	Created   int      `json:"created"`
	Recreated int      `json:"recreated"`
	Started   int      `json:"started"`
	Removed   int      `json:"removed"`
	// Updated counts swarm services sent a new spec (ActUpdate).
	Updated   int `json:"updated,omitempty"`
	Restarted int `json:"restarted"` // restart: true dependents (ActRestart)
	// Reconnected counts containers re-attached to their networks.
	Reconnected int `json:"reconnected"`
	// Adopted counts containers, networks and volumes taken over from
	// Docker Compose without a change (ActAdopt).
	Adopted int `json:"adopted,omitempty"`
	// Restored names the containers whose replacement could not start and
	// that were put back, running again under their names: a failed
	// recreate that left the replica as it was.
	Restored []string `json:"restored,omitempty"`
}
