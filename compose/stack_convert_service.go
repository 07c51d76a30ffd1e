package compose

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
)

// maxServiceName is the longest service name a swarm takes: the name is
// a DNS label.
const maxServiceName = 63

// stackService converts one compose service into the swarm service spec
// docker stack deploy would send for it, with lockstep's labels and hash.
func (c *converter) stackService(s types.ServiceConfig, objs map[string]StackObject) (StackService, error) {
	fail := func(key, msg string) error { return located(c.src, s.Name, key, msg) }
	if err := c.stackKeys(s); err != nil {
		return StackService{}, err
	}
	if s.Image == "" {
		return StackService{}, fail("image", "image is required: lockstep does not build images, and every node of the swarm pulls the service's image; push the image in CI and reference it")
	}
	d := s.Deploy
	if d == nil {
		d = &types.DeployConfig{}
	}
	out := StackService{Key: s.Name, Name: c.opts.Project + "_" + s.Name, Image: s.Image}
	if len(out.Name) > maxServiceName {
		return StackService{}, located(c.src, s.Name, "", fmt.Sprintf("the swarm service name %s is longer than the %d characters a swarm takes (it is a DNS label); use a shorter service key or project name", out.Name, maxServiceName))
	}

	cs, err := c.containerSpec(s)
	if err != nil {
		return StackService{}, err
	}
	hashes, err := c.stackObjectRefs(s, objs, cs, &out)
	if err != nil {
		return StackService{}, err
	}
	if cs.Mounts, err = c.stackMounts(s); err != nil {
		return StackService{}, err
	}
	out.Healthcheck = cs.Healthcheck != nil && len(cs.Healthcheck.Test) > 0 && cs.Healthcheck.Test[0] != "NONE"

	task := swarm.TaskSpec{ContainerSpec: cs}
	if task.Resources, err = c.stackResources(s.Name, d.Resources); err != nil {
		return StackService{}, err
	}
	if task.RestartPolicy, err = stackRestartPolicy(s.Restart, d.RestartPolicy); err != nil {
		return StackService{}, fail(restartKey(d), err.Error())
	}
	task.Placement = &swarm.Placement{Constraints: slices.Clone(d.Placement.Constraints), MaxReplicas: d.Placement.MaxReplicas}
	for _, p := range d.Placement.Preferences {
		task.Placement.Preferences = append(task.Placement.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: p.Spread}})
	}
	if task.Networks, err = c.stackAttachments(s); err != nil {
		return StackService{}, err
	}
	if s.Logging != nil && s.Logging.Driver != "" {
		task.LogDriver = &swarm.Driver{Name: s.Logging.Driver, Options: cloneMap(s.Logging.Options)}
	} else if s.LogDriver != "" {
		task.LogDriver = &swarm.Driver{Name: s.LogDriver, Options: cloneMap(s.LogOpt)}
	}

	spec := swarm.ServiceSpec{TaskTemplate: task}
	spec.Name = out.Name
	if spec.Mode, out.Job, err = stackMode(d); err != nil {
		return StackService{}, fail("deploy.mode", err.Error())
	}
	if rp := task.RestartPolicy; out.Job && rp != nil && rp.Condition == swarm.RestartPolicyConditionAny {
		return StackService{}, fail(restartKey(d), "a job runs to completion, and restart condition any (restart: always or unless-stopped) contradicts that; use on-failure (a job's default) or none")
	}
	if spec.UpdateConfig, err = stackUpdateConfig(d.UpdateConfig); err != nil {
		return StackService{}, fail("deploy.update_config", err.Error())
	}
	if spec.RollbackConfig, err = stackUpdateConfig(d.RollbackConfig); err != nil {
		return StackService{}, fail("deploy.rollback_config", err.Error())
	}
	if spec.EndpointSpec, err = c.stackEndpoint(s, d.EndpointMode); err != nil {
		return StackService{}, err
	}
	if spec.Labels, err = c.stackLabels(d.Labels, func(msg string) error { return fail("deploy.labels", msg) }); err != nil {
		return StackService{}, err
	}
	spec.Labels[LabelStackImage] = s.Image
	spec.Labels[LabelEnvironment] = c.opts.Environment
	spec.Labels[LabelCommit] = c.opts.Commit
	out.Hash = stackServiceHash(spec, hashes)
	spec.Labels[LabelHash] = out.Hash
	out.Spec = spec
	return out, nil
}

