package compose

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
)

// service converts one active service. Keys are handled in the order of
// serviceKeys' "handled" group; every refused key fails first.
func (c *converter) service(s types.ServiceConfig) (Service, error) {
	name := s.Name
	fail := func(key, msg string) error { return located(c.src, name, key, msg) }

	if err := c.refusedOrIgnored(s); err != nil {
		return Service{}, err
	}
	if s.Image == "" {
		return Service{}, fail("image", "image is required: lockstep does not build images; push the image in CI and reference it")
	}

	out := Service{
		Name:          name,
		Image:         s.Image,
		Replicas:      s.GetScale(),
		ContainerName: s.ContainerName,
		UpdateOrder:   StopFirst,
	}
	if out.ContainerName != "" && out.Replicas > 1 {
		return Service{}, fail("container_name", fmt.Sprintf("container_name cannot be used with %d replicas (names must be unique); remove container_name or scale to 1", out.Replicas))
	}

	policy, err := pullPolicy(s.PullPolicy)
	if err != nil {
		return Service{}, fail("pull_policy", err.Error())
	}
	out.PullPolicy = policy

	if err := c.deployChecks(s, &out); err != nil {
		return Service{}, err
	}

	cfg := containerConfig(s, &out)
	host, err := c.hostConfig(s)
	if err != nil {
		return Service{}, err
	}

	if err := ports(s, cfg, host, &out); err != nil {
		return Service{}, fail("ports", err.Error())
	}
	if err := expose(s, cfg); err != nil {
		return Service{}, fail("expose", err.Error())
	}

	if out.Files, err = c.serviceFiles(s, host); err != nil {
		return Service{}, err
	}

	nets, err := c.networking(s, host)
	if err != nil {
		return Service{}, err
	}

	deps, err := c.dependencies(s)
	if err != nil {
		return Service{}, err
	}
	out.DependsOn = deps

	labels, err := c.labels(s, deps)
	if err != nil {
		return Service{}, err
	}
	cfg.Labels = labels

	out.Config, out.Host, out.Networking = cfg, host, nets
	if err := c.hashes(s, &out); err != nil {
		return Service{}, err
	}
	return out, nil
}

// refusedOrIgnored refuses the keys of s lockstep cannot honour, and
// records a warning for those Docker Compose ignores on a single host
// (refused too with LoadOptions.Strict).
func (c *converter) refusedOrIgnored(s types.ServiceConfig) error {
	for _, r := range refusedKeys(s) {
		why, lenient := c.lenientKey(s, r[0])
		if !lenient {
			return located(c.src, s.Name, r[0], r[1])
		}
		if err := c.ignore(s.Name, r[0], why); err != nil {
			return err
		}
	}
	return c.platformCheck(s)
}

// hashes sets out's three hashes and their labels: Compose's config-hash
// (from the compose-go model, as Docker Compose computes it), lockstep's
// spec hash (its create configs, release paths relative) and lockstep.hash
// (the spec hash, the image and the content of the files it uses).
func (c *converter) hashes(s types.ServiceConfig, out *Service) error {
	var err error
	if out.composeModel, err = composeModel(s); err != nil {
		return err
	}
	out.ConfigHash = sha256Hex(out.composeModel)
	out.SpecHash = specHash(out, c.opts.ReleaseDir)
	out.Hash = serviceHash(out.SpecHash, out.Image, out.Files)
	out.Config.Labels[LabelConfigHash] = out.ConfigHash
	out.Config.Labels[LabelSpecHash] = out.SpecHash
	out.Config.Labels[LabelHash] = out.Hash
	return nil
}

// pullPolicy normalizes pull_policy to PullMissing, PullAlways or
// PullNever, refusing what needs a build. The error is the message for
// the pull_policy key.
func pullPolicy(policy string) (string, error) {
	switch policy {
	case "", types.PullPolicyMissing, types.PullPolicyIfNotPresent:
		return PullMissing, nil
	case types.PullPolicyAlways:
		return PullAlways, nil
	case types.PullPolicyNever:
		return PullNever, nil
	case types.PullPolicyBuild:
		return "", errors.New("pull_policy: build is not possible, lockstep does not build images; push the image in CI and reference it")
	}
	return "", fmt.Errorf("pull_policy %q is not supported; use missing, always or never", policy)
}

