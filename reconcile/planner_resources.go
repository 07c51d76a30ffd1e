package reconcile

import (
	"fmt"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
)

// preconditionProblems lists what makes Apply refuse to start: an external
// network or volume that does not exist, a network that exists under a
// project network's name but is not that network, or an image that is
// missing while every service using it says pull_policy: never. BuildPlan
// reports them as warnings and Apply checks the very same list before any
// mutating call, so the plan and the refusal can never disagree.
func preconditionProblems(desired *compose.Project, observed compose.Observed) []string {
	var problems []string
	for _, n := range desired.Networks {
		on := findNetwork(observed, n.Name)
		switch {
		case n.External && on == nil:
			problems = append(problems, fmt.Sprintf(
				"external network %q (networks.%s) does not exist: create it (docker network create %s) or drop external: true; apply refuses to start without it",
				n.Name, n.Key, n.Name))
		case !n.External && on != nil && foreignNetwork(n, on):
			problems = append(problems, fmt.Sprintf(
				"network %q (networks.%s) was found but has incorrect label %s set to %q (expected %q): it was not created by Docker Compose or lockstep for this network; mark it external: true to use it as it is, or remove it (docker network rm %s) once no container uses it and the next pass creates it; apply refuses to start while it is there",
				n.Name, n.Key, compose.LabelNetwork, on.Labels[compose.LabelNetwork], n.Key, n.Name))
		}
	}
	for _, v := range desired.Volumes {
		if v.External && findVolume(observed, v.Name) == nil {
			problems = append(problems, fmt.Sprintf(
				"external volume %q (volumes.%s) does not exist: create it (docker volume create %s) or drop external: true; apply refuses to start without it",
				v.Name, v.Key, v.Name))
		}
	}
	for _, img := range desiredImages(desired) {
		if img.policy != compose.PullNever {
			continue
		}
		if _, ok := observed.Images[img.ref]; ok {
			continue
		}
		problems = append(problems, fmt.Sprintf(
			"image %s is not present and pull_policy is never (services: %s): load it on the host (docker pull / docker load) or change pull_policy; apply refuses to start without it",
			img.ref, strings.Join(img.services, ", ")))
	}
	return problems
}

// imageUse is one distinct image of the desired services that run, with the
// strongest pull policy any of them asks for (always > missing > never).
type imageUse struct {
	ref      string
	policy   string
	services []string
}

func desiredImages(desired *compose.Project) []imageUse {
	var uses []imageUse
	index := map[string]int{}
	for _, s := range desired.Services {
		if s.Replicas <= 0 || s.Image == "" {
			continue
		}
		i, ok := index[s.Image]
		if !ok {
			index[s.Image] = len(uses)
			uses = append(uses, imageUse{ref: s.Image, policy: compose.PullNever})
			i = len(uses) - 1
		}
		u := &uses[i]
		u.services = append(u.services, s.Name)
		if pullStrength(s.PullPolicy) > pullStrength(u.policy) {
			u.policy = normalPull(s.PullPolicy)
		}
	}
	return uses
}

// normalPull treats an empty policy as the compose default.
func normalPull(policy string) string {
	if policy == "" {
		return compose.PullMissing
	}
	return policy
}

func pullStrength(policy string) int {
	switch normalPull(policy) {
	case compose.PullAlways:
		return 2
	case compose.PullMissing:
		return 1
	default:
		return 0
	}
}

func planPulls(desired *compose.Project, observed compose.Observed) []Action {
	var acts []Action
	for _, img := range desiredImages(desired) {
		var reason string
		switch img.policy {
		case compose.PullAlways:
			reason = reasonPullAlways
		case compose.PullMissing:
			if _, ok := observed.Images[img.ref]; ok {
				continue
			}
			reason = reasonNotPresent
		default:
			continue
		}
		acts = append(acts, Action{
			Kind:    ActPull,
			Image:   img.ref,
			Reasons: []string{reason, "used by " + strings.Join(img.services, ", ")},
		})
	}
	return acts
}

// foreignNetwork reports whether the engine's network on, found under the
// name of the project network n, is some other network. Docker Compose
// decides it by the com.docker.compose.network label alone and refuses
// such a network (a network of another project that carries the right
// key is used, with a warning): lockstep does the same.
func foreignNetwork(n compose.Network, on *compose.ObservedNetwork) bool {
	return on.Labels[compose.LabelNetwork] != n.Key
}

func findNetwork(observed compose.Observed, name string) *compose.ObservedNetwork {
	for i := range observed.Networks {
		if observed.Networks[i].Name == name {
			return &observed.Networks[i]
		}
	}
	return nil
}

func findVolume(observed compose.Observed, name string) *compose.ObservedVolume {
	for i := range observed.Volumes {
		if observed.Volumes[i].Name == name {
			return &observed.Volumes[i]
		}
	}
	return nil
}