// containerSpec is the task's container as docker stack deploy converts
// it; mounts and config/secret references are added by stackService.
func (c *converter) containerSpec(s types.ServiceConfig) (*swarm.ContainerSpec, error) {
	fail := func(key, msg string) error { return located(c.src, s.Name, key, msg) }
	capAdd, capDrop := effectiveCaps(s.CapAdd, s.CapDrop)
	cs := &swarm.ContainerSpec{
		Image:          s.Image,
		Command:        slices.Clone([]string(s.Entrypoint)),
		Args:           slices.Clone([]string(s.Command)),
		Hostname:       s.Hostname,
		Env:            envList(s.Environment), // sorted KEY=VALUE, a bare KEY for an unset one
		Dir:            s.WorkingDir,
		User:           s.User,
		Groups:         slices.Clone(s.GroupAdd),
		Init:           s.Init,
		StopSignal:     s.StopSignal,
		TTY:            s.Tty,
		OpenStdin:      s.StdinOpen,
		ReadOnly:       s.ReadOnly,
		Sysctls:        cloneMap(s.Sysctls),
		CapabilityAdd:  capAdd,
		CapabilityDrop: capDrop,
		OomScoreAdj:    s.OomScoreAdj,
	}
	labels, err := c.stackLabels(s.Labels, func(msg string) error { return fail("labels", msg) })
	if err != nil {
		return nil, err
	}
	cs.Labels = labels
	if s.StopGracePeriod != nil {
		d := time.Duration(*s.StopGracePeriod)
		cs.StopGracePeriod = &d
	}
	// extra_hosts in the swarm's notation, "IP hostname", by hostname
	// (compose-go holds them in a map).
	for _, host := range sortedKeys(s.ExtraHosts) {
		for _, ip := range s.ExtraHosts[host] {
			cs.Hosts = append(cs.Hosts, ip+" "+host)
		}
	}
	if len(s.DNS) > 0 || len(s.DNSSearch) > 0 || len(s.DNSOpts) > 0 {
		cs.DNSConfig = &swarm.DNSConfig{Search: slices.Clone([]string(s.DNSSearch)), Options: slices.Clone(s.DNSOpts)}
		for _, d := range s.DNS {
			a, err := netip.ParseAddr(d)
			if err != nil {
				return nil, fail("dns", fmt.Sprintf("invalid DNS server address %q: %v", d, err))
			}
			cs.DNSConfig.Nameservers = append(cs.DNSConfig.Nameservers, a)
		}
	}
	if s.HealthCheck != nil {
		if s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 && s.HealthCheck.Test[0] != "NONE" {
			return nil, fail("healthcheck", "test and disable cannot be set at the same time (docker stack deploy refuses it too); remove one of them")
		}
		cs.Healthcheck = healthConfig(s.HealthCheck)
		if s.HealthCheck.Disable {
			cs.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		}
	}
	for _, name := range sortedKeys(s.Ulimits) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		cs.Ulimits = append(cs.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	if cs.Privileges, err = privileges(s.SecurityOpt); err != nil {
		return nil, fail("security_opt", err.Error())
	}
	return cs, nil
}

// privileges maps the security_opt entries a swarm service can express
// (no-new-privileges, seccomp and apparmor unconfined) and refuses the
// rest.
func privileges(opts []string) (*swarm.Privileges, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	p := &swarm.Privileges{}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		if strings.Contains(k, ":") && !strings.Contains(o, "=") {
			k, v, _ = strings.Cut(o, ":")
		}
		switch {
		case k == "no-new-privileges" && (v == "" || v == "true"):
			p.NoNewPrivileges = true
		case k == "no-new-privileges" && v == "false":
		case k == "seccomp" && v == "unconfined":
			p.Seccomp = &swarm.SeccompOpts{Mode: swarm.SeccompModeUnconfined}
		case k == "apparmor" && v == "unconfined":
			p.AppArmor = &swarm.AppArmorOpts{Mode: swarm.AppArmorModeDisabled}
		default:
			return nil, fmt.Errorf("%q cannot be expressed in a swarm service (only no-new-privileges, seccomp=unconfined and apparmor=unconfined can); remove it", o)
		}
	}
	return p, nil
}

