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
	reasonNotLockstep      = "not created by lockstep (no lockstep.hash label)"
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

	p.Actions = append(p.Actions, planPulls(desired, observed)...)
	nets, warns := planNetworks(desired, observed)
	p.Actions = append(p.Actions, nets...)
	p.Warnings = append(p.Warnings, warns...)
	vols, warns := planVolumes(desired, observed)
	p.Actions = append(p.Actions, vols...)
	p.Warnings = append(p.Warnings, warns...)

	sp := planServices(desired, observed, last)
	p.Actions = append(p.Actions, sp.early...)
	p.Actions = append(p.Actions, sp.services...)
	p.Actions = append(p.Actions, sp.scaleDown...)
	p.Warnings = append(p.Warnings, sp.warnings...)
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
}

func planServices(desired *compose.Project, observed compose.Observed, last *Deployed) servicePlan {
	var sp servicePlan

	// Sort a copy: the plan must not depend on the order the engine listed
	// containers in.
	containers := append([]compose.Container(nil), observed.Containers...)
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
	byService := map[string][]compose.Container{}
	for _, c := range containers {
		byService[c.Service] = append(byService[c.Service], c)
	}

	for _, c := range containers {
		svc := desired.Service(c.Service)
		switch {
		case c.Service == "":
			sp.early = append(sp.early, removeAction(c, fmt.Sprintf("container has the project label but no %s label", compose.LabelService)))
		case svc == nil:
			sp.early = append(sp.early, removeAction(c, fmt.Sprintf("service %q removed from the compose files", c.Service)))
		case svc.Replicas <= 0:
			sp.early = append(sp.early, removeAction(c, "scaled down to 0"))
		}
	}

	// deployedHere says the project already ran this very revision, so a
	// container missing now was removed outside lockstep rather than added
	// by the revision.
	deployedHere := false
	for _, c := range containers {
		if desired.Commit != "" && c.Commit == desired.Commit {
			deployedHere = true
			break
		}
	}
	completedDeps := completedDependencies(desired)
	replaced := map[string]bool{} // services with a created or recreated replica, for restart: true

	for i := range desired.Services {
		svc := &desired.Services[i]
		if svc.Replicas <= 0 {
			continue
		}
		own := byService[svc.Name]
		byNumber := map[int][]compose.Container{}
		for _, c := range own {
			byNumber[c.Number] = append(byNumber[c.Number], c)
		}
		for _, c := range own {
			if c.Number <= 0 {
				sp.early = append(sp.early, removeAction(c, fmt.Sprintf("no valid %s label", compose.LabelContainerNumber)))
			}
		}

		var idle []compose.Container // replicas left untouched, candidates for restart: true
		startFirstRefused := false
		for n := 1; n <= svc.Replicas; n++ {
			name := svc.ContainerNameFor(desired.Name, n)
			matches := byNumber[n]
			if len(matches) == 0 {
				a := Action{Kind: ActCreate, Service: svc.Name, Number: n, Container: name, Image: svc.Image}
				switch {
				case last != nil && last.Replicas[svc.Name] >= n:
					a.Reasons, a.Drift = []string{reasonContainerMissing}, true
				case last != nil:
					a.Reasons = []string{reasonNewReplica}
					if len(own) == 0 && last.Replicas[svc.Name] == 0 {
						a.Reasons = []string{reasonNewService}
					}
				case deployedHere:
					a.Reasons, a.Drift = []string{reasonContainerMissing}, true
				case len(own) == 0:
					a.Reasons = []string{reasonNewService}
				default:
					a.Reasons = []string{reasonNewReplica}
				}
				sp.services = append(sp.services, a)
				replaced[svc.Name] = true
				continue
			}
			keep := bestContainer(matches, svc, name)
			for _, c := range matches {
				if c.ID != keep.ID {
					sp.early = append(sp.early, removeAction(c, fmt.Sprintf("duplicate container for replica %d (left by an interrupted apply)", n)))
				}
			}
			if reasons, drift := recreateReasons(desired, observed, svc, keep, name); len(reasons) > 0 {
				order := svc.UpdateOrder
				if order != compose.StartFirst {
					order = compose.StopFirst
				} else if why := startFirstImpossible(svc); why != "" {
					order = compose.StopFirst
					if !startFirstRefused {
						startFirstRefused = true
						sp.warnings = append(sp.warnings, fmt.Sprintf(
							"service %s: update_config.order start-first is not possible because %s; it is recreated stop-first (brief downtime)",
							svc.Name, why))
					}
				}
				sp.services = append(sp.services, Action{
					Kind: ActRecreate, Service: svc.Name, Number: n, Container: name,
					ContainerID: keep.ID, Image: svc.Image, Order: order, Reasons: reasons, Drift: drift,
				})
				replaced[svc.Name] = true
				continue
			}
			if a, ok := startAction(svc, keep, name, completedDeps[svc.Name]); ok {
				sp.services = append(sp.services, a)
				continue
			}
			if keep.State == "paused" {
				sp.warnings = append(sp.warnings, fmt.Sprintf(
					"container %s (service %s) is paused; lockstep does not unpause containers: run docker unpause %s",
					keep.Name, svc.Name, keep.Name))
				continue
			}
			if keep.State == "running" || keep.State == "restarting" {
				idle = append(idle, keep)
			}
		}

		if len(idle) > 0 {
			if deps := restartedBy(svc, replaced); len(deps) > 0 {
				reason := fmt.Sprintf("dependency %s is replaced (restart: true)", strings.Join(deps, ", "))
				for _, c := range idle {
					sp.services = append(sp.services, Action{
						Kind: ActRestart, Service: svc.Name, Number: c.Number, Container: c.Name,
						ContainerID: c.ID, Reasons: []string{reason},
					})
				}
			}
		}

		// Scale-down: highest numbers first, so a later scale-up reuses the
		// low numbers and the names stay compact.
		for j := len(own) - 1; j >= 0; j-- {
			if c := own[j]; c.Number > svc.Replicas {
				sp.scaleDown = append(sp.scaleDown, removeAction(c, fmt.Sprintf("scaled down to %d", svc.Replicas)))
			}
		}
	}
	return sp
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

// tempName matches the temporary name a recreate gives the new container
// ("<old id 12>_<name>") until it renames it.
var tempName = regexp.MustCompile(`^[0-9a-f]{12}_`)

// recreateReasons says why c must be replaced, or nothing when it is right.
// drift is true when the difference was made outside lockstep.
func recreateReasons(desired *compose.Project, observed compose.Observed, svc *compose.Service, c compose.Container, name string) (reasons []string, drift bool) {
	hashDiffers := c.Hash != svc.Hash
	explained := false
	if c.Hash == "" {
		reasons = append(reasons, reasonNotLockstep)
		explained, drift = true, true
	}
	if c.Image != svc.Image {
		reasons = append(reasons, fmt.Sprintf("image %s -> %s", c.Image, svc.Image))
		explained = true
	} else if want, ok := observed.Images[svc.Image]; ok && want != "" && c.ImageID != "" && want != c.ImageID {
		// Not a hash difference: the tag now names another image.
		reasons = append(reasons, fmt.Sprintf("image %s updated (%s -> %s)", svc.Image, shortID(c.ImageID), shortID(want)))
	}
	if hashDiffers {
		if c.ConfigHash != svc.ConfigHash {
			reasons = append(reasons, fmt.Sprintf("configuration changed (config-hash %s -> %s)", short(c.ConfigHash), short(svc.ConfigHash)))
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
		if tempName.MatchString(c.Name) && c.Name[13:] == name {
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
