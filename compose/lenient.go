package compose

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Warning is a key of the compose files that lockstep ignores, as Docker
// Compose does on a single host: Swarm scheduling settings, build:, develop:
// and the like. A compose file shared between a Swarm stack (or a developer's
// laptop) and a lockstep host is deployed, and the operator is told, by
// validate, plan and the agent's log, what had no effect and why.
// [compose].strict = true refuses these keys instead (LoadOptions.Strict).
type Warning struct {
	File    string `json:"file,omitempty"` // compose file, release-relative
	Line    int    `json:"line,omitempty"`
	Service string `json:"service,omitempty"`
	Key     string `json:"key"` // dotted key path ("deploy.placement")
	Msg     string `json:"msg"` // what lockstep does instead, and why
}

// String reads like a LoadError: `compose.yaml:12: service "web":
// deploy.placement: ignored: ...`.
func (w Warning) String() string {
	return (&LoadError{File: w.File, Line: w.Line, Service: w.Service, Key: w.Key, Msg: w.Msg}).Error()
}

// ignore applies the decision for a key that Docker Compose accepts and
// ignores on a single host: a warning, or with [compose].strict a
// refusal. why says what the key means and why it cannot matter here.
func (c *converter) ignore(service, key, why string) error {
	le := located(c.src, service, key, "")
	if c.opts.Strict {
		le.Msg = why + "; [compose].strict = true refuses it: remove it, or set strict = false to ignore it as Docker Compose does"
		return le
	}
	c.warnings = append(c.warnings, Warning{File: le.File, Line: le.Line, Service: service, Key: key, Msg: "ignored: " + why})
	return nil
}

// lenientKey says whether key, one of serviceKeys' refused keys set on s,
// is one Docker Compose ignores on `up` with s as written (so lockstep may
// ignore it too), and why; false keeps the refusal.
func (c *converter) lenientKey(s types.ServiceConfig, key string) (string, bool) {
	switch key {
	case "build", "dockerfile":
		// Without image: Compose builds and runs what it built; there is
		// nothing for lockstep to pull.
		if s.Image == "" {
			return "", false
		}
		// With image: Compose pulls it when missing and builds only when
		// the pull fails; lockstep pulls it, and a failed pull fails.
		return "lockstep does not build images, it pulls " + s.Image + " as Docker Compose does when the image is in the registry (build and push it in CI)", true
	case "develop":
		return "develop configures `docker compose watch`, which `docker compose up` does not run either", true
	case "cpu_count", "cpu_percent":
		return key + " is Windows-only; the Linux engine discards it too", true
	case "credential_spec":
		return "credential_spec is Windows-only (gMSA); Docker Compose does not pass it to the engine either", true
	case "isolation":
		// Compose passes it; the Linux engine refuses any other value.
		if s.Isolation != "default" {
			return "", false
		}
		return "isolation: default is the only isolation the Linux engine has", true
	case "links":
		return c.plainLinks(s)
	}
	return "", false
}

// plainLinks accepts links that add nothing on a user-defined network:
// each names a service (optionally aliased by its own name) that shares a
// network with s, so the name already resolves, and compose-go has already
// made it a dependency. An alias of another name would stop resolving, so
// it stays refused.
func (c *converter) plainLinks(s types.ServiceConfig) (string, bool) {
	if s.NetworkMode != "" {
		return "", false
	}
	for _, l := range s.Links {
		target, alias, _ := strings.Cut(l, ":")
		if alias != "" && alias != target {
			return "", false
		}
		other, ok := c.cp.Services[target]
		if !ok || other.NetworkMode != "" || !shareNetwork(s, other) {
			return "", false
		}
	}
	return "the linked services share a network, where they reach each other by service name; compose-go already orders them as depends_on", true
}

func shareNetwork(a, b types.ServiceConfig) bool {
	for n := range a.Networks {
		if _, ok := b.Networks[n]; ok {
			return true
		}
	}
	return false
}