// effectiveCaps spells capabilities as the swarm stores them (CAP_X,
// upper case), deduplicated and sorted, with ALL alone when added.
func effectiveCaps(add, drop []string) ([]string, []string) {
	norm := func(list []string) []string {
		var out []string
		for _, c := range list {
			c = strings.ToUpper(strings.TrimSpace(c))
			if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			out = append(out, c)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	a, d := norm(add), norm(drop)
	if slices.Contains(a, "ALL") {
		a = []string{"ALL"}
	}
	if slices.Contains(d, "ALL") {
		d = []string{"ALL"}
	}
	return a, d
}

// stackResources converts deploy.resources: CPUs as nano CPUs (parsed from
// the decimal written, as docker stack deploy does, so 0.1 is exactly
// 100000000), memory in bytes, the PIDs limit and discrete generic
// resources.
func (c *converter) stackResources(service string, r types.Resources) (*swarm.ResourceRequirements, error) {
	out := &swarm.ResourceRequirements{}
	for _, res := range []struct {
		key string
		r   *types.Resource
	}{{"limits", r.Limits}, {"reservations", r.Reservations}} {
		if res.r != nil && len(res.r.Devices) > 0 {
			return nil, located(c.src, service, "deploy.resources."+res.key+".devices", "device requests (GPUs) cannot be made by a swarm service; use generic_resources under reservations with the nodes' node-generic-resources, or remove them")
		}
	}
	for _, res := range []struct {
		key string
		r   *types.Resource
	}{{"limits", r.Limits}, {"reservations", r.Reservations}} {
		if res.r == nil {
			continue
		}
		// The swarm's own minimums, refused at create otherwise.
		if n := nanoCPUs(res.r.NanoCPUs); n != 0 && n < 1e6 {
			return nil, located(c.src, service, "deploy.resources."+res.key+".cpus", "must be at least 0.001 (the swarm refuses less)")
		}
		if m := int64(res.r.MemoryBytes); m != 0 && m < 4<<20 {
			return nil, located(c.src, service, "deploy.resources."+res.key+".memory", "must be at least 4MiB (the swarm refuses less)")
		}
	}
	if l := r.Limits; l != nil {
		if len(l.GenericResources) > 0 {
			return nil, located(c.src, service, "deploy.resources.limits.generic_resources", "generic resources can only be reserved; move them to deploy.resources.reservations")
		}
		out.Limits = &swarm.Limit{NanoCPUs: nanoCPUs(l.NanoCPUs), MemoryBytes: int64(l.MemoryBytes), Pids: l.Pids}
	}
	if res := r.Reservations; res != nil {
		if res.Pids != 0 {
			return nil, located(c.src, service, "deploy.resources.reservations.pids", "a PIDs reservation does not exist in a swarm; set deploy.resources.limits.pids")
		}
		out.Reservations = &swarm.Resources{NanoCPUs: nanoCPUs(res.NanoCPUs), MemoryBytes: int64(res.MemoryBytes)}
		for _, g := range res.GenericResources {
			if g.DiscreteResourceSpec == nil {
				continue
			}
			out.Reservations.GenericResources = append(out.Reservations.GenericResources, swarm.GenericResource{
				DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: g.DiscreteResourceSpec.Kind, Value: g.DiscreteResourceSpec.Value}})
		}
	}
	return out, nil
}

// nanoCPUs is cpus in billionths, from its shortest decimal form:
// compose-go holds it as a float32, whose binary value of 0.1 is not 0.1.
func nanoCPUs(cpus types.NanoCPUs) int64 {
	if cpus == 0 {
		return 0
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(float64(cpus), 'f', -1, 32))
	if !ok {
		return int64(float64(cpus) * 1e9)
	}
	r.Mul(r, big.NewRat(1e9, 1))
	n, _ := r.Float64()
	return int64(n)
}

func restartKey(d *types.DeployConfig) string {
	if d.RestartPolicy != nil {
		return "deploy.restart_policy"
	}
	return "restart"
}

// stackRestartPolicy is deploy.restart_policy, or else restart: read as
// docker stack deploy reads it (always and unless-stopped: any; on-failure
// with its count). restart: "no" is condition none: docker stack deploy
// leaves it to the swarm's default, which is any, and would restart a task
// the compose file says must not be.
func stackRestartPolicy(restart string, rp *types.RestartPolicy) (*swarm.RestartPolicy, error) {
	if rp != nil {
		switch rp.Condition {
		case "", "none", "on-failure", "any":
		default:
			return nil, fmt.Errorf("unknown condition %q; use none, on-failure or any", rp.Condition)
		}
		out := &swarm.RestartPolicy{Condition: swarm.RestartPolicyCondition(rp.Condition), MaxAttempts: rp.MaxAttempts}
		if rp.Delay != nil {
			d := time.Duration(*rp.Delay)
			out.Delay = &d
		}
		if rp.Window != nil {
			w := time.Duration(*rp.Window)
			out.Window = &w
		}
		return out, nil
	}
	if restart == "" {
		return nil, nil
	}
	name, count, _ := strings.Cut(restart, ":")
	var attempts *uint64
	if count != "" {
		n, err := strconv.ParseUint(count, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid maximum retry count %q in %q", count, restart)
		}
		if n > 0 {
			attempts = &n
		}
	}
	switch name {
	case "no":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	case "always", "unless-stopped":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, MaxAttempts: attempts}, nil
	case "on-failure":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: attempts}, nil
	}
	return nil, fmt.Errorf("unknown restart policy %q; use no, always, on-failure[:max-retries] or unless-stopped", restart)
}

