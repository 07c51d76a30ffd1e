package reconcile

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Reasons that more than one rule (or a test) must spell the same way.
const (
	reasonNewService       = "new service"
	reasonNewReplica       = "new replica"
	reasonContainerMissing = "container missing"
	reasonEffective        = "effective configuration changed"
	reasonNotPresent       = "not present locally"
	reasonPullAlways       = "pull_policy is always"
	reasonNetworkMissing   = "network does not exist"
	reasonVolumeMissing    = "volume does not exist"
)

// BuildPlan compares the desired project with what the engine has and
// returns the actions that make the engine match, in the order Apply
// performs them. It is pure: no I/O, and the same inputs always give an
// identical plan.
func BuildPlan(desired *compose.Project, observed compose.Observed) *Plan {
	return BuildPlanSince(desired, observed, nil)
}

// BuildPlanSince is BuildPlan knowing what the last successful apply of the
// environment deployed (nil when unknown). With it, a missing container is
// told apart exactly: a replica the last apply ran is drift ("container
// missing"), one it did not run is new in this revision.
func BuildPlanSince(desired *compose.Project, observed compose.Observed, last *Deployed) *Plan {
	p := &Plan{
		Environment: desired.Environment,
		Project:     desired.Name,
		Commit:      desired.Commit,
		Actions:     []Action{},
	}
	p.Warnings = append(p.Warnings, preconditionProblems(desired, observed)...)

	// Services are planned first: whether networks and volumes are
	// reported as adopted depends on whether containers are.
	sp := planServices(desired, observed, last)
	p.Actions = append(p.Actions, planPulls(desired, observed)...)
	nets, warns := planNetworks(desired, observed, sp.adopting)
	p.Actions = append(p.Actions, nets...)
	p.Warnings = append(p.Warnings, warns...)
	vols, warns := planVolumes(desired, observed, sp.adopting)
	p.Actions = append(p.Actions, vols...)
	p.Warnings = append(p.Warnings, warns...)

	p.Actions = append(p.Actions, sp.early...)
	p.Actions = append(p.Actions, sp.services...)
	p.Actions = append(p.Actions, sp.scaleDown...)
	p.Warnings = append(p.Warnings, sp.warnings...)
	p.Warnings = append(p.Warnings, portProblems(desired, observed, p.Actions)...)
	if len(p.Warnings) == 0 {
		p.Warnings = nil
	}
	return p
}

// servicePlan is the container part of a plan, in its three apply phases.
type servicePlan struct {
	early     []Action // orphans and duplicates: removed before anything is created, freeing names and ports
	services  []Action // per service, in dependency order
	scaleDown []Action
	warnings  []string
	adopting  bool // the plan takes containers over from Docker Compose
}

// planServices plans the containers: first the removals that free names and
// ports (containers of no service, of a service scaled to 0), then each
// desired service in dependency order. It works from a sorted copy of the
// containers so the plan does not depend on the order the engine listed them
// in.
func planServices(desired *compose.Project, observed compose.Observed, last *Deployed) servicePlan {
	containers := sortedContainers(observed.Containers)
	p := &servicePlanner{
		desired:       desired,
		observed:      observed,
		last:          last,
		byService:     map[string][]compose.Container{},
		deployedHere:  ranRevision(desired, containers),
		completedDeps: completedDependencies(desired),
		replaced:      map[string]bool{},
	}
	for _, c := range containers {
		p.byService[c.Service] = append(p.byService[c.Service], c)
	}
	p.sp.early = orphanRemovals(desired, containers)
	for i := range desired.Services {
		if svc := &desired.Services[i]; svc.Replicas > 0 {
			p.planService(svc)
		}
	}
	p.sp.adopting = p.adopting
	return p.sp
}

// servicePlanner is what planning one service reads from the whole project,
// and the plan the services add to in turn. replaced is filled as services
// are planned in dependency order, so a service sees which of its
// dependencies this plan replaces (for restart: true).
type servicePlanner struct {
	desired       *compose.Project
	observed      compose.Observed
	last          *Deployed
	byService     map[string][]compose.Container // sorted, as sortedContainers
	deployedHere  bool
	completedDeps map[string]bool
	replaced      map[string]bool // services with a created or recreated replica
	adopting      bool            // a container without lockstep.hash is adopted or recreated
	sp            servicePlan
}

