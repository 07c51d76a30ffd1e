package compose

import (
	"reflect"

	"github.com/compose-spec/compose-go/v2/types"
)

// What a swarm service does with each compose service key, where it
// differs from a single host (serviceKeys). docker stack deploy warns
// "Ignoring unsupported options" for many keys and deploys anyway; lockstep
// refuses those whose loss would silently change how the service runs
// (privileged, network_mode, a memory limit, ...), and warns, as a
// Project.Warnings entry that LoadOptions.Strict turns into a refusal, for
// those a swarm ignores harmlessly (depends_on, expose, ...).
//
// A key not listed here keeps its single-host rule: handled keys are
// converted (stackService), ignored ones ignored, refused ones refused.
var swarmKeys = map[string]swarmRule{
	// Swarm schedules and orders nothing by dependency.
	"depends_on":  {warn: "a swarm starts every service at once and does not order them by depends_on (docker stack deploy ignores it too); make each service wait for what it needs, or rely on its restart policy"},
	"expose":      {warn: "services on a shared overlay network reach each other on every port; expose has no effect in a swarm"},
	"platform":    {warn: "every node pulls the image for its own platform; to keep the service on one platform, add a deploy.placement.constraints entry such as node.platform.arch == x86_64"},
	"pull_policy": {warn: "the swarm's nodes pull the image lockstep pinned to a digest at deploy, whatever pull_policy says"},

	// Container settings a swarm task cannot have.
	"privileged":          {refuse: "a swarm service cannot run privileged (docker stack deploy ignores the key, so the service would run unprivileged); grant only the capabilities it needs with cap_add"},
	"devices":             {refuse: "a swarm service cannot map host devices (docker stack deploy ignores the key); run it with docker compose on the host that has the device"},
	"device_cgroup_rules": {refuse: "a swarm service cannot have device cgroup rules; remove them"},
	"network_mode":        {refuse: "a swarm service is attached to networks, not to a network mode (docker stack deploy ignores it); attach it to an overlay network, or declare the node's host network external: true and attach to it"},
	"container_name":      {refuse: "the swarm names a service's containers itself (<stack>_<service>.<slot>.<task>), so container_name would be lost; reach the service by its name on a shared network"},
	"external_links":      {refuse: "external_links is legacy linking, which a swarm does not do; put the services on a shared network"},
	"links":               {refuse: "links is legacy linking, which a swarm does not do; services on a shared network reach each other by service name, use networks.<net>.aliases for other names"},
	"pid":                 {refuse: "a swarm service cannot share a PID namespace (docker stack deploy ignores it); remove pid"},
	"ipc":                 {refuse: "a swarm service cannot share an IPC namespace (docker stack deploy ignores it); remove ipc"},
	"uts":                 {refuse: "a swarm service cannot share a UTS namespace; remove uts"},
	"cgroup":              {refuse: "a swarm service cannot choose its cgroup namespace (docker stack deploy ignores it); remove cgroup"},
	"cgroup_parent":       {refuse: "a swarm service cannot choose its cgroup parent (docker stack deploy ignores it); remove cgroup_parent"},
	"userns_mode":         {refuse: "a swarm service cannot choose its user namespace (docker stack deploy ignores it); remove userns_mode"},
	"mac_address":         {refuse: "the swarm addresses a service's tasks itself (docker stack deploy ignores mac_address); remove it"},
	"volumes_from":        {refuse: "a swarm service cannot mount another's volumes (docker stack deploy refuses it); share a named volume between the services"},
	"scale":               {refuse: "scale is not read by docker stack deploy; set deploy.replicas"},
	"domainname":          {refuse: "a swarm service has no domain name setting (docker stack deploy ignores it); remove domainname"},
	"shm_size":            {refuse: "a swarm service cannot size /dev/shm with shm_size (docker stack deploy ignores it); mount a tmpfs at /dev/shm with tmpfs.size instead"},
	"storage_opt":         {refuse: "a swarm service cannot set storage options; remove storage_opt"},
	"volume_driver":       {refuse: "docker stack deploy refuses volume_driver; set the driver on the top-level volume"},
	"runtime":             {refuse: "a swarm service cannot choose its runtime; set the engine's default runtime on the nodes, or remove runtime"},
	"annotations":         {refuse: "a swarm service cannot set container annotations; remove annotations"},
	"group_add":           {},
	"oom_kill_disable":    {refuse: "a swarm service cannot disable the OOM killer; remove oom_kill_disable"},
	"mem_swappiness":      {refuse: "a swarm service cannot set mem_swappiness; remove it"},
	"isolation":           {refuse: "isolation is Windows-only; remove it"},

	// Resources: a swarm service has deploy.resources only.
	"cpus":            {refuse: resourcesMsg},
	"cpu_shares":      {refuse: resourcesMsg},
	"cpu_quota":       {refuse: resourcesMsg},
	"cpu_period":      {refuse: resourcesMsg},
	"cpu_rt_period":   {refuse: resourcesMsg},
	"cpu_rt_runtime":  {refuse: resourcesMsg},
	"cpuset":          {refuse: resourcesMsg},
	"mem_limit":       {refuse: resourcesMsg},
	"mem_reservation": {refuse: resourcesMsg},
	"memswap_limit":   {refuse: resourcesMsg},
	"pids_limit":      {refuse: "a swarm service takes its PIDs limit from deploy.resources.limits.pids; move it there"},
}

