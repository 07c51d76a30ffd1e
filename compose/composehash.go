package compose

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Docker Compose's com.docker.compose.config-hash, computed the way Docker
// Compose v5.6.0 computes it (pkg/compose/hash.go of that release), so that
// `docker compose up -d` run on a lockstep project finds every container
// up to date and recreates nothing (issue 11).
//
// The format, read from Compose's source:
//
//   - services: sha256 (lowercase hex) of encoding/json's marshalling of
//     compose-go's types.ServiceConfig as Compose holds it when it creates
//     the container, without build, pull_policy, scale, deploy.replicas,
//     depends_on and profiles, with the top-level keys re-emitted in a
//     frozen order (composeKeyOrder) and each value kept byte for byte;
//   - networks: sha256 of the marshalling of types.NetworkConfig as loaded;
//   - volumes: the same for types.VolumeConfig, with an empty driver
//     written as "local".
//
// What Compose holds at create time, for the same files in the same
// project directory with the same variables, is what lockstep's loader
// produces (both load with compose-go, same options where they matter),
// with these differences, each handled or accepted here:
//
//   - env_file: Compose folds env files into environment and drops the
//     env_file list (WithServicesEnvironmentResolved(true)); lockstep folds
//     them too (resolveEnvironments) but keeps the list, so the model drops
//     it. Encrypted (*.age) env files: Compose cannot decrypt them, so a
//     service using one never agrees with what Compose would compute.
//   - the interpolation environment: Compose reads the OS environment, PWD
//     and the project's .env; lockstep reads .env, the pin vars, env files
//     and its built-ins (LOCKSTEP_*), never its own environment. The hashes
//     agree when the operator exports the same variables (README).
//     `environment: [NAME]` entries without a value are filled from that
//     environment too, by both.
//   - service: references in network_mode, ipc and pid: Compose hashes them
//     resolved to "container:<id>" of the service's first container at
//     create time, so the label is computed by the engine adapter once it
//     knows the id (ConfigHashWithRefs). Compose takes the first container
//     by name, lockstep replica 1: the same container unless replica 1 is
//     gone. volumes_from is refused by lockstep.
//   - COMPOSE_* variables: Compose reads COMPOSE_PROFILES, COMPOSE_FILE and
//     COMPOSE_PROJECT_NAME from .env too; lockstep activates no profile and
//     takes files and name from the pin file. Profiles are not hashed, and
//     the README has the operator pass -p and -f, so no hash moves; Compose
//     may start profiled services lockstep does not deploy. ${PWD}, which
//     Compose always sets, is unset under lockstep (the load fails).
//   - labels Compose adds (CustomLabels) and x-* extensions are not part of
//     the JSON (`json:"-"`), neither are lockstep's labels, which live in
//     the Engine create config only.
//   - compose-go version: lockstep builds with v2.16.2, Compose v5.6.0 with
//     v2.16.1. types/ differ only by two omitempty fields (umask,
//     networks.*.use_service_name_alias) that v2.16.1's schema refuses, so
//     every file Compose v5.6.0 accepts marshals to the same bytes.
//     TestComposeKeyOrderCoversServiceConfig fails when a compose-go upgrade
//     adds a service key, which is the moment to check Compose again.

// composeKeyOrder is the top-level key order Compose v5.6.0 freezes for
// the service hash (its serviceHashKeyOrder, a data fact of the format).
// Keys not listed are written after these, sorted.
var composeKeyOrder = strings.Fields(`
	profiles annotations attach build develop blkio_config cap_add cap_drop
	cgroup_parent cgroup cpu_count cpu_percent cpu_period cpu_quota
	cpu_rt_period cpu_rt_runtime cpus cpuset cpu_shares command configs
	container_name credential_spec depends_on deploy device_cgroup_rules
	devices dns dns_opt dns_search dockerfile domainname entrypoint provider
	environment env_file expose extends external_links extra_hosts group_add
	gpus hostname healthcheck image init ipc isolation labels label_file
	links logging log_driver log_opt mem_limit mem_reservation memswap_limit
	mem_swappiness mac_address models net network_mode networks
	oom_kill_disable oom_score_adj pid pids_limit platform ports privileged
	pull_policy read_only restart runtime scale secrets security_opt shm_size
	stdin_open stop_grace_period stop_signal storage_opt sysctls tmpfs tty
	ulimits use_api_socket user userns_mode uts volume_driver volumes
	volumes_from working_dir pre_start post_start pre_stop pull_refresh_after
`)

// composeModel returns the bytes Compose v5.6.0 hashes for service s (as
// compose-go loaded it and resolveEnvironments resolved its environment).
func composeModel(s types.ServiceConfig) ([]byte, error) {
	// Left out by Compose: they change how many containers exist, how the
	// image is obtained or the start order, not a container.
	s.Build = nil
	s.PullPolicy = ""
	s.Scale = nil
	if s.Deploy != nil {
		d := *s.Deploy
		d.Replicas = nil
		s.Deploy = &d
	}
	s.DependsOn = nil
	s.Profiles = nil
	// Compose drops the list once the files are folded into environment.
	s.EnvFiles = nil
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("service %s: marshal for the config-hash: %w", s.Name, err)
	}
	var root map[string]json.RawMessage
	if err := json.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("service %s: config-hash: %w", s.Name, err)
	}
	return orderedObject(root), nil
}

