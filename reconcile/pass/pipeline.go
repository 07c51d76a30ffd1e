package pass

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// Environment is one environment of the agent config, as a pass needs it.
type Environment struct {
	Name         string   // environment name (staging, production, pr-142)
	Project      string   // compose project name
	PinFile      string   // repo-relative pin file path
	ComposeFiles []string // repo-relative compose files; empty = the pin's, else discovery
	EnvFiles     []string // host-local env files (absolute)
	// MinCommit is the floor: no pinned commit and no rollback target
	// below it. "" means none.
	MinCommit string
	// HealthTimeout and Bake override the Pipeline's Gate for this
	// environment; zero keeps them.
	HealthTimeout time.Duration
	Bake          time.Duration
	// Windows are the host config's deploy windows: a new release is
	// applied only while one is open (and one of the pin file's, when it
	// sets any). Empty: any time.
	Windows []window.Window
	// Set is the [[environment_set]] a review environment comes from ("" for
	// a fixed environment); URL its review app's address, expanded from
	// the set's url ("" when none). A set's environments may publish no
	// fixed host port (see the policy step), and are torn down by
	// Pipeline.Teardown when their pin file goes.
	Set string
	URL string
	// RemoveVolumes lets a teardown remove the environment's named
	// volumes too. Only a set's environments have it.
	RemoveVolumes bool
	// Backend is where the environment runs: BackendCompose (config's
	// default; "" means the same) this host's engine, BackendSwarm a stack on the swarm the engine
	// belongs to (Pipeline.Swarm).
	Backend string
}

// Backends of an environment.
const (
	BackendCompose = "compose"
	BackendSwarm   = "swarm"
)

// Slug is what LOCKSTEP_SLUG is for env: a review environment's name
// without its set's prefix (the pin file's stem, made a valid name), a
// fixed environment's name.
func (env Environment) Slug() string {
	if env.Set == "" {
		return env.Name
	}
	return strings.TrimPrefix(env.Name, env.Set+"-")
}

// Source is what a pass needs of git; gitsource.Releases implements it.
type Source interface {
	// Resolve fetches the branch, verifies what [repo.verify] asks, reads
	// the pin at the head, resolves it (or want.Commit instead) and checks
	// the floor. It writes nothing; on error the release says how far it
	// got (the head, perhaps the commit).
	Resolve(ctx context.Context, want gitsource.Want) (gitsource.Release, error)
	// Materialize makes rel's immutable release directory: new, it holds
	// nothing yet; AddPaths adds what the loader asks for.
	Materialize(ctx context.Context, rel gitsource.Release) (gitsource.Release, error)
	// AddPaths adds to rel's release the paths the compose loader is
	// about to read or reference (compose.LoadOptions.Need), as git has
	// them at rel.Commit; paths it holds already cost nothing.
	AddPaths(ctx context.Context, rel gitsource.Release, paths []string) error
	// AddMountPoints creates, empty, the directories of rel's release that
	// mounts nested in its binds are mounted on (compose.Project.MountPoints),
	// so that the engine never creates one inside the release.
	AddMountPoints(ctx context.Context, rel gitsource.Release, paths []string) error
	// CheckFloor refuses commit unless it is floor or descends from it.
	CheckFloor(ctx context.Context, floor, commit string) error
	// Prune removes release directories not in inUse, keeping a few.
	Prune(inUse map[string]bool) error
}

var _ Source = (*gitsource.Releases)(nil)

// Loader turns a materialized release into the desired compose project,
// calling need with each release path before it reads or references it
// (compose.LoadOptions.Need). It must write nothing itself (compose.Load
// does not): need is what completes the release.
type Loader func(ctx context.Context, env Environment, rel gitsource.Release, need func(path string) error) (*compose.Project, error)