// sortedContainers sorts a copy of the engine's containers by service,
// replica number, name and ID, so the plan is the same whatever order the
// engine listed them in.
func sortedContainers(observed []compose.Container) []compose.Container {
	containers := append([]compose.Container(nil), observed...)
	sort.SliceStable(containers, func(i, j int) bool {
		a, b := containers[i], containers[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Number != b.Number {
			return a.Number < b.Number
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	return containers
}

// orphanRemovals lists the containers no desired replica can claim (no
// service label, a service gone from the compose files, a service scaled to
// 0): they are removed before anything is created, freeing names and ports.
func orphanRemovals(desired *compose.Project, containers []compose.Container) []Action {
	var acts []Action
	for _, c := range containers {
		svc := desired.Service(c.Service)
		switch {
		case c.Service == "":
			acts = append(acts, removeAction(c, fmt.Sprintf("container has the project label but no %s label", compose.LabelService)))
		case svc == nil:
			acts = append(acts, removeAction(c, fmt.Sprintf("service %q removed from the compose files", c.Service)))
		case svc.Replicas <= 0:
			acts = append(acts, removeAction(c, "scaled down to 0"))
		}
	}
	return acts
}

// ranRevision says the project already ran this very revision, so a
// container missing now was removed outside lockstep rather than added by
// the revision.
func ranRevision(desired *compose.Project, containers []compose.Container) bool {
	for _, c := range containers {
		if desired.Commit != "" && c.Commit == desired.Commit {
			return true
		}
	}
	return false
}

// planService plans one service that runs: each replica 1..Replicas in
// order, then the restarts its restart: true dependencies call for, then
// its scale-down. The restarts come after the replicas because only
// replicas left untouched are restarted; a replaced one starts fresh anyway.
func (p *servicePlanner) planService(svc *compose.Service) {
	own := p.byService[svc.Name]
	byNumber := map[int][]compose.Container{}
	for _, c := range own {
		byNumber[c.Number] = append(byNumber[c.Number], c)
	}
	for _, c := range own {
		if c.Number <= 0 {
			p.sp.early = append(p.sp.early, removeAction(c, fmt.Sprintf("no valid %s label", compose.LabelContainerNumber)))
		}
	}

	var idle []compose.Container // replicas left untouched, candidates for restart: true
	startFirstRefused := false   // warn once per service, not once per replica
	for n := 1; n <= svc.Replicas; n++ {
		name := svc.ContainerNameFor(p.desired.Name, n)
		matches := byNumber[n]
		if len(matches) == 0 {
			p.sp.services = append(p.sp.services, p.createAction(svc, n, name, len(own) == 0))
			p.replaced[svc.Name] = true
			continue
		}
		keep := p.keepOne(matches, svc, n, name)
		if keep.Hash == "" {
			// Not created by lockstep: Docker Compose made it (a project
			// lockstep takes over) or an older tool did.
			if p.planAdoption(svc, keep, n, name) {
				p.replaced[svc.Name] = true
				continue
			}
		} else if reasons, drift := recreateReasons(p.desired, p.observed, svc, keep, name); len(reasons) > 0 {
			a, why := recreateAction(svc, keep, n, name, reasons, drift)
			if why != "" && !startFirstRefused {
				startFirstRefused = true
				p.sp.warnings = append(p.sp.warnings, fmt.Sprintf(
					"service %s: update_config.order start-first is not possible because %s; it is recreated stop-first (brief downtime)",
					svc.Name, why))
			}
			p.sp.services = append(p.sp.services, a)
			p.replaced[svc.Name] = true
			continue
		}
		if p.planRightReplica(svc, keep, name) {
			idle = append(idle, keep)
		}
	}
	p.planRestarts(svc, idle)
	p.planScaleDown(svc, own)
}

// createAction plans creating replica n, which has no container. Why it is
// missing decides whether it is drift: the last apply's record is exact;
// without one, a project that already ran this revision lost it by hand.
func (p *servicePlanner) createAction(svc *compose.Service, n int, name string, noneRun bool) Action {
	a := Action{Kind: ActCreate, Service: svc.Name, Number: n, Container: name, Image: svc.Image}
	switch {
	case p.last != nil && p.last.Replicas[svc.Name] >= n:
		a.Reasons, a.Drift = []string{reasonContainerMissing}, true
	case p.last != nil:
		a.Reasons = []string{reasonNewReplica}
		if noneRun && p.last.Replicas[svc.Name] == 0 {
			a.Reasons = []string{reasonNewService}
		}
	case p.deployedHere:
		a.Reasons, a.Drift = []string{reasonContainerMissing}, true
	case noneRun:
		a.Reasons = []string{reasonNewService}
	default:
		a.Reasons = []string{reasonNewReplica}
	}
	return a
}

// keepOne picks the container replica n keeps among those claiming it and
// plans removing the others early: an interrupted apply can leave two, and
// only one may hold the name.
func (p *servicePlanner) keepOne(matches []compose.Container, svc *compose.Service, n int, name string) compose.Container {
	keep := bestContainer(matches, svc, name)
	for _, c := range matches {
		if c.ID != keep.ID {
			p.sp.early = append(p.sp.early, removeAction(c, fmt.Sprintf("duplicate container for replica %d (left by an interrupted apply)", n)))
		}
	}
	return keep
}

// recreateAction plans replacing keep. It returns, besides the action, why
// the start-first order the service asks for cannot be used (or ""), so
// the caller can warn once per service rather than once per replica.
func recreateAction(svc *compose.Service, keep compose.Container, n int, name string, reasons []string, drift bool) (Action, string) {
	order, why := svc.UpdateOrder, ""
	if order != compose.StartFirst {
		order = compose.StopFirst
	} else if why = startFirstImpossible(svc); why != "" {
		order = compose.StopFirst
	}
	return Action{
		Kind: ActRecreate, Service: svc.Name, Number: n, Container: name,
		ContainerID: keep.ID, Image: svc.Image, Order: order, Reasons: reasons, Drift: drift,
	}, why
}

// planRightReplica plans a replica whose container needs no replacing:
// reconnect it if its networks drifted, start it if stopped, warn if
// paused. It says whether the replica is left running (a reconnect does
// not restart it), which makes it a candidate for restart: true.
func (p *servicePlanner) planRightReplica(svc *compose.Service, keep compose.Container, name string) (idle bool) {
	// Before a start: a stopped container whose network was re-created
	// would not start on the endpoint of the old one.
	if a, ok := reconnectAction(p.desired, p.observed, svc, keep, name); ok {
		p.sp.services = append(p.sp.services, a)
	}
	if a, ok := startAction(svc, keep, name, p.completedDeps[svc.Name]); ok {
		p.sp.services = append(p.sp.services, a)
		return false
	}
	if keep.State == "paused" {
		p.sp.warnings = append(p.sp.warnings, fmt.Sprintf(
			"container %s (service %s) is paused; lockstep does not unpause containers: run docker unpause %s",
			keep.Name, svc.Name, keep.Name))
		return false
	}
	return keep.State == "running" || keep.State == "restarting"
}

// planRestarts restarts the idle replicas of svc when this plan replaces a
// dependency it declares with restart: true, as compose does, so they
// reconnect to the new one.
func (p *servicePlanner) planRestarts(svc *compose.Service, idle []compose.Container) {
	if len(idle) == 0 {
		return
	}
	deps := restartedBy(svc, p.replaced)
	if len(deps) == 0 {
		return
	}
	reason := fmt.Sprintf("dependency %s is replaced (restart: true)", strings.Join(deps, ", "))
	for _, c := range idle {
		p.sp.services = append(p.sp.services, Action{
			Kind: ActRestart, Service: svc.Name, Number: c.Number, Container: c.Name,
			ContainerID: c.ID, Reasons: []string{reason},
		})
	}
}

// planScaleDown removes the replicas above the desired count, highest
// numbers first, so a later scale-up reuses the low numbers and the names
// stay compact.
func (p *servicePlanner) planScaleDown(svc *compose.Service, own []compose.Container) {
	for j := len(own) - 1; j >= 0; j-- {
		if c := own[j]; c.Number > svc.Replicas {
			p.sp.scaleDown = append(p.sp.scaleDown, removeAction(c, fmt.Sprintf("scaled down to %d", svc.Replicas)))
		}
	}
}

func removeAction(c compose.Container, reason string) Action {
	return Action{
		Kind: ActRemove, Service: c.Service, Number: c.Number, Container: c.Name,
		ContainerID: c.ID, Reasons: []string{reason},
	}
}

// bestContainer picks, among several containers claiming one replica, the
// one to keep: the one with the desired hash, then a running one, then the
// one with the proper name; ties go to the lowest ID so the choice is stable.
func bestContainer(cs []compose.Container, svc *compose.Service, name string) compose.Container {
	score := func(c compose.Container) int {
		s := 0
		if c.Hash == svc.Hash {
			s += 4
		}
		if c.State == "running" {
			s += 2
		}
		if c.Name == name {
			s++
		}
		return s
	}
	best := cs[0]
	for _, c := range cs[1:] {
		if sc, sb := score(c), score(best); sc > sb || (sc == sb && c.ID < best.ID) {
			best = c
		}
	}
	return best
}

// tempName matches the temporary names a recreate gives the new container
// ("<old id 12>_<name>") until it renames it, and the old one
// ("<old id 12>_previous_<name>") until the new one has started.
var tempName = regexp.MustCompile(`^[0-9a-f]{12}_`)

// configReason says how c's configuration differs from svc's, or "".
// lockstep's spec hash is compared when both sides have one: Compose's
// config-hash holds absolute release paths, so it differs at every commit
// that moves the release directory even when nothing else changed. A
// container of a lockstep before the spec hash held it in config-hash.
func configReason(svc *compose.Service, c compose.Container) string {
	have := c.SpecHash
	if have == "" && c.Hash != "" {
		have = c.ConfigHash
	}
	if svc.SpecHash != "" && have != "" {
		if have == svc.SpecHash {
			return ""
		}
		return fmt.Sprintf("configuration changed (spec-hash %s -> %s)", short(have), short(svc.SpecHash))
	}
	if c.ConfigHash != svc.ConfigHash {
		return fmt.Sprintf("configuration changed (config-hash %s -> %s)", short(c.ConfigHash), short(svc.ConfigHash))
	}
	return ""
}

// recreateReasons says why c must be replaced, or nothing when it is right.
// drift is true when the difference was made outside lockstep.
func recreateReasons(desired *compose.Project, observed compose.Observed, svc *compose.Service, c compose.Container, name string) (reasons []string, drift bool) {
	hashDiffers := c.Hash != svc.Hash
	explained := false
	if c.Image != svc.Image {
		reasons = append(reasons, fmt.Sprintf("image %s -> %s", c.Image, svc.Image))
		explained = true
	} else if want, ok := observed.Images[svc.Image]; ok && want != "" && c.ImageID != "" && want != c.ImageID {
		// Not a hash difference: the tag now names another image.
		reasons = append(reasons, fmt.Sprintf("image %s updated (%s -> %s)", svc.Image, shortID(c.ImageID), shortID(want)))
	}
	if hashDiffers {
		if r := configReason(svc, c); r != "" {
			reasons = append(reasons, r)
			explained = true
		}
		if fr := fileReasons(svc, c); len(fr) > 0 {
			reasons = append(reasons, fr...)
			explained = true
		}
		if !explained {
			reasons = append(reasons, reasonEffective)
		}
		if desired.Commit != "" && c.Commit == desired.Commit {
			// Same revision, other configuration: changed by hand.
			drift = true
		}
	}
	if c.Name != name {
		if tempName.MatchString(c.Name) && (c.Name[13:] == name || c.Name[13:] == "previous_"+name) {
			reasons = append(reasons, fmt.Sprintf("container name %s, want %s (left by an interrupted apply)", c.Name, name))
		} else {
			reasons = append(reasons, fmt.Sprintf("container name %s, want %s", c.Name, name))
			drift = true
		}
	}
	if c.State == "dead" && len(reasons) == 0 {
		reasons = append(reasons, "container is dead")
		drift = true
	}
	if len(reasons) == 0 {
		drift = false
	}
	return reasons, drift
}

// isKeyedDigest says whether d is the keyed digest of an encrypted file's
// plaintext (compose's "hmac-sha256:<hex>").
func isKeyedDigest(d string) bool { return strings.HasPrefix(d, "hmac-sha256:") }

// digestHex is the first 12 hex digits of a "<algorithm>:<hex>" digest.
func digestHex(d string) string {
	_, hex, _ := strings.Cut(d, ":")
	return short(hex)
}

func fileReasons(svc *compose.Service, c compose.Container) []string {
	if c.PriorFiles == nil {
		return nil
	}
	var out []string
	used := map[string]bool{}
	for _, f := range svc.Files {
		used[f.Path] = true
		prior, ok := c.PriorFiles[f.Path]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("file %s added", f.Path))
		case prior != f.Digest && isKeyedDigest(f.Digest) && isKeyedDigest(prior):
			// An encrypted file: its value is never shown, its keyed
			// digest is, so an operator can tell one rotation from another.
			out = append(out, fmt.Sprintf("file %s changed (value %s -> %s)", f.Path, digestHex(prior), digestHex(f.Digest)))
		case prior != f.Digest:
			out = append(out, fmt.Sprintf("file %s changed", f.Path))
		}
	}
	var gone []string
	for path := range c.PriorFiles {
		if !used[path] {
			gone = append(gone, path)
		}
	}
	sort.Strings(gone)
	for _, path := range gone {
		out = append(out, fmt.Sprintf("file %s no longer used", path))
	}
	return out
}

// startAction plans starting a replica that is right but not running. A
// one-shot dependency that exited 0 has done its job and stays as it is.
func startAction(svc *compose.Service, c compose.Container, name string, oneShot bool) (Action, bool) {
	a := Action{Kind: ActStart, Service: svc.Name, Number: c.Number, Container: name, ContainerID: c.ID}
	switch c.State {
	case "exited":
		if oneShot && c.ExitCode == 0 {
			return Action{}, false
		}
		a.Reasons, a.Drift = []string{fmt.Sprintf("container stopped (exited %d)", c.ExitCode)}, true
	case "created":
		a.Reasons = []string{"container created but never started"}
	default:
		return Action{}, false
	}
	return a, true
}

// completedDependencies lists the services another service waits on with
// service_completed_successfully: one-shot jobs. The dependent's scale does
// not matter; the declaration is what says the job is meant to finish.
func completedDependencies(desired *compose.Project) map[string]bool {
	out := map[string]bool{}
	for _, s := range desired.Services {
		for _, d := range s.DependsOn {
			if d.Condition == compose.ConditionCompleted {
				out[d.Service] = true
			}
		}
	}
	return out
}

// restartedBy lists the dependencies of svc declared with restart: true
// that this plan replaces.
func restartedBy(svc *compose.Service, replaced map[string]bool) []string {
	var deps []string
	for _, d := range svc.DependsOn {
		if d.Restart && replaced[d.Service] {
			deps = append(deps, d.Service)
		}
	}
	return deps
}

// startFirstImpossible says why the new container cannot run beside the old
// one, or "" when it can.
func startFirstImpossible(svc *compose.Service) string {
	switch {
	case svc.PublishesPorts:
		return "it publishes host ports (the new container could not bind them while the old one runs)"
	case svc.ContainerName != "":
		return fmt.Sprintf("it sets container_name %q (two containers cannot share the name)", svc.ContainerName)
	}
	return ""
}

// short abbreviates a hash to 12 characters for people to read.
func short(h string) string {
	if h == "" {
		return "none"
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// shortID abbreviates an image ID ("sha256:<hex>") the way docker prints it.
func shortID(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	return short(id)
}