// stackConverted are the single-host handled keys stackService converts
// into the swarm service spec (or that compose-go already applied).
// TestStackKeysCoverHandled fails when a key handled on a single host is
// neither here nor in swarmKeys, so that a key the single-host converter
// learns is not silently dropped from stacks.
var stackConverted = []string{
	"cap_add", "cap_drop", "command", "configs", "deploy", "dns", "dns_opt", "dns_search",
	"entrypoint", "env_file", "environment", "extra_hosts", "healthcheck", "hostname", "image",
	"init", "label_file", "labels", "log_driver", "log_opt", "logging", "name", "networks",
	"oom_score_adj", "ports", "profiles", "read_only", "restart", "secrets", "security_opt",
	"stdin_open", "stop_grace_period", "stop_signal", "sysctls", "tmpfs", "tty", "ulimits",
	"user", "volumes", "working_dir",
}

const resourcesMsg = "a swarm service takes its resources from deploy.resources (limits: cpus, memory, pids; reservations: cpus, memory) only (docker stack deploy ignores or refuses the service-level keys); move it there"

// swarmRule is what a swarm does with a key: refuse (with what to do) or
// warn (ignored, with why); both empty means handled.
type swarmRule struct {
	refuse, warn string
}

// stackKeys refuses the keys of s a swarm service cannot honour and warns
// for those it ignores (refused too with LoadOptions.Strict).
func (c *converter) stackKeys(s types.ServiceConfig) error {
	if s.Restart != "" && s.Deploy != nil && s.Deploy.RestartPolicy != nil {
		if err := c.ignore(s.Name, "restart", "deploy.restart_policy is set, and a swarm service has one restart policy: restart: is not used"); err != nil {
			return err
		}
	}
	var err error
	walkServiceFields(reflect.ValueOf(s), func(key string, v reflect.Value) {
		if err != nil || v.IsZero() {
			return
		}
		err = c.stackKey(s, key)
	})
	return err
}

func (c *converter) stackKey(s types.ServiceConfig, key string) error {
	if key == "scale" && c.written(s.Name, "scale") == 0 {
		return nil // compose-go copies deploy.replicas into it
	}
	if key == "isolation" && s.Isolation == "default" {
		return nil
	}
	rule, swarmOnly := swarmKeys[key]
	switch {
	case swarmOnly && rule.refuse != "":
		return located(c.src, s.Name, key, rule.refuse)
	case swarmOnly && rule.warn != "":
		if key == "pull_policy" {
			switch s.PullPolicy {
			case types.PullPolicyBuild:
				return located(c.src, s.Name, key, "pull_policy: build is not possible, lockstep does not build images; push the image in CI and reference it")
			case types.PullPolicyMissing, types.PullPolicyIfNotPresent:
				return nil // what a node does with a pinned digest
			}
		}
		return c.ignore(s.Name, key, rule.warn)
	case swarmOnly:
		return nil
	}
	general, known := serviceKeys[key]
	switch {
	case general == handled || general == ignored:
		return nil
	case !known:
		return located(c.src, s.Name, key, "lockstep does not know this key (newer compose specification?); remove it or upgrade lockstep")
	}
	if why, lenient := c.lenientKey(s, key); lenient {
		return c.ignore(s.Name, key, why)
	}
	return located(c.src, s.Name, key, general)
}

// written is the line key is written on in service's definition, 0 when
// the compose files do not set it.
func (c *converter) written(service, key string) int {
	_, line := c.src.find("services", service, key)
	return line
}