// Backend is where a plan is carried out: the apply step's seam.
// reconcile.Host is one Docker engine; a Swarm stack is another.
type Backend interface {
	Observe(ctx context.Context, p *compose.Project) (compose.Observed, error)
	// Apply carries plan out; a service of the release that failed while
	// others waited on it is a *reconcile.GateError.
	Apply(ctx context.Context, desired *compose.Project, observed compose.Observed, plan *reconcile.Plan, gate reconcile.GateOptions) (*reconcile.ApplyResult, error)
	// Verify is the health gate over the actions done; a failure is a
	// *reconcile.GateError.
	Verify(ctx context.Context, desired *compose.Project, done []reconcile.Action, gate reconcile.GateOptions) error
	// Healthy says whether a host found converged is healthy right now.
	Healthy(desired *compose.Project, observed compose.Observed) bool
	// Environments lists the lockstep environments with containers on
	// the backend, each with its compose project: how a review
	// environment the state dir does not know of is found and torn down.
	Environments(ctx context.Context) (map[string]string, error)
}

// reconcile cannot import this package (it would be a cycle), so the
// assertion that Host is a Backend lives here.
var _ Backend = (*reconcile.Host)(nil)

// Planner is a backend that plans itself: a swarm stack is planned by
// service, not by container. Without it, the plan step compares
// containers (reconcile.BuildPlanSince). An error is a release the
// backend cannot apply (an external network that does not exist): the
// pass stops before anything is touched.
type Planner interface {
	Plan(desired *compose.Project, observed compose.Observed, last *reconcile.Deployed, gate reconcile.GateOptions) (*reconcile.Plan, error)
}

// Leader is a backend that several agents watch and only one changes (the
// agent on a swarm's Raft leader). Applies says whether this one does,
// and when not, why (observed is what the pass saw, to name who does);
// the pass then plans, reports, and applies nothing.
type Leader interface {
	Applies(ctx context.Context, observed compose.Observed) (bool, string, error)
}

// backendFor is the backend env is deployed to: Swarm for a swarm
// environment, else Backend.
func (p *Pipeline) backendFor(env Environment) Backend {
	if env.Backend == BackendSwarm {
		if p.Swarm == nil {
			return noSwarm{}
		}
		return p.Swarm
	}
	return p.Backend
}

// DefaultPassTimeout bounds one pass when the Pipeline sets no PassContext.
const DefaultPassTimeout = 30 * time.Minute

// Pipeline runs passes. It holds no state between passes; everything it
// records goes to State.
type Pipeline struct {
	Source  Source
	Load    Loader
	Backend Backend
	// Swarm is the backend of the environments whose Backend is
	// BackendSwarm; nil fails their passes at observe.
	Swarm Backend
	State *state.Store
	// Policy is checked on every loaded release before the engine is
	// asked anything. The zero value warns about everything it covers.
	Policy compose.Policy
	// Secrets is how releases decrypt their *.age files: the apply step
	// writes the decrypted configs and secrets, the plan names the
	// encrypted files that changed, the prune removes unused ones.
	Secrets compose.SecretOptions
	// Gate tunes the health gate; an Environment's HealthTimeout and Bake
	// override it.
	Gate reconcile.GateOptions
	Log  zerolog.Logger
	// Clock stamps records; nil is the wall clock.
	Clock reconcile.Clock
	// PassContext bounds a pass, and separately the rollback that follows
	// a failed one (which must not inherit a deadline the failure used
	// up). nil: DefaultPassTimeout under the caller's context.
	PassContext func(parent context.Context) (context.Context, context.CancelFunc)
	// LockWait bounds how long an apply (or a rollback) waits for another
	// one of the same environment, in this process or another sharing the
	// state dir, before it fails with a *state.BusyError; 0 is
	// DefaultLockWait. Validate and plan take no lock.
	LockWait time.Duration
	// Started, when set, is called by the apply step right before the
	// backend applies a non-empty plan of a commit other than the one that
	// ran before (Result.Previous): a new release (or a rollback target)
	// starts going out. It must not block; the deploy status on the forge
	// is posted from it.
	Started func(env Environment, commit string)
}

// Mode says how far a pass goes.
type Mode int

const (
	ModeValidate Mode = iota // resolve, materialize, load, policy: touches no engine
	ModePlan                 // and observe, plan: changes nothing
	ModeApply                // and apply, gate, rollback, record
)