// planNetworks creates the missing project networks and warns about the
// ones that differ from the compose files (a network containers use is
// never recreated). A network Docker Compose created has no lockstep.hash:
// it is compared by Compose's own config-hash, or its settings, and is
// adopted silently when equal; adopting says to name it in the plan, on
// the pass that takes the project's containers over.
func planNetworks(desired *compose.Project, observed compose.Observed, adopting bool) ([]Action, []string) {
	var acts []Action
	var warns []string
	for _, n := range desired.Networks {
		on := findNetwork(observed, n.Name)
		switch {
		case n.External:
			// Missing: a precondition problem. Present: used as is.
		case on == nil:
			acts = append(acts, Action{Kind: ActCreateNetwork, Network: n.Name, Reasons: []string{reasonNetworkMissing}})
		case foreignNetwork(n, on):
			// A precondition problem: never adopted.
		case on.Labels[compose.LabelProject] != desired.Name:
			warns = append(warns, fmt.Sprintf(
				"network %q (networks.%s) exists but was not created for project %q (label %s=%q); lockstep uses it as it is: mark it external: true, or remove it (docker network rm %s) once no container uses it and the next pass creates it",
				n.Name, n.Key, desired.Name, compose.LabelProject, on.Labels[compose.LabelProject], n.Name))
		case on.Labels[compose.LabelHash] == "":
			diff := composeNetworkDiffers(n, *on)
			if len(diff) > 0 {
				warns = append(warns, networkDiffersWarning(desired, n, strings.Join(diff, ", ")))
			} else if adopting {
				acts = append(acts, Action{Kind: ActAdopt, Network: n.Name, Reasons: []string{reasonAdoptNetworkKept}, Adopt: true})
			}
		case on.Labels[compose.LabelHash] != n.Hash:
			warns = append(warns, networkDiffersWarning(desired, n,
				fmt.Sprintf("%s %s -> %s", compose.LabelHash, short(on.Labels[compose.LabelHash]), short(n.Hash))))
		}
	}
	return acts, warns
}

func networkDiffersWarning(desired *compose.Project, n compose.Network, why string) string {
	return fmt.Sprintf(
		"network %q (networks.%s) differs from the compose files (%s); lockstep does not recreate a network containers use: stop the project (docker compose -p %s down, volumes are kept) and the next pass recreates it",
		n.Name, n.Key, why, desired.Name)
}

// planVolumes creates the missing named volumes. One that exists is never
// recreated (it holds data): one of another project, or whose settings
// differ from the compose files, is warned about; one Docker Compose
// created with equal settings is named adopted on the takeover pass.
func planVolumes(desired *compose.Project, observed compose.Observed, adopting bool) ([]Action, []string) {
	var acts []Action
	var warns []string
	for _, v := range desired.Volumes {
		ov := findVolume(observed, v.Name)
		switch {
		case v.External:
		case ov == nil:
			acts = append(acts, Action{Kind: ActCreateVolume, Volume: v.Name, Reasons: []string{reasonVolumeMissing}})
		case ov.Labels[compose.LabelProject] != desired.Name:
			warns = append(warns, fmt.Sprintf(
				"volume %q (volumes.%s) exists but was not created for project %q; lockstep uses it as it is (its data is never removed): mark it external: true to say so",
				v.Name, v.Key, desired.Name))
		default:
			if diff := volumeDiffers(v, *ov); len(diff) > 0 {
				warns = append(warns, fmt.Sprintf(
					"volume %q (volumes.%s) differs from the compose files (%s); lockstep never recreates a volume (its data would be lost) and uses it as it is: to change it, back its data up, stop the project, remove it (docker volume rm %s) and the next pass creates it",
					v.Name, v.Key, strings.Join(diff, ", "), v.Name))
			} else if adopting {
				acts = append(acts, Action{Kind: ActAdopt, Volume: v.Name, Reasons: []string{reasonAdoptVolumeKept}, Adopt: true})
			}
		}
	}
	return acts, warns
}

// portProblems lists the fixed host ports that a container the plan
// starts would publish while something else holds them: a process on the
// host, a container of another project, or a container of this one that
// the plan leaves running. The engine would refuse to start it, after the
// old container had stopped; Apply refuses before anything is touched.
func portProblems(desired *compose.Project, observed compose.Observed, actions []Action) []string {
	freed := map[string]bool{} // containers the plan stops for good
	for _, act := range actions {
		if act.Kind == ActRemove || act.Kind == ActRecreate {
			freed[act.ContainerID] = true
		}
	}
	var problems []string
	seen := map[string]bool{}
	for _, act := range actions {
		switch act.Kind {
		case ActCreate, ActRecreate, ActStart, ActRestart:
		default:
			continue
		}
		svc := desired.Service(act.Service)
		if svc == nil {
			continue
		}
		for _, h := range svc.HostPorts() {
			for _, holder := range observed.PortHolders {
				if !h.Overlaps(holder.HostPort) || holder.ContainerID != "" && (holder.ContainerID == act.ContainerID || freed[holder.ContainerID]) {
					continue
				}
				msg := portProblem(desired.Name, svc.Name, h, holder)
				if !seen[msg] {
					seen[msg] = true
					problems = append(problems, msg)
				}
			}
		}
	}
	return problems
}

// portProblem says who holds a port service needs, and what to do.
func portProblem(project, service string, h compose.HostPort, holder compose.PortHolder) string {
	who := "a process on this host (not a container)"
	switch {
	case holder.ContainerID == "":
	case holder.Project == project:
		who = fmt.Sprintf("container %s of service %s, which keeps running", holder.ContainerName, holder.Service)
	case holder.Project != "":
		who = fmt.Sprintf("container %s of compose project %s", holder.ContainerName, holder.Project)
	default:
		who = fmt.Sprintf("container %s", holder.ContainerName)
	}
	return fmt.Sprintf("%s: host port %s is already in use by %s: free the port or publish another one (ports: of service %s); nothing was stopped",
		service, h, who, service)
}
