package compose

import (
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// Labels docker stack deploy sets on every object of a stack, so that
// `docker stack ps|services|rm` work on a stack lockstep deployed.
const (
	LabelStackNamespace = "com.docker.stack.namespace"
	LabelStackImage     = "com.docker.stack.image" // the image reference as written, on the service
)

// Stack is the desired state of a project deployed as a Docker Swarm
// stack (LoadOptions.Swarm): every object docker stack deploy would
// create for the same compose files, with lockstep's own labels and
// hashes on top. It is plain data, like Project, except for the content
// of configs and secrets (StackObject.data), which is never serialized
// or logged.
type Stack struct {
	Namespace string         // the stack name: the project name
	Services  []StackService // sorted by Key
	Networks  []StackNetwork // sorted by Key
	Configs   []StackObject  // sorted by Key
	Secrets   []StackObject  // sorted by Key
	// Volumes are the named volumes the services mount (top-level
	// volumes: keys they use), sorted by Key. The swarm creates a
	// non-external one on each node that runs a task mounting it, with
	// the driver, options and labels given in the mount.
	Volumes []StackVolume
}

// StackService is one compose service as a swarm service.
type StackService struct {
	Key  string // compose service key ("web")
	Name string // <namespace>_<key>, as docker stack deploy names it
	// Image is the image reference as written (after interpolation); the
	// spec carries it too until the apply pins it to a digest.
	Image string
	// Spec is the service spec docker stack deploy would send, with
	// Labels (deploy.labels plus namespace, lockstep.hash, lockstep.commit,
	// lockstep.environment), TaskTemplate.ContainerSpec.Labels (labels:
	// plus namespace), networks, mounts, configs and secrets (referenced
	// by their StackObject.Name; the engine ids are filled at apply).
	Spec swarm.ServiceSpec
	// Hash is lockstep.hash: sha256 over the effective spec as converted,
	// with the image as written and each config/secret by its content
	// hash; unchanged when nothing that makes the service changes.
	Hash string
	// Healthcheck: the image's or the compose file's healthcheck applies
	// (the gate waits for healthy tasks); false when disabled or unknown
	// from the compose files alone (the engine tells at apply).
	Healthcheck bool
	// Job: deploy.mode replicated-job or global-job (the gate waits for
	// completion, not running).
	Job bool
	// Configs and Secrets are the keys of the stack's objects it uses.
	Configs []string
	Secrets []string
}

// Tasks is how many tasks the service runs by its spec: its replicas, 1
// for a global service or a job (as a deployment record counts them).
func (s StackService) Tasks() int {
	if m := s.Spec.Mode; m.Replicated != nil && m.Global == nil && m.ReplicatedJob == nil && m.GlobalJob == nil {
		if m.Replicated.Replicas == nil {
			return 1
		}
		return int(*m.Replicated.Replicas)
	}
	return 1
}

// StackNetwork is a network of the stack.
type StackNetwork struct {
	Key      string // key under networks: ("default")
	Name     string // <namespace>_<key> unless name: is set
	External bool   // must exist as a swarm-scoped network; never created or removed
	// Driver defaults to overlay; Attachable, Internal, DriverOpts, Labels
	// (with the namespace label) and IPAM as in the compose file.
	Driver     string
	DriverOpts map[string]string
	Labels     map[string]string
	Attachable bool
	Internal   bool
	EnableIPv6 bool
	IPAM       *StackIPAM // nil when not configured
}

// StackIPAM is a network's ipam: block.
type StackIPAM struct {
	Driver  string
	Config  []StackIPAMPool
	Options map[string]string
}

// StackIPAMPool is one ipam.config entry.
type StackIPAMPool struct {
	Subnet, IPRange, Gateway string
	AuxAddress               map[string]string
}

// StackObject is a config or a secret of the stack. Swarm objects cannot
// be changed in place, so each is named by its content: a changed file is
// a new object (and a rolling update of the services using it), and the
// old one is removed once nothing references it.
type StackObject struct {
	Key string // key under configs: or secrets:
	// Name is <namespace>_<key>_<first 12 hex of ContentHash> (at most 64
	// characters: the key is shortened when needed); or the name: of an
	// external object.
	Name     string
	External bool // must exist; never created or removed
	// ContentHash is the sha256 (hex) of the content; for content that
	// came from an age-encrypted file (an *.age file: source, or an
	// environment: variable set by an encrypted env file) the HMAC-SHA256
	// keyed with the host's identities instead, as File.Digest, so the
	// name and labels reveal nothing about a secret's value (managers
	// sharing the identity file compute the same one).
	ContentHash string
	// Labels carry the namespace, lockstep.environment and
	// lockstep.content-hash (= ContentHash), plus the compose file's.
	Labels map[string]string
	// Source is the release path the content came from (slash-separated,
	// relative to the release dir; the absolute path of a host file under
	// [policy].allowed_bind_roots; "" for content: or environment:), for
	// plans and errors; Encrypted when it was decrypted (an *.age file, or
	// an environment: variable from an encrypted env file).
	Source    string
	Encrypted bool
	data      []byte // the content (decrypted); see Data
}

// Data is the object's content, for the engine call that creates it.
// Never log or serialize it.
func (o StackObject) Data() []byte { return o.data }

// StackVolume is a named volume the stack's services mount.
type StackVolume struct {
	Key        string // key under volumes:
	Name       string // <namespace>_<key> unless name: is set
	External   bool
	Driver     string
	DriverOpts map[string]string
	Labels     map[string]string // with the namespace label
}

// LabelContentHash is the content hash label of a stack's config or
// secret.
const LabelContentHash = "lockstep.content-hash"

// ObservedStack is what a swarm has of a stack: the objects carrying its
// namespace label, and the swarm's own state.
type ObservedStack struct {
	Namespace string
	Services  []ObservedService // sorted by Name
	Networks  []ObservedStackNetwork
	Configs   []ObservedObject // sorted by Name
	Secrets   []ObservedObject // sorted by Name
	Nodes     []ObservedNode   // every node of the swarm, sorted by Hostname
	// Local is the node whose engine was asked (reconcile/swarm's
	// Backend.Observe reads it; zero when nothing did): which of Nodes the
	// agent runs on.
	Local SwarmInfo
}

// ObservedService is one service of the stack as the swarm has it.
type ObservedService struct {
	ID      string
	Name    string
	Version uint64            // for an update (the swarm refuses a stale one)
	Spec    swarm.ServiceSpec // as the swarm reports it (image pinned to a digest)
	// PreviousSpec is the spec before the last update, nil when none (the
	// swarm keeps one).
	PreviousSpec *swarm.ServiceSpec
	// UpdateState is the state of the last update or rollback
	// ("updating", "paused", "completed", "rollback_started",
	// "rollback_paused", "rollback_completed"; "" for none) and its
	// message.
	UpdateState   string
	UpdateMessage string
	UpdatedAt     time.Time      // when the service last changed (its Meta.UpdatedAt)
	Tasks         []ObservedTask // the tasks of the current and previous slots, newest first
}

// Labels are the service's labels (Spec.Labels).
func (s ObservedService) Labels() map[string]string { return s.Spec.Labels }

// ObservedTask is one task of a service.
type ObservedTask struct {
	ID           string
	Slot         int    // replicated services
	NodeID       string // where it is scheduled; "" when not yet
	State        string // swarm.TaskState: new ... running, complete, failed, shutdown, rejected, orphaned
	DesiredState string
	Message      string // the task status message
	Err          string // the task status error
	ExitCode     int
	// Health is the container health reported for the task: "",
	// starting, healthy, unhealthy. The swarm API (up to 1.56 at least)
	// reports none, so compose/engine leaves it "": instead a task whose
	// container has a healthcheck stays in state starting until the check
	// passes and only then becomes running; when it fails, the swarm stops
	// the container and the task ends (complete or failed, desired
	// shutdown) without ever having been running.
	Health    string
	CreatedAt time.Time
	// ServiceVersion is the service spec version the task was made for
	// (Task.Version is the task's; the engine reports the spec index in
	// Task.ServiceID + the spec it runs: compare Spec's image and the
	// service's to tell old tasks from new ones).
	Image string // ContainerSpec.Image of the task
}

// ObservedStackNetwork is a network with the stack's label, or an external
// one the stack needs.
type ObservedStackNetwork struct {
	ID, Name, Driver, Scope string
	Labels                  map[string]string
	Attachable, Internal    bool
}

// ObservedObject is a config or secret of the stack (or an external one
// it needs).
type ObservedObject struct {
	ID, Name string
	Labels   map[string]string
}

// ObservedNode is a node of the swarm.
type ObservedNode struct {
	ID, Hostname string
	Role         string // manager or worker
	State        string // ready, down, unknown, disconnected
	Availability string // active, pause, drain
	Leader       bool
	Reachability string // managers: reachable, unreachable, unknown
}

// SwarmInfo is the local node's place in the swarm, as the swarm backend
// reads it before a pass (reconcile/swarm's Info: the engine adapter in
// compose/engine and the planner share this one type).
type SwarmInfo struct {
	NodeID    string
	ClusterID string
	State     string // swarm.LocalNodeState: "inactive", "active", "pending", "error", "locked"
	Manager   bool   // the node is a manager
	Leader    bool   // and the current Raft leader (only the leader's agent applies)
	Managers  int
	Nodes     int
}

// WithData returns o with content data, for the converter that reads the
// file (and tests); Data returns it.
func (o StackObject) WithData(data []byte) StackObject {
	o.data = data
	return o
}