// containerConfig is the Engine API container config of s, without the
// labels, which need the dependencies and the hash (see service). It also
// notes on out whether the service has a healthcheck, which the gate
// waits on.
func containerConfig(s types.ServiceConfig, out *Service) *container.Config {
	cfg := &container.Config{
		Hostname:     s.Hostname,
		Domainname:   s.DomainName,
		User:         s.User,
		Tty:          s.Tty,
		OpenStdin:    s.StdinOpen,
		AttachStdout: true, // as compose: logs are attached, not a terminal
		AttachStderr: true,
		Cmd:          slices.Clone([]string(s.Command)),
		Entrypoint:   slices.Clone([]string(s.Entrypoint)),
		Image:        s.Image,
		WorkingDir:   s.WorkingDir,
		StopSignal:   s.StopSignal,
		Env:          envList(s.Environment),
	}
	if s.NetworkMode == "disabled" {
		cfg.NetworkDisabled = true
	}
	if s.StopGracePeriod != nil {
		secs := int(time.Duration(*s.StopGracePeriod).Seconds())
		cfg.StopTimeout = &secs
	}
	if s.HealthCheck != nil {
		cfg.Healthcheck = healthConfig(s.HealthCheck)
		t := cfg.Healthcheck.Test
		out.Healthcheck = len(t) > 0 && t[0] != "NONE"
	}
	return cfg
}

// hostConfig is the Engine API host config of s as far as it is set from
// keys of the service alone; ports, mounts and the network mode are added
// by service's later steps, which need the rest of the project.
func (c *converter) hostConfig(s types.ServiceConfig) (*container.HostConfig, error) {
	fail := func(key, msg string) error { return located(c.src, s.Name, key, msg) }
	host := &container.HostConfig{
		Annotations:    cloneMap(s.Annotations),
		CapAdd:         slices.Clone(s.CapAdd),
		CapDrop:        slices.Clone(s.CapDrop),
		CgroupnsMode:   container.CgroupnsMode(s.Cgroup),
		Init:           s.Init,
		IpcMode:        container.IpcMode(s.Ipc),
		PidMode:        container.PidMode(s.Pid),
		UTSMode:        container.UTSMode(s.Uts),
		UsernsMode:     container.UsernsMode(s.UserNSMode),
		ReadonlyRootfs: s.ReadOnly,
		Privileged:     s.Privileged,
		RestartPolicy:  restartPolicy(s),
		ShmSize:        int64(s.ShmSize),
		Sysctls:        cloneMap(s.Sysctls),
		StorageOpt:     cloneMap(s.StorageOpt),
		VolumeDriver:   s.VolumeDriver,
		DNSOptions:     slices.Clone(s.DNSOpts),
		DNSSearch:      slices.Clone([]string(s.DNSSearch)),
		ExtraHosts:     sortedList(s.ExtraHosts.AsList(":")),
		SecurityOpt:    slices.Clone(s.SecurityOpt),
		GroupAdd:       slices.Clone(s.GroupAdd),
		OomScoreAdj:    int(s.OomScoreAdj),
		Runtime:        s.Runtime,
		Resources:      resources(s),
	}
	for _, ns := range []struct{ key, v string }{{"ipc", s.Ipc}, {"pid", s.Pid}, {"uts", s.Uts}, {"cgroup", s.Cgroup}} {
		if strings.HasPrefix(ns.v, types.ServicePrefix) {
			return nil, fail(ns.key, fmt.Sprintf("%s: %s is not supported by lockstep; share the namespace with container:<name> or host", ns.key, ns.v))
		}
	}
	for _, d := range s.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fail("dns", fmt.Sprintf("invalid DNS server address %q: %v", d, err))
		}
		host.DNS = append(host.DNS, a)
	}
	if s.Logging != nil {
		host.LogConfig = container.LogConfig{Type: s.Logging.Driver, Config: cloneMap(s.Logging.Options)}
	} else if s.LogDriver != "" || len(s.LogOpt) > 0 {
		host.LogConfig = container.LogConfig{Type: s.LogDriver, Config: cloneMap(s.LogOpt)}
	}
	if len(s.Tmpfs) > 0 {
		host.Tmpfs = map[string]string{}
		for _, t := range s.Tmpfs {
			target, opts, _ := strings.Cut(t, ":")
			host.Tmpfs[target] = opts
		}
	}
	return host, nil
}

