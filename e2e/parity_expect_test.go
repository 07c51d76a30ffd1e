package e2e

import (
	"regexp"
	"strings"
)

// This file is the parity suite's list of what may differ between Docker
// Compose's deploy of a stack and lockstep's, each with the reason. A
// difference not covered here fails TestComposeParity.

// endpointConfig matches the parts of a container's network endpoint that
// come from the compose file; the rest of NetworkSettings is runtime.
var endpointConfig = regexp.MustCompile(`^NetworkSettings\.Networks(\.[^.\[]+|\[[^\]]+\])\.(Aliases|IPAMConfig|Links|DriverOpts)(\[|\.|\{|$)`)

// containerIgnored says why a container field is left out of the
// comparison, or "" when it is compared.
func containerIgnored(path string) string {
	switch {
	case path == "Id":
		return "assigned by the engine at create"
	case path == "Created":
		return "the time of create"
	case path == "State" || strings.HasPrefix(path, "State."):
		return "runtime state: pid, start and finish times, the health probe log"
	case path == "RestartCount" || strings.HasPrefix(path, "ExecIDs"):
		return "runtime counters"
	case strings.HasPrefix(path, "GraphDriver."):
		return "the container's own copy-on-write layer directories"
	case strings.HasPrefix(path, "NetworkSettings.") && !endpointConfig.MatchString(path):
		return "runtime view of the networks (addresses, endpoint and sandbox IDs, the host ports the engine picked); " +
			"the configuration is compared in HostConfig and in each endpoint's Aliases, IPAMConfig, Links and DriverOpts"
	case strings.HasPrefix(path, "Config.Labels[lockstep."):
		return lockstepLabels
	case path == "Config.Labels[com.docker.compose.config-hash]":
		return "Compose hashes the service with absolute paths (binds, env_file), which are the project dir for one tool " +
			"and the release dir for the other; whether Compose agrees with lockstep's value is what takeover (a) measures, run in the release dir"
	}
	return ""
}

const lockstepLabels = "lockstep's own labels (environment, commit, hashes); Compose sets none"

// networkIgnored: the same for networks. autoSubnet is true when the stack
// sets no subnet for this network (as `docker compose config` resolves
// it), so the engine picks one from its pool.
func networkIgnored(path string, autoSubnet bool) string {
	switch {
	case path == "Id":
		return "assigned by the engine at create"
	case path == "Created":
		return "the time of create"
	case path == "Containers" || strings.HasPrefix(path, "Containers["):
		return "the containers attached and their addresses: runtime"
	case path == "Status" || strings.HasPrefix(path, "Status."):
		return "runtime: the addresses in use and left per subnet (engines from API 1.52 report it), keyed by the subnet the engine allocated"
	case strings.HasPrefix(path, "Labels[lockstep."):
		return lockstepLabels
	case autoSubnet && strings.HasPrefix(path, "IPAM.Config"):
		return "the stack sets no subnet for this network: the engine allocates one from its pool at create"
	}
	return ""
}

func volumeIgnored(path string) string {
	switch {
	case path == "CreatedAt":
		return "the time of create"
	case strings.HasPrefix(path, "Labels[lockstep."):
		return lockstepLabels
	}
	return ""
}

// expectedDiff documents a difference between the two deploys that must
// stay, and why. Stack "" applies to every stack.
type expectedDiff struct {
	stack, kind string
	path        *regexp.Regexp
	reason      string
}

var parityExpected = []expectedDiff{
	{"", "container", regexp.MustCompile(`^Config\.Labels\[com\.docker\.compose\.version\]$`), versionLabel},
	{"", "network", regexp.MustCompile(`^Labels\[com\.docker\.compose\.version\]$`), versionLabel},
	{"", "volume", regexp.MustCompile(`^Labels\[com\.docker\.compose\.version\]$`), versionLabel},
}

// versionLabel: com.docker.compose.version names the tool and version that
// created the object. lockstep writes its own ("lockstep v1.2.3 go1.26"),
// so `docker inspect` tells who made a container; Compose decides nothing
// by this label (it is not part of its config hash, and up -d does not
// read it).
const versionLabel = "com.docker.compose.version names the tool that created the object; lockstep writes its own version, and Compose decides nothing by this label"

// explain sets the Reason of the differences parityExpected documents.
func explain(stack string, diffs []parityDiff) {
	for i, d := range diffs {
		for _, e := range parityExpected {
			if (e.stack == "" || e.stack == stack) && e.kind == d.Kind && e.path.MatchString(d.Path) {
				diffs[i].Reason = e.reason
				break
			}
		}
	}
}

// parityRefusals are the stacks lockstep refuses on purpose, with the
// reason; the suite checks the refusal names it.
var parityRefusals = map[string]struct{ says, reason string }{
	"docker-cli-mac-address": {"needs Docker Engine API 1.44",
		"lockstep sets a service's mac_address on its primary network endpoint, which the engine honours from API 1.44; " +
			"on API 1.41 (Docker 20.10) it refuses rather than drop it, where Compose v5.6 sets the container-level MacAddress instead " +
			"(a gap, not a decision: the engine helper's \"newer API features without losing 1.41\")"},
}

// releaseBind is the one recreate takeover (b) expects: a container that
// binds a file or directory of Compose's project dir (a bind, a config or
// secret file:) must move to lockstep's release directory, because a
// release is immutable and a file under a running container never changes
// (design §4); the host project dir is the operator's working copy.
const releaseBind = "binds %s from the project dir; lockstep binds it from the immutable release"