// stackMode is deploy.mode with deploy.replicas (default 1), and whether
// it is a job.
func stackMode(d *types.DeployConfig) (swarm.ServiceMode, bool, error) {
	replicas := uint64(1)
	if d.Replicas != nil {
		if *d.Replicas < 0 {
			return swarm.ServiceMode{}, false, fmt.Errorf("replicas cannot be negative (%d)", *d.Replicas)
		}
		replicas = uint64(*d.Replicas)
	}
	switch d.Mode {
	case "", "replicated":
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}}, false, nil
	case "replicated-job":
		n := replicas
		return swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &replicas, TotalCompletions: &n}}, true, nil
	case "global", "global-job":
		if d.Replicas != nil {
			return swarm.ServiceMode{}, false, fmt.Errorf("replicas can only be used with mode replicated or replicated-job (docker stack deploy refuses it too); remove replicas or the mode")
		}
		if d.Mode == "global" {
			return swarm.ServiceMode{Global: &swarm.GlobalService{}}, false, nil
		}
		return swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}, true, nil
	}
	return swarm.ServiceMode{}, false, fmt.Errorf("unknown mode %q; use replicated, global, replicated-job or global-job", d.Mode)
}

// stackUpdateConfig is update_config or rollback_config, parallelism
// defaulting to 1 as docker stack deploy sets it.
func stackUpdateConfig(u *types.UpdateConfig) (*swarm.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	switch u.FailureAction {
	case "", "pause", "continue", "rollback":
	default:
		return nil, fmt.Errorf("unknown failure_action %q; use pause, continue or rollback", u.FailureAction)
	}
	switch u.Order {
	case "", StopFirst, StartFirst:
	default:
		return nil, fmt.Errorf("unknown order %q; use stop-first or start-first", u.Order)
	}
	out := &swarm.UpdateConfig{Parallelism: 1, Delay: time.Duration(u.Delay), FailureAction: swarm.FailureAction(u.FailureAction),
		Monitor: time.Duration(u.Monitor), MaxFailureRatio: u.MaxFailureRatio, Order: swarm.UpdateOrder(u.Order)}
	if u.Parallelism != nil {
		out.Parallelism = *u.Parallelism
	}
	return out, nil
}