// orderedObject writes root as a JSON object, keys in composeKeyOrder, then
// the others sorted, values verbatim.
func orderedObject(root map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(root))
	for _, k := range composeKeyOrder {
		if _, ok := root[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range root {
		if !slices.Contains(composeKeyOrder, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys = append(keys, rest...)

	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k) // a string always marshals
		b.Write(name)
		b.WriteByte(':')
		b.Write(root[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// composeNetworkHash is Compose's config-hash of a network it creates.
func composeNetworkHash(n types.NetworkConfig) (string, error) {
	raw, err := json.Marshal(&n)
	if err != nil {
		return "", fmt.Errorf("network %s: marshal for the config-hash: %w", n.Name, err)
	}
	return sha256Hex(raw), nil
}

// composeVolumeHash is Compose's config-hash of a volume it creates; the
// engine's default driver is written out, as Compose does.
func composeVolumeHash(v types.VolumeConfig) (string, error) {
	if v.Driver == "" {
		v.Driver = "local"
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("volume %s: marshal for the config-hash: %w", v.Name, err)
	}
	return sha256Hex(raw), nil
}

// sharedNamespaceKeys are the keys whose "service:<name>" value Compose
// resolves to "container:<id>" before hashing.
var sharedNamespaceKeys = []string{"network_mode", "ipc", "pid"}

// ConfigHashWithRefs returns svc's com.docker.compose.config-hash once its
// "service:<name>" references in network_mode, ipc and pid are resolved:
// containerID returns the id of the container the reference names (the
// service's first container, as Compose picks it), or false when it has
// none. Compose hashes the resolved form, so a container sharing another's
// namespace carries that container's id in its hash; a reference without a
// container is hashed as written, as Compose does (it never matches a
// container Compose created). A service without such references, or a
// Service not built by Load, has svc.ConfigHash.
func ConfigHashWithRefs(svc *Service, containerID func(service string) (string, bool)) string {
	if len(svc.composeModel) == 0 || !hasServiceRef(svc) {
		return svc.ConfigHash
	}
	var root map[string]json.RawMessage
	if err := json.Unmarshal(svc.composeModel, &root); err != nil {
		// composeModel is what orderedObject wrote.
		panic(fmt.Sprintf("compose: config-hash model of %s: %v", svc.Name, err))
	}
	if !resolveRefs(root, containerID) {
		return svc.ConfigHash
	}
	return sha256Hex(orderedObject(root))
}

// resolveRefs replaces the "service:<name>" references of root's
// network_mode, ipc and pid by "container:<id>", saying whether it
// replaced any.
func resolveRefs(root map[string]json.RawMessage, containerID func(service string) (string, bool)) bool {
	changed := false
	for _, key := range sharedNamespaceKeys {
		var v string
		if raw, ok := root[key]; !ok || json.Unmarshal(raw, &v) != nil {
			continue
		}
		target, ok := strings.CutPrefix(v, "service:")
		if !ok {
			continue
		}
		if id, ok := containerID(target); ok {
			root[key], _ = json.Marshal("container:" + id)
			changed = true
		}
	}
	return changed
}

// hasServiceRef is the cheap test that spares most services the decode.
func hasServiceRef(svc *Service) bool {
	if svc.Host == nil {
		return false
	}
	for _, mode := range []string{string(svc.Host.NetworkMode), string(svc.Host.IpcMode), string(svc.Host.PidMode)} {
		if strings.HasPrefix(mode, "service:") {
			return true
		}
	}
	return false
}

// ConfigHashIn is the config-hash Compose computes for svc when it loads
// the same files from dir instead of the release dir releaseDir: label_file
// paths are resolved against the project directory and hashed as written
// (Compose keeps the list beside the labels it read from them), so a
// project Compose ran from /srv/app hashes /srv/app/labels.env where
// lockstep hashes the release's copy. The labels themselves, read from the
// files, are in both. It is what adoption compares a Compose-made
// container with: the labels it runs with are the same, only the path in
// the hash moved. Service references are resolved as by ConfigHashWithRefs.
// Bind sources are not rebased: a container binding a file of dir is not
// running the release and must be recreated.
func ConfigHashIn(svc *Service, releaseDir, dir string, containerID func(service string) (string, bool)) string {
	want := ConfigHashWithRefs(svc, containerID)
	if len(svc.composeModel) == 0 || dir == "" || dir == releaseDir || releaseDir == "" {
		return want
	}
	var root map[string]json.RawMessage
	if err := json.Unmarshal(svc.composeModel, &root); err != nil {
		panic(fmt.Sprintf("compose: config-hash model of %s: %v", svc.Name, err))
	}
	var files []string
	if raw, ok := root["label_file"]; !ok || json.Unmarshal(raw, &files) != nil || len(files) == 0 {
		return want
	}
	for i, f := range files {
		if rel, ok := strings.CutPrefix(f, releaseDir+"/"); ok {
			files[i] = dir + "/" + rel
		}
	}
	root["label_file"], _ = json.Marshal(files)
	resolveRefs(root, containerID)
	return sha256Hex(orderedObject(root))
}