// Options are one pass's.
type Options struct {
	Mode    Mode
	Trigger reconcile.Trigger // recorded in the history
	// Commit, when set, is deployed or checked instead of the pin's commit
	// (validate --commit).
	Commit string
	// NoRollback leaves a release that fails its gate running, for an
	// operator to inspect; it is still recorded as failed and quarantined.
	NoRollback bool
	// ID is the pass id on every log line; "" makes one.
	ID string
	// Head is the branch head last seen, recorded by a manual rollback
	// (which does not ask git).
	Head string
	// Log, when set, replaces the Pipeline's logger for this pass.
	Log *zerolog.Logger
	// ForceWindow applies a new release while its deploy windows are
	// closed (`lockstep apply --force-window`, an emergency); recorded.
	ForceWindow bool
}

// Result is what one pass found and did.
type Result struct {
	Environment string `json:"environment"`
	Project     string `json:"project"`
	Head        string `json:"head"`   // branch head the pin was read at
	Commit      string `json:"commit"` // the resolved revision (what runs, when Held)
	ReleaseDir  string `json:"release_dir"`
	Paused      bool   `json:"paused,omitempty"`
	// Held is the release that is pending and not applied, and why:
	// paused in its pin file, or waiting for its deploy window. Commit,
	// Plan and the rest are then about what runs (or, with nothing
	// running, about the pending release, applying nothing).
	Held *Held `json:"held,omitempty"`
	// ForceWindow: the release was applied while its deploy window was
	// closed (Options.ForceWindow).
	ForceWindow bool `json:"force_window,omitempty"`
	// Plan is what the pass planned (nil when it stopped before).
	Plan    *reconcile.Plan        `json:"plan,omitempty"`
	Applied *reconcile.ApplyResult `json:"applied,omitempty"`
	// Healthy: the revision passed the health gate, or the host was found
	// converged and healthy; it is recorded as the newest healthy one.
	Healthy bool `json:"healthy,omitempty"`
	// Swarm is a swarm environment's swarm as observed (nil for a host's).
	Swarm *reconcile.SwarmStatus `json:"swarm,omitempty"`
	// Policy lists the release's deploy policy violations.
	Policy []string `json:"policy,omitempty"`
	// ComposeWarnings are the keys of the release's compose files ignored
	// as Docker Compose ignores them on a single host (compose.Warning),
	// each naming its file, line, service and key.
	ComposeWarnings []string `json:"compose_warnings,omitempty"`
	// Signatures says who signed the commits [repo.verify] checked.
	Signatures []string `json:"signatures,omitempty"`
	// Quarantined is set when the pinned commit is held back: nothing was
	// applied (plan only notes it).
	Quarantined *state.Quarantine `json:"quarantined,omitempty"`
	// RolledBackTo is the healthy commit applied again after the pinned
	// one failed its gate.
	RolledBackTo string `json:"rolled_back_to,omitempty"`
	// Unhealthy says which service failed the health gate and why, when
	// the release did.
	Unhealthy string `json:"unhealthy,omitempty"`
	// Record is what an apply recorded in the history.
	Record *reconcile.PassRecord `json:"-"`
	// Events are what people should hear about (notifications).
	Events []reconcile.Event `json:"-"`
	// Previous is the commit that ran before the pass (the deployment
	// record), "" when unknown.
	Previous string `json:"-"`
}

func (p *Pipeline) now() time.Time {
	if p.Clock != nil {
		return p.Clock.Now()
	}
	return time.Now()
}

// passContext is one pass's context (see Pipeline.PassContext).
func (p *Pipeline) passContext(parent context.Context) (context.Context, context.CancelFunc) {
	if p.PassContext != nil {
		return p.PassContext(parent)
	}
	return context.WithTimeout(parent, DefaultPassTimeout)
}

// gateOptions are the Pipeline's gate options with env's overrides.
func (p *Pipeline) gateOptions(env Environment) reconcile.GateOptions {
	g := p.Gate
	if env.HealthTimeout > 0 {
		g.Timeout = env.HealthTimeout
	}
	if env.Bake > 0 {
		g.Bake = env.Bake
	}
	return g.WithDefaults()
}

// NewID is a short pass id that sorts by time: milliseconds in base 36
// and four random bytes.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return strconv.FormatInt(now.UnixMilli(), 36) + hex.EncodeToString(b[:])
}
