package compose

import (
	"reflect"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// serviceKeys says, for every field of compose-go's types.ServiceConfig
// (by its YAML key), what lockstep does with it. A key that lockstep does
// not honour must never be dropped silently: an operator who writes
// `gpus:` or `volumes_from:` expects it to take effect. So:
//
//   - handled: converted into the Engine create configs or the model;
//   - ignored: has no effect on a running container (metadata, or already
//     applied by compose-go while loading), safe to accept;
//   - anything else maps to the reason it is refused, returned as an error
//     when the key is set; unless Docker Compose ignores the key on `up`
//     as it is written (build: beside image:, develop:, ...), in which
//     case lockstep ignores it too, with a Warning, and refuses it only
//     with [compose].strict (see converter.lenientKey).
//
// TestServiceKeysCoverServiceConfig fails when compose-go grows a field
// that is in none of these, so an upgrade cannot silently drop a key; at
// run time such an unknown key is refused too.
var serviceKeys = map[string]string{
	// handled
	"annotations": handled, "cap_add": handled, "cap_drop": handled, "cgroup": handled,
	"cgroup_parent": handled, "command": handled, "configs": handled, "container_name": handled,
	"cpu_period": handled, "cpu_quota": handled, "cpu_rt_period": handled, "cpu_rt_runtime": handled,
	"cpus": handled, "cpuset": handled, "cpu_shares": handled, "depends_on": handled,
	"deploy": handled, "device_cgroup_rules": handled, "devices": handled, "dns": handled,
	"dns_opt": handled, "dns_search": handled, "domainname": handled, "entrypoint": handled,
	"env_file": handled, "environment": handled, "expose": handled, "extra_hosts": handled,
	"group_add": handled, "healthcheck": handled, "hostname": handled, "image": handled,
	"init": handled, "ipc": handled, "label_file": handled, "labels": handled,
	"log_driver": handled, "log_opt": handled, "logging": handled, "mac_address": handled,
	"mem_limit": handled, "mem_reservation": handled, "mem_swappiness": handled, "memswap_limit": handled,
	"name": handled, "network_mode": handled, "networks": handled, "oom_kill_disable": handled,
	"oom_score_adj": handled, "pid": handled, "pids_limit": handled, "platform": handled, "ports": handled,
	"privileged": handled, "profiles": handled, "pull_policy": handled, "read_only": handled,
	"restart": handled, "runtime": handled, "scale": handled, "secrets": handled,
	"security_opt": handled, "shm_size": handled, "stdin_open": handled, "stop_grace_period": handled,
	"stop_signal": handled, "storage_opt": handled, "sysctls": handled, "tmpfs": handled,
	"tty": handled, "ulimits": handled, "user": handled, "userns_mode": handled,
	"uts": handled, "volume_driver": handled, "volumes": handled, "working_dir": handled,

	// ignored
	"attach":      ignored, // which logs `docker compose up` prints; lockstep prints none
	"extends":     ignored, // applied by compose-go while loading
	"-":           ignored, // compose-go internals (CustomLabels), never written by users
	"#extensions": ignored, // x-* keys are for the operator's own use

	// refused
	"build":              "lockstep does not build images; build and push the image in CI and reference it with image:",
	"dockerfile":         "lockstep does not build images; build and push the image in CI and reference it with image:",
	"develop":            "develop (compose watch) is a development feature; remove it from the deployed compose files",
	"gpus":               "GPU device requests are not supported by lockstep yet; remove gpus:",
	"models":             "models are not supported by lockstep; remove models:",
	"provider":           "provider services are not supported by lockstep; remove provider:",
	"pre_start":          "lifecycle hooks are not supported by lockstep; remove pre_start:",
	"post_start":         "lifecycle hooks are not supported by lockstep; remove post_start:",
	"pre_stop":           "lifecycle hooks are not supported by lockstep; remove pre_stop:",
	"external_links":     "external_links is legacy linking; put both containers on a shared network instead",
	"links":              "links is legacy linking; services on a shared network reach each other by service name, use networks.<net>.aliases for extra names",
	"net":                "net is the legacy spelling of network_mode; use network_mode:",
	"volumes_from":       "volumes_from is not supported by lockstep; share a named volume between the services instead",
	"credential_spec":    "credential_spec is Windows-only; remove it",
	"isolation":          "isolation is Windows-only; remove it",
	"cpu_count":          "cpu_count is Windows-only; use cpus: on Linux",
	"cpu_percent":        "cpu_percent is Windows-only; use cpus: on Linux",
	"blkio_config":       "blkio_config is not supported by lockstep (cgroup v2 hosts mostly ignore it); remove it",
	"pull_refresh_after": "pull_refresh_after is not supported; lockstep pulls the image a revision names, use a new tag to deploy new content",
	"umask":              "umask needs Engine API 1.48 and is not supported by lockstep; set it in the image's entrypoint",
	"use_api_socket":     "use_api_socket is not supported by lockstep; mount the engine socket explicitly if you must",
}

const (
	handled = "handled"
	ignored = "ignored"
)

// refusedKeys returns the YAML keys set on svc that lockstep does not
// honour, each with the reason, in field order.
func refusedKeys(svc types.ServiceConfig) [][2]string {
	var out [][2]string
	walkServiceFields(reflect.ValueOf(svc), func(key string, v reflect.Value) {
		rule, known := serviceKeys[key]
		if rule == handled || rule == ignored || v.IsZero() {
			return
		}
		if !known {
			rule = "lockstep does not know this key (newer compose specification?); remove it or upgrade lockstep"
		}
		out = append(out, [2]string{key, rule})
	})
	return out
}

// walkServiceFields calls fn with the YAML key and value of every field of
// a ServiceConfig, descending into the inlined (squashed) embedded specs.
func walkServiceFields(v reflect.Value, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && strings.Contains(opts, "inline") {
			walkServiceFields(v.Field(i), fn)
			continue
		}
		if name == "" {
			name = f.Name
		}
		fn(name, v.Field(i))
	}
}