// serviceFiles adds s's mounts and configs/secrets to host and returns
// the repository files the service uses (those, its env_files and
// label_files), each once: what its hash covers and a plan names.
func (c *converter) serviceFiles(s types.ServiceConfig, host *container.HostConfig) ([]File, error) {
	var files []File
	mountFiles, err := c.volumes(s, host)
	if err != nil {
		return nil, err
	}
	files = append(files, mountFiles...)
	objFiles, err := c.fileObjects(s, host)
	if err != nil {
		return nil, err
	}
	files = append(files, objFiles...)
	for _, ef := range s.EnvFiles {
		f, err := c.repoFile(s.Name, "env_file", ef.Path, !bool(ef.Required))
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	for _, lf := range s.LabelFiles {
		f, err := c.repoFile(s.Name, "label_file", lf, false)
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	return dedupeFiles(files), nil
}

// deployChecks applies deploy: and decides the parts of it that only
// mean something to Swarm (see swarmDeploy).
func (c *converter) deployChecks(s types.ServiceConfig, out *Service) error {
	d := s.Deploy
	if d == nil {
		return nil
	}
	fail := func(key, msg string) error { return located(c.src, s.Name, "deploy."+key, msg) }
	switch d.Mode {
	case "", "replicated":
	case "global":
		// One task per node; a single host is one node, which is also what
		// Docker Compose runs (one container).
		if d.Replicas != nil {
			return fail("replicas", "replicas cannot be combined with mode: global (Swarm refuses it too); remove one of them")
		}
	default:
		return fail("mode", fmt.Sprintf("mode %q is not supported: jobs run to completion, which lockstep does not schedule; run the task as a service with restart: \"no\"", d.Mode))
	}
	if err := c.swarmDeploy(s); err != nil {
		return err
	}
	for _, r := range []struct {
		key string
		res *types.Resource
	}{{"resources.limits", d.Resources.Limits}, {"resources.reservations", d.Resources.Reservations}} {
		if r.res != nil && len(r.res.Devices) > 0 {
			return fail(r.key+".devices", "device reservations (GPUs) are not supported by lockstep; remove them")
		}
	}
	if u := d.UpdateConfig; u != nil {
		switch u.Order {
		case "", StopFirst:
		case StartFirst:
			out.UpdateOrder = StartFirst
		default:
			return fail("update_config.order", fmt.Sprintf("unknown order %q; use stop-first or start-first", u.Order))
		}
	}
	return nil
}

func healthConfig(h *types.HealthCheckConfig) *container.HealthConfig {
	hc := &container.HealthConfig{Test: slices.Clone([]string(h.Test))}
	if h.Interval != nil {
		hc.Interval = time.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		hc.Timeout = time.Duration(*h.Timeout)
	}
	if h.StartPeriod != nil {
		hc.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.StartInterval != nil {
		hc.StartInterval = time.Duration(*h.StartInterval)
	}
	if h.Retries != nil {
		hc.Retries = int(*h.Retries)
	}
	if h.Disable {
		hc.Test = []string{"NONE"}
	}
	return hc
}

// restartPolicy follows compose: restart: first, deploy.restart_policy
// overrides it, with Swarm's condition names mapped onto the engine's.
func restartPolicy(s types.ServiceConfig) container.RestartPolicy {
	var rp container.RestartPolicy
	if s.Restart != "" {
		name, count, _ := strings.Cut(s.Restart, ":")
		n, _ := strconv.Atoi(count)
		rp = container.RestartPolicy{Name: restartMode(name), MaximumRetryCount: n}
	}
	if s.Deploy != nil && s.Deploy.RestartPolicy != nil {
		p := s.Deploy.RestartPolicy
		rp = container.RestartPolicy{Name: restartMode(p.Condition)}
		if p.MaxAttempts != nil {
			rp.MaximumRetryCount = int(*p.MaxAttempts)
		}
	}
	return rp
}

func restartMode(condition string) container.RestartPolicyMode {
	switch condition {
	case "none", "no":
		return container.RestartPolicyDisabled
	case "any", "always":
		return container.RestartPolicyAlways
	case "on-failure":
		return container.RestartPolicyOnFailure
	case "unless-stopped":
		return container.RestartPolicyUnlessStopped
	}
	return container.RestartPolicyMode(condition)
}

// resources follows compose's getDeployResources: the service-level keys
// first, deploy.resources limits/reservations override them.
func resources(s types.ServiceConfig) container.Resources {
	oomKillDisable := s.OomKillDisable
	r := container.Resources{
		CgroupParent:       s.CgroupParent,
		Memory:             int64(s.MemLimit),
		MemorySwap:         int64(s.MemSwapLimit),
		MemoryReservation:  int64(s.MemReservation),
		OomKillDisable:     &oomKillDisable,
		CPUPeriod:          s.CPUPeriod,
		CPUQuota:           s.CPUQuota,
		CPURealtimePeriod:  s.CPURTPeriod,
		CPURealtimeRuntime: s.CPURTRuntime,
		CPUShares:          s.CPUShares,
		NanoCPUs:           int64(s.CPUS * 1e9),
		CpusetCpus:         s.CPUSet,
		DeviceCgroupRules:  slices.Clone(s.DeviceCgroupRules),
	}
	if s.MemSwappiness != 0 {
		v := int64(s.MemSwappiness)
		r.MemorySwappiness = &v
	}
	if s.PidsLimit != 0 {
		v := s.PidsLimit
		r.PidsLimit = &v
	}
	if s.Deploy != nil {
		if l := s.Deploy.Resources.Limits; l != nil {
			if l.MemoryBytes != 0 {
				r.Memory = int64(l.MemoryBytes)
			}
			if l.NanoCPUs != 0 {
				r.NanoCPUs = int64(l.NanoCPUs * 1e9)
			}
			if l.Pids > 0 {
				v := l.Pids
				r.PidsLimit = &v
			}
		}
		// A CPU or PIDs reservation has no engine equivalent (compose
		// ignores them as well); a memory reservation is a soft limit.
		if res := s.Deploy.Resources.Reservations; res != nil && res.MemoryBytes > 0 {
			r.MemoryReservation = int64(res.MemoryBytes)
		}
	}
	for _, d := range s.Devices {
		r.Devices = append(r.Devices, container.DeviceMapping{PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: d.Permissions})
	}
	for _, name := range sortedKeys(s.Ulimits) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		r.Ulimits = append(r.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	return r
}

func (c *converter) dependencies(s types.ServiceConfig) ([]Dependency, error) {
	var deps []Dependency
	for _, name := range sortedKeys(s.DependsOn) {
		d := s.DependsOn[name]
		if _, active := c.cp.Services[name]; !active {
			if !d.Required {
				continue
			}
			msg := fmt.Sprintf("depends on service %q, which is not deployed", name)
			if _, disabled := c.cp.DisabledServices[name]; disabled {
				msg += " (it declares profiles, and lockstep activates none); remove its profiles or set required: false"
			} else {
				msg += "; define it or remove the dependency"
			}
			return nil, located(c.src, s.Name, "depends_on", msg)
		}
		cond := d.Condition
		if cond == "" {
			cond = ConditionStarted
		}
		switch cond {
		case ConditionStarted, ConditionHealthy, ConditionCompleted:
		default:
			return nil, located(c.src, s.Name, "depends_on."+name+".condition", fmt.Sprintf("unknown condition %q; use %s, %s or %s", cond, ConditionStarted, ConditionHealthy, ConditionCompleted))
		}
		deps = append(deps, Dependency{Service: name, Condition: cond, Restart: d.Restart, Required: d.Required})
	}
	return deps, nil
}

// labels returns the service's own labels plus the compose and lockstep
// labels of design §4, except those that depend on the hash (added after
// hashing), the container number (added by ContainerCreate) and
// com.docker.compose.image, which holds the image ID and is set by the
// engine adapter once the image is pulled.
func (c *converter) labels(s types.ServiceConfig, deps []Dependency) (map[string]string, error) {
	labels := map[string]string{}
	for _, k := range sortedKeys(s.Labels) {
		// lockstep.health-gate is the one lockstep label a compose file
		// sets (README, reconcile.LabelHealthGate): the opt-out of the gate.
		reserved := strings.HasPrefix(k, "com.docker.compose.") || strings.HasPrefix(k, "lockstep.")
		if reserved && k != labelHealthGate {
			return nil, located(c.src, s.Name, "labels", fmt.Sprintf("label %q is reserved for compose and lockstep; rename it", k))
		}
		labels[k] = s.Labels[k]
	}
	var depends []string
	for _, d := range deps {
		depends = append(depends, fmt.Sprintf("%s:%s:%t", d.Service, d.Condition, d.Restart))
	}
	files := make([]string, len(c.files))
	copy(files, c.files)
	labels[LabelProject] = c.opts.Project
	labels[LabelService] = s.Name
	labels[LabelOneoff] = "False"
	labels[LabelWorkingDir] = c.opts.ReleaseDir
	labels[LabelConfigFiles] = strings.Join(files, ",")
	labels[LabelDependsOn] = strings.Join(depends, ",")
	labels[LabelVersion] = c.opts.Version
	labels[LabelEnvironment] = c.opts.Environment
	labels[LabelCommit] = c.opts.Commit
	return labels, nil
}

func envList(env types.MappingWithEquals) []string {
	var out []string
	for _, k := range sortedKeys(env) {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		} else {
			out = append(out, k) // as compose: a bare name, unset in the container
		}
	}
	return out
}