// swarmDeploy applies the decisions for deploy: keys that only a Swarm
// manager uses (scheduling, rolling updates, service labels) and Docker
// Compose ignores: on one host they cannot take effect.
func (c *converter) swarmDeploy(s types.ServiceConfig) error {
	d := s.Deploy
	swarm := func(key, what string) error {
		return c.ignore(s.Name, "deploy."+key, what+" is a Swarm setting that a single Docker host has no use for (Docker Compose ignores it too)")
	}
	checks := []struct {
		set       bool
		key, what string
	}{
		{len(d.Labels) > 0, "labels", "deploy.labels (labels of the Swarm service, not of its containers; use labels: for those)"},
		{d.RollbackConfig != nil, "rollback_config", "rollback_config"},
		{len(d.Placement.Constraints) > 0 || len(d.Placement.Preferences) > 0 || d.Placement.MaxReplicas > 0, "placement", "placement"},
		{d.EndpointMode != "", "endpoint_mode", "endpoint_mode (on one host the service name resolves to every replica)"},
	}
	for _, ch := range checks {
		if ch.set {
			if err := swarm(ch.key, ch.what); err != nil {
				return err
			}
		}
	}
	if rp := d.RestartPolicy; rp != nil && (rp.Delay != nil || rp.Window != nil) {
		if err := c.ignore(s.Name, "deploy.restart_policy", "delay and window have no equivalent in the engine's restart policy (Docker Compose drops them too); condition and max_attempts are honoured"); err != nil {
			return err
		}
	}
	if u := d.UpdateConfig; u != nil && (u.Parallelism != nil || u.Delay != 0 || u.FailureAction != "" || u.Monitor != 0 || u.MaxFailureRatio != 0) {
		if err := c.ignore(s.Name, "deploy.update_config", "parallelism, delay, failure_action, monitor and max_failure_ratio pace a Swarm rolling update; lockstep replaces replicas one at a time behind its health gate and honours only order"); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		key string
		res *types.Resource
	}{{"resources.limits", d.Resources.Limits}, {"resources.reservations", d.Resources.Reservations}} {
		if r.res == nil {
			continue
		}
		if len(r.res.GenericResources) > 0 {
			if err := swarm(r.key+".generic_resources", "generic_resources"); err != nil {
				return err
			}
		}
	}
	if res := d.Resources.Reservations; res != nil && (res.NanoCPUs != 0 || res.Pids != 0) {
		if err := c.ignore(s.Name, "deploy.resources.reservations", "a CPU or PIDs reservation is a Swarm scheduling hint with no engine equivalent (Docker Compose drops it too); the memory reservation is honoured"); err != nil {
			return err
		}
	}
	return nil
}

// platformCheck decides platform: (and DOCKER_DEFAULT_PLATFORM in the
// interpolation environment, which Docker Compose uses for services
// without one). The engine pulls and runs its own platform; naming that
// one changes nothing, so it is accepted. Another one would need an
// emulated, platform-pinned pull, create and image identity, which
// lockstep does not do: refused, whatever [compose].strict says, since
// ignoring it would run a different image than Compose runs.
func (c *converter) platformCheck(s types.ServiceConfig) error {
	want := s.Platform
	if want == "" {
		want = strings.TrimSpace(c.cp.Environment["DOCKER_DEFAULT_PLATFORM"])
		if want == "" {
			return nil
		}
	}
	host := c.opts.HostPlatform
	if host == "" {
		host = runtime.GOOS + "/" + runtime.GOARCH
	}
	if samePlatform(want, host) {
		return nil
	}
	msg := fmt.Sprintf("%s is not this host's platform (%s): lockstep pulls and runs images for the host's platform only; remove platform:, or set it to %s", want, host, host)
	if s.Platform == "" {
		msg = fmt.Sprintf("DOCKER_DEFAULT_PLATFORM=%s (from the interpolation environment) is not this host's platform (%s): lockstep pulls and runs images for the host's platform only; unset it, or set it to %s", want, host, host)
	}
	return located(c.src, s.Name, "platform", msg)
}

// samePlatform compares two os/arch[/variant] platforms the way image
// indexes spell them, with the common aliases (x86_64, aarch64). A
// variant is compared only for arm64, whose only one is v8: a 32-bit arm
// host's own variant is not known here, so any is accepted there.
func samePlatform(a, b string) bool {
	na, nb := normalizePlatform(a), normalizePlatform(b)
	if na[0] != nb[0] || na[1] != nb[1] {
		return false
	}
	if na[1] == "arm64" {
		return na[2] == nb[2]
	}
	return true
}

func normalizePlatform(p string) [3]string {
	parts := strings.SplitN(strings.ToLower(strings.TrimSpace(p)), "/", 3)
	var out [3]string
	copy(out[:], parts)
	switch out[1] {
	case "x86_64", "x86-64", "x64":
		out[1] = "amd64"
	case "aarch64":
		out[1] = "arm64"
	case "i386", "i686", "x86":
		out[1] = "386"
	case "armhf", "armel":
		out[1] = "arm"
	}
	if out[1] == "arm64" && out[2] == "" {
		out[2] = "v8"
	}
	return out
}
