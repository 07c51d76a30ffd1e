// Package config owns the agent's TOML configuration file: where it is
// found, what keys it accepts, their defaults, and whether a file is valid.
// The CLI, the agent loop and tests all read the configuration through it.
//
// It reports every problem of a file at once, each with its key and, where
// known, its line, so an operator fixes a file in one go. It never reads
// secrets (tokens and passphrases are named by file path only and read by
// whoever uses them), never touches the network or the engine, and never
// looks at anything but the bytes it is given: Parse is a pure function, so
// a config can be checked on a machine other than the host it is for.
// What a repository URL means (its transport, why one is refused) is
// gitsource's to say: config asks gitsource.ParseURL, so validate and the
// agent never disagree about a URL.
package config

import (
	"fmt"
	"os"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// DefaultNotifyEvents are the events a [[notify]] target receives when it
// names none.
var DefaultNotifyEvents = []reconcile.EventKind{reconcile.EventFailure, reconcile.EventRollback, reconcile.EventRecovery}

// Defaults. config.example.toml documents each of them; a test keeps the
// two in step.
const (
	// DefaultPath is where the config is read from when neither --config nor
	// $LOCKSTEP_CONFIG names one.
	DefaultPath = "/etc/lockstep/lockstep.toml"
	// PathEnv is the environment variable that names the config file.
	PathEnv = "LOCKSTEP_CONFIG"

	DefaultStateDir     = "/var/lib/lockstep"
	DefaultBranch       = "main"
	DefaultPollInterval = time.Minute
	DefaultTimeout      = 60 * time.Second
	DefaultLogLevel     = "info"
	DefaultLogFormat    = "json"
	// DefaultDriftInterval is how often the agent compares the host with the
	// revision even when git has not moved (a container stopped by hand).
	DefaultDriftInterval = 5 * time.Minute
	// DefaultShutdownGrace bounds how long SIGTERM waits for the step in
	// flight.
	DefaultShutdownGrace = time.Minute
	DefaultSocket        = "/run/lockstep/lockstep.sock"
	// DefaultHealthTimeout bounds how long a changed service may take to
	// become healthy before the release is rolled back.
	DefaultHealthTimeout = 2 * time.Minute
	// DefaultBake is how long a changed service without a healthcheck must
	// keep running without a restart to count as healthy.
	DefaultBake = 15 * time.Second

	// MinPollInterval keeps a typo ("1ms") from hammering the git host.
	MinPollInterval = time.Second
	// MinDriftInterval keeps drift checks from hammering the engine.
	MinDriftInterval = 10 * time.Second
	// MinTimeout is the shortest network timeout accepted: below it no fetch
	// over a real network can succeed, and the failure would look like a
	// flaky remote rather than a config mistake.
	MinTimeout = time.Second
)

// IsLogLevel reports whether s is a level [log].level and --log-level
// accept: debug, info, warn or error.
func IsLogLevel(s string) bool {
	switch s {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// IsLogFormat reports whether s is a format [log].format and --log-format
// accept: json or console.
func IsLogFormat(s string) bool { return s == "json" || s == "console" }

// Config is a validated agent configuration with every default filled in.
type Config struct {
	Path         string // file it was loaded from
	StateDir     string // state_dir: absolute, cleaned
	Repo         Repo
	Engine       Engine
	Log          Log
	Agent        Agent
	API          API
	Webhook      Webhook
	Health       Health
	Notify       []Notify
	Environments []Environment // in file order; names and projects unique
	Policy       Policy
	Secrets      Secrets
	Compose      Compose
	Forge        Forge // [forge]: deploy results posted back as commit statuses
	// EnvironmentSets are the [[environment_set]] tables: review
	// environments made from pin files (see EnvironmentSet).
	EnvironmentSets []EnvironmentSet
}

// Compose is the [compose] table: how strictly compose files are read.
type Compose struct {
	// Strict (strict) refuses the keys Docker Compose accepts and ignores
	// on a single host (Swarm-only deploy settings, build: beside image:,
	// develop:, ...) instead of ignoring them with a warning. Default
	// false: a compose file shared with a Swarm stack or a developer's
	// machine deploys, and validate and plan name what had no effect.
	Strict bool
}

// Commit roles [repo.verify].commits can name. gitsource's trust-rule
// messages name the same words (it does not import config).
const (
	VerifyHead   = "head"   // the branch head the pin file is read at
	VerifyPinned = "pinned" // the commit the pin names, whose tree is deployed
	VerifyBoth   = "both"   // both of them (the default)
)

// Verify is the [repo.verify] table: commit signature verification. It is
// on when at least one source of trusted keys is set.
type Verify struct {
	Commits           string // commits: head, pinned or both (default both)
	OpenPGPKeyring    string // openpgp_keyring: file of trusted OpenPGP public keys (armored or binary)
	SSHAllowedSigners string // ssh_allowed_signers: file in ssh-keygen's allowed_signers format
}

// Enabled reports whether commits are verified at all.
func (v Verify) Enabled() bool { return v.OpenPGPKeyring != "" || v.SSHAllowedSigners != "" }

// Head and Pinned report which commits are verified.
func (v Verify) Head() bool   { return v.Enabled() && v.Commits != VerifyPinned }
func (v Verify) Pinned() bool { return v.Enabled() && v.Commits != VerifyHead }

// DefaultRuntimeDir is where decrypted secrets are materialized: under
// systemd, RuntimeDirectory=lockstep makes it a tmpfs owned by the agent.
const DefaultRuntimeDir = "/run/lockstep"

// Secrets is the [secrets] table: age-encrypted files in the repository.
type Secrets struct {
	AgeIdentity string // age_identity: file of age identities (AGE-SECRET-KEY-1...); "" means encrypted files are refused
	RuntimeDir  string // runtime_dir: tmpfs directory decrypted secret files are written under; default /run/lockstep
}

// Repo is the [repo] table: the git repository lockstep watches.
type Repo struct {
	URL          string        // https://, http://, ssh://, user@host:path, file:// or an absolute path
	Branch       string        // tracked branch, default main
	PollInterval time.Duration // how often the branch head is checked, default 1m, at least 1s
	Timeout      time.Duration // deadline of one network operation, default 60s

	// Credentials are named by path, never given inline, so they never sit
	// in a file that is shared, diffed or pasted into an issue.
	TokenFile            string // http(s) only: file holding the token (or password)
	SSHKey               string // ssh only: private key file
	SSHKeyPassphraseFile string // ssh only, with ssh_key: file holding the key's passphrase
	KnownHosts           string // ssh only, required: host keys are verified, never trusted on first use

	Verify Verify // [repo.verify]: signature verification of the commits deployed
}

// Engine is the [engine] table: how to reach the Docker engine.
type Engine struct {
	// Host is a unix:// or tcp:// address; empty means DOCKER_HOST, else the
	// default socket.
	Host string
}

// Log is the [log] table.
// Health is the health gate run after every apply that changed something.
type Health struct {
	Timeout time.Duration // timeout: how long changed services may take to become healthy; default 2m
	Bake    time.Duration // bake: how long a service without a healthcheck must run without restarting; default 15s
}

// Policy modes ([policy].mode).
const (
	PolicyWarn    = "warn"    // violations are logged and reported; the release deploys
	PolicyEnforce = "enforce" // a release with a violation is refused before anything is touched
)

// Policy is the [policy] table: which compose settings that give a
// container power over the host a release may use. Every allow_* is false
// by default, and the mode is warn, so a new policy first shows what it
// would refuse.
type Policy struct {
	Mode              string   // mode: warn (default) or enforce
	AllowPrivileged   bool     // allow_privileged: privileged: true
	AllowHostNetwork  bool     // allow_host_network: network_mode: host
	AllowHostPID      bool     // allow_host_pid: pid: host
	AllowHostIPC      bool     // allow_host_ipc: ipc: host
	AllowCapabilities []string // allow_capabilities: cap_add entries allowed, upper case without CAP_ ("NET_BIND_SERVICE"); ALL only if listed
	AllowDevices      bool     // allow_devices: devices and device_cgroup_rules
	AllowDockerSocket bool     // allow_docker_socket: a bind of /var/run/docker.sock or /run/docker.sock itself
	AllowedBindRoots  []string // allowed_bind_roots: absolute, cleaned host paths binds may come from (the release is always allowed)
}

// Notify is one place failures, rollbacks and recoveries are posted to.
type Notify struct {
	Kind    string                // kind: "webhook" (JSON POST) or "slack" (incoming webhook)
	URLFile string                // url_file: file holding the URL (URLs carry secrets)
	Events  []reconcile.EventKind // events: failure, rollback, recovery, deploy, held, teardown; default DefaultNotifyEvents
}

// Agent tunes the daemon's loop.
type Agent struct {
	DriftInterval time.Duration // drift_interval: full comparison with the engine even when git is unchanged; default 5m, at least 10s
	ShutdownGrace time.Duration // shutdown_grace: how long SIGTERM lets the step in flight finish; default 1m
}

// API is the agent's local API (status, history, sync, health, metrics).
type API struct {
	Socket string // socket: unix socket path, mode 0660; default /run/lockstep/lockstep.sock; "" disables it
	Listen string // listen: optional TCP host:port for the same API (bind to loopback)
}

// Webhook is the listener for push notifications from git hosts. It is the
// one listener that may face the internet, so it serves nothing else.
type Webhook struct {
	Listen     string // listen: host:port; "" disables webhooks
	SecretFile string // secret_file: the shared secret deliveries are signed with; required with listen
}

type Log struct {
	Level  string // debug, info, warn or error; default info
	Format string // json or console; default json
}

// Environment is one [[environment]] table: a deployment on this host.
type Environment struct {
	Name         string   // [a-z0-9][a-z0-9_-]*, unique
	PinFile      string   // repo-relative, default environments/<name>.toml
	ComposeFiles []string // repo-relative; empty means the pin file's, else compose's default discovery
	Project      string   // compose project name, default Name, unique
	EnvFiles     []string // absolute host paths of env files holding values that are not in git
	// MinCommit is the floor (min_commit): a 40-hex commit the pinned
	// revision must be or descend from, so replaying an old (signed) pin
	// cannot take the environment back past it. "" means no floor.
	MinCommit string
	// HealthTimeout and Bake override [health] for this environment (zero: as [health]).
	HealthTimeout time.Duration
	Bake          time.Duration
	// Windows are the host's deploy windows for the environment (windows,
	// reconcile/window syntax, validated): a new release is applied only
	// while one is open, and one of the pin file's when it sets any.
	// Empty: always.
	Windows []string
	// Backend is where the environment runs: "compose" (the default) on
	// this host's engine, "swarm" as a stack on the swarm that engine is a
	// manager of.
	Backend string
}

// PathFrom resolves which config file to read: the --config flag if given,
// else $LOCKSTEP_CONFIG, else DefaultPath. getenv is passed in so callers
// (and tests) decide what the environment is.
func PathFrom(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if getenv != nil {
		if p := getenv(PathEnv); p != "" {
			return p
		}
	}
	return DefaultPath
}

// Load reads the file at path and parses it. A file that cannot be read is
// returned as that error (wrapped); a file that can be read but is not a
// valid config is returned as an *Error listing every problem.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// EnvironmentNames returns the names of the configured environments, in
// file order.
func (c *Config) EnvironmentNames() []string {
	names := make([]string, len(c.Environments))
	for i, e := range c.Environments {
		names[i] = e.Name
	}
	return names
}

// Environment returns the environment called name.
func (c *Config) Environment(name string) (Environment, bool) {
	for _, e := range c.Environments {
		if e.Name == name {
			return e, true
		}
	}
	return Environment{}, false
}
