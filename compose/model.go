// Package compose turns a materialized release (a directory holding the
// repository tree at one commit) into the desired state of a Docker Compose
// project: networks, volumes and services, each service already converted
// into Engine API create configs, labelled the way Docker Compose v2 labels
// them and hashed over its effective configuration, including the content of
// the repository files it uses.
//
// It owns the meaning of "desired" and "observed" for a project. It never
// talks to git, never reads the daemon's own process environment into the
// model, never loads a remote include, and never mutates the engine (the
// engine adapter lives in compose/engine).
//
// Load writes nothing anywhere, so plan and validate have no side effects.
// The only files the package writes are the decrypted configs and secrets
// of a project, on the tmpfs under [secrets].runtime_dir: by WriteSecrets,
// which apply calls, and removed by PruneSecrets.
package compose

import (
	"fmt"
	"strconv"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// Label keys. The com.docker.compose.* ones are exactly the ones Docker
// Compose v2 sets, so `docker compose -p <project> ps|logs|down` work on a
// project lockstep deployed.
const (
	LabelProject         = "com.docker.compose.project"
	LabelService         = "com.docker.compose.service"
	LabelContainerNumber = "com.docker.compose.container-number"
	LabelOneoff          = "com.docker.compose.oneoff"
	LabelConfigHash      = "com.docker.compose.config-hash"
	LabelWorkingDir      = "com.docker.compose.project.working_dir"
	LabelConfigFiles     = "com.docker.compose.project.config_files"
	LabelDependsOn       = "com.docker.compose.depends_on"
	LabelImage           = "com.docker.compose.image"
	LabelVersion         = "com.docker.compose.version"
	LabelNetwork         = "com.docker.compose.network"
	LabelVolume          = "com.docker.compose.volume"

	LabelEnvironment = "lockstep.environment"
	LabelCommit      = "lockstep.commit"
	LabelHash        = "lockstep.hash"
	LabelSpecHash    = "lockstep.spec-hash"
	// labelHealthGate is reconcile.LabelHealthGate, which a service may
	// set in its compose labels: it is not reserved.
	labelHealthGate = "lockstep.health-gate"
)

// Depends-on conditions, spelled as in the compose specification.
const (
	ConditionStarted   = "service_started"
	ConditionHealthy   = "service_healthy"
	ConditionCompleted = "service_completed_successfully"
)

// Pull policies, normalized from the spellings compose accepts.
const (
	PullMissing = "missing" // default: pull only when the image is not present locally
	PullAlways  = "always"
	PullNever   = "never"
)

// Update orders (deploy.update_config.order).
const (
	StopFirst  = "stop-first"
	StartFirst = "start-first"
)

// Project is the desired state of one compose project at one revision.
// It is plain data: loading it writes nothing anywhere (the decrypted
// configs and secrets it binds are written by WriteSecrets, a step of
// apply), and two loads of the same release with the same inputs are
// deeply equal.
type Project struct {
	Name        string   // compose project name
	Environment string   // lockstep environment name
	Commit      string   // 40-hex revision the release was materialized from
	ReleaseDir  string   // absolute path of the release directory (the project working dir)
	ConfigFiles []string // absolute paths of the compose files loaded, in order

	Networks []Network // sorted by Name
	Volumes  []Volume  // sorted by Name
	Services []Service // dependencies before dependents; ties broken by name

	// SecretFiles are the host paths, under [secrets].runtime_dir, of the
	// decrypted configs and secrets the services bind (sorted), where
	// WriteSecrets writes them. Pass them to PruneSecrets as in use.
	SecretFiles []string

	// Warnings are the keys of the compose files ignored as Docker Compose
	// ignores them on a single host (none with LoadOptions.Strict).
	Warnings []Warning `json:",omitempty"`

	// MountPoints are the directories of the release (slash-separated,
	// relative to it, sorted) that volumes, tmpfs and binds nested inside
	// a bind from the release are mounted on. They are created empty in
	// the release before it is used (see mountpoints.go), so the engine
	// never creates one inside it.
	MountPoints []string `json:",omitempty"` // omitted when none: outputs of projects without any stay as they were

	// Stack is the project as a Docker Swarm stack, set only when it was
	// loaded with LoadOptions.Swarm (Services, Networks and Volumes are
	// then empty: nothing runs as a plain container).
	Stack *Stack `json:",omitempty"`

	// secrets holds the plaintext of SecretFiles until WriteSecrets: never
	// exported, serialized or logged (see secretWrites).
	secrets *secretWrites
}

// Network is a network the project uses.
type Network struct {
	Key        string            // key under `networks:` in the compose file ("default", "backend")
	Name       string            // engine name: "<project>_<key>" unless `name:` is set
	External   bool              // must exist already; never created or removed by lockstep
	Driver     string            // "" means the engine default (bridge)
	DriverOpts map[string]string // driver_opts
	Internal   bool
	Attachable bool
	EnableIPv6 bool
	IPAM       *network.IPAM     // nil when not configured
	Labels     map[string]string // includes the compose labels (project, network, version)
	Hash       string            // hash of the settings above except labels that vary per commit
	// ConfigHash is Docker Compose's config-hash of the network (see
	// composehash.go), written as com.docker.compose.config-hash when
	// lockstep creates it; "" for an external network. Compose recreates a
	// network whose label differs from its own value and leaves one
	// without the label alone, so it is exactly Compose's value or absent.
	// Not part of Hash (omitempty keeps Hash's input as it was before it).
	ConfigHash string `json:",omitempty"`
}

// Volume is a named volume the project declares.
type Volume struct {
	Key        string            // key under `volumes:`
	Name       string            // engine name: "<project>_<key>" unless `name:` is set
	External   bool              // must exist already; never created by lockstep
	Driver     string            // "" means "local"
	DriverOpts map[string]string // driver_opts
	Labels     map[string]string // includes the compose labels (project, volume, version)
	// ConfigHash is Docker Compose's config-hash of the volume, written as
	// com.docker.compose.config-hash when lockstep creates it; "" for an
	// external volume.
	ConfigHash string
}

// Dependency is one entry of a service's depends_on.
type Dependency struct {
	Service   string // the service depended on
	Condition string // ConditionStarted, ConditionHealthy or ConditionCompleted
	Restart   bool   // restart: true, restart the dependent when the dependency is recreated
	Required  bool   // required: false makes a missing/failed dependency a warning
}

// File is a repository file (or directory) whose content is part of a
// service's effective configuration: a bind-mounted path inside the release,
// an env_file, or a configs/secrets `file:` source.
type File struct {
	Path string // slash-separated, relative to the release dir ("nginx/nginx.conf")
	// Digest is "sha256:<hex>" of the content (for a directory: of its
	// sorted entries, names, modes and contents); for an age-encrypted
	// env_file or configs/secrets source, "hmac-sha256:<hex>" of the
	// plaintext keyed with the host's identities, so it is stable across
	// re-encryption and reveals nothing without the identity.
	Digest string
}

// Service is one compose service, converted into what the Engine API needs
// to create its containers.
type Service struct {
	Name           string
	Image          string // image reference as written (after interpolation)
	PullPolicy     string // PullMissing, PullAlways or PullNever
	Replicas       int    // scale / deploy.replicas, default 1; 0 means "declared but not run"
	ContainerName  string // explicit container_name; "" means <project>-<service>-<n>
	DependsOn      []Dependency
	UpdateOrder    string // StopFirst (default) or StartFirst
	Healthcheck    bool   // the service (or its image, if known) defines a healthcheck that is not disabled
	PublishesPorts bool   // has ports published on the host (start-first is not possible then)

	// Create configs for container number n are derived from these by
	// ContainerCreate: Config.Labels gains the per-container labels
	// (container-number) and Networking gets one endpoint per network.
	Config     *container.Config
	Host       *container.HostConfig
	Networking *network.NetworkingConfig // endpoints keyed by engine network name, with aliases

	Files []File // repository files the service uses, sorted by Path
	// SpecHash (label lockstep.spec-hash) is lockstep's hash of the create
	// configs, release paths made relative and the image left out: it
	// stays the same when only the release directory moves.
	SpecHash string
	// ConfigHash (label com.docker.compose.config-hash) is the value
	// Docker Compose v5.6.0 computes for the service from the same files
	// and variables in the same directory (composehash.go), so `docker
	// compose up` finds lockstep's containers up to date. It holds
	// absolute release paths, so it changes with every commit; lockstep
	// decides nothing by it. For a service sharing another's namespace
	// (network_mode: service:x) the label is ConfigHashWithRefs.
	ConfigHash string
	Hash       string // lockstep.hash: SpecHash, image and the digests of Files; a change means "recreate"

	// composeModel is the JSON ConfigHash is the sha256 of, kept to
	// re-hash with resolved service: references (ConfigHashWithRefs).
	composeModel []byte
}

// ContainerNameFor returns the engine name of replica n (1-based), named the
// way compose names it.
func (s *Service) ContainerNameFor(project string, n int) string {
	if s.ContainerName != "" {
		return s.ContainerName
	}
	return fmt.Sprintf("%s-%s-%d", project, s.Name, n)
}

// Service returns the service with the given name, or nil.
func (p *Project) Service(name string) *Service {
	for i := range p.Services {
		if p.Services[i].Name == name {
			return &p.Services[i]
		}
	}
	return nil
}

// Observed is what the engine says exists for a project, read back by the
// com.docker.compose.project label. It is a snapshot: plain data.
type Observed struct {
	Project    string
	Containers []Container       // non-oneoff containers of the project, sorted by Service, Number, Name
	Networks   []ObservedNetwork // sorted by Name
	Volumes    []ObservedVolume  // sorted by Name
	// Images maps each image reference the desired project uses to the ID of
	// the local image of that reference; a reference absent from the map is
	// not present locally.
	Images map[string]string
	// PortHolders says what holds each fixed host port a desired service
	// publishes, when something does; a port nobody holds is absent.
	PortHolders []PortHolder
	// Stack is what the swarm has of the project deployed as a stack (a
	// swarm backend's Observe); nil for a project on a single host.
	Stack *ObservedStack `json:",omitempty"`
}

// PortHolder is what holds a host port the project publishes: a running
// container (of this project or any other), or, when no container
// publishes it, a process on the host (ContainerID empty), found by trying
// to bind the port.
type PortHolder struct {
	HostPort
	ContainerID   string
	ContainerName string
	Project       string // the holder's com.docker.compose.project label, if any
	Service       string // its com.docker.compose.service label, if any
}

// Container is one observed container of a project.
type Container struct {
	ID           string
	Name         string // without the leading "/"
	Service      string // com.docker.compose.service
	Number       int    // com.docker.compose.container-number (0 if missing or invalid)
	State        string // created, running, paused, restarting, removing, exited, dead
	Health       string // "", starting, healthy, unhealthy
	ExitCode     int
	RestartCount int
	Image        string // image reference the container was created from (Config.Image)
	ImageID      string // ID of the image it runs
	Hash         string // lockstep.hash ("" when not created by lockstep)
	SpecHash     string // lockstep.spec-hash ("" when not created by lockstep, or by a lockstep before it)
	ConfigHash   string // com.docker.compose.config-hash (lockstep before spec-hash wrote its spec hash here)
	Commit       string // lockstep.commit
	WorkingDir   string // com.docker.compose.project.working_dir: the release dir it came from
	Labels       map[string]string
	// PriorFiles holds, for the repository files the desired service uses,
	// their digests in the release the container came from (WorkingDir), as
	// far as that release is still on disk. Filled by the pass before
	// planning so the plan can say which file changed; nil when unknown.
	PriorFiles map[string]string
	// Networks are the container's endpoints, keyed by network name
	// (NetworkSettings.Networks): a network removed and re-created by hand,
	// or a `docker network disconnect`, shows here and nowhere else.
	Networks map[string]Endpoint
	// Spec is what the container was created with (mounts, environment
	// digests, ports, command), read only for a container without a
	// lockstep.hash, so a plan can say how one Docker Compose created
	// differs; nil otherwise.
	Spec *ContainerSpec
}

// Endpoint is one network a container is attached to.
type Endpoint struct {
	NetworkID string
	// Aliases as the engine reports them; engines before API 1.45 add the
	// container's short ID, which is the engine's, not the compose file's.
	Aliases []string
}

// ObservedNetwork is a network carrying the project label, or a network
// the project needs that exists without it.
type ObservedNetwork struct {
	ID     string
	Name   string
	Labels map[string]string
	// The settings the network was created with, so a network Docker
	// Compose created without a config-hash label can be compared with the
	// compose files.
	Driver     string
	Options    map[string]string
	IPAM       *network.IPAM // nil when the engine reports none
	Internal   bool
	Attachable bool
	EnableIPv6 bool
}

// ObservedVolume is a volume carrying the project label, or a named volume
// the project needs that exists without it.
type ObservedVolume struct {
	Name    string
	Labels  map[string]string
	Driver  string
	Options map[string]string
}

// ContainerCreate returns the create configs for replica n of svc: copies of
// svc.Config, svc.Host and svc.Networking that the caller may change, with
// the per-container label (container-number) added. The service's shared
// configs are never mutated, so one loaded Project can serve many creates.
func ContainerCreate(svc *Service, n int) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	// Deep copies: the adapter may change anything it is handed (a mount's
	// source, an endpoint's aliases, a ulimit), and that must never reach
	// the shared service. See deepCopy in copy.go.
	cfg := deepCopy(svc.Config)
	if cfg.Labels == nil {
		cfg.Labels = make(map[string]string, 1)
	}
	cfg.Labels[LabelContainerNumber] = strconv.Itoa(n)

	host := deepCopy(svc.Host)

	nets := &network.NetworkingConfig{}
	if svc.Networking != nil {
		nets = deepCopy(svc.Networking)
	}
	return cfg, host, nets
}
