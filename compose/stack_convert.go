package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/swarm"
)

// The stack conversion (LoadOptions.Swarm) turns the loaded compose-go
// project into the objects docker stack deploy would create for it
// (docker/cli cli/compose/convert): one swarm service per compose service,
// overlay networks, and configs and secrets as swarm objects, named by
// their content so that a changed file is a new object. It reuses the
// single-host load up to the compose-go model (interpolation, env files,
// decryption, Need, error locating) and replaces only the conversion:
// nothing of the single-host model is built, and its host-only checks do
// not apply.

// maxObjectName is the longest name the swarm takes for a config or a
// secret.
const maxObjectName = 64

// defaultStackDriver is the driver of a stack network that names none, as
// docker stack deploy creates it.
const defaultStackDriver = "overlay"

// stack fills p.Stack from c's compose-go project.
func (c *converter) stack(p *Project) (*Project, error) {
	if err := c.secrets.checkStackLabels(c.src); err != nil {
		return nil, err
	}
	st := &Stack{Namespace: c.opts.Project}
	objs := map[string]StackObject{} // "configs/<key>" or "secrets/<key>"
	for _, kind := range []string{"configs", "secrets"} {
		for _, key := range sortedKeys(c.fileObjectsOf(kind)) {
			o, err := c.stackObject(kind, key, c.fileObjectsOf(kind)[key])
			if err != nil {
				return nil, err
			}
			objs[kind+"/"+key] = o
			if kind == "configs" {
				st.Configs = append(st.Configs, o)
			} else {
				st.Secrets = append(st.Secrets, o)
			}
		}
	}
	for _, key := range sortedKeys(c.cp.Networks) {
		n, err := c.stackNetwork(key, c.cp.Networks[key])
		if err != nil {
			return nil, err
		}
		st.Networks = append(st.Networks, n)
	}
	for _, key := range sortedKeys(c.cp.Volumes) {
		st.Volumes = append(st.Volumes, c.stackVolume(key, c.cp.Volumes[key]))
	}
	for _, name := range sortedKeys(c.cp.Services) {
		svc, err := c.stackService(c.cp.Services[name], objs)
		if err != nil {
			return nil, err
		}
		st.Services = append(st.Services, svc)
	}
	for _, o := range append(slices.Clone(st.Configs), st.Secrets...) {
		if o.Source != "" && !filepath.IsAbs(o.Source) && !c.opts.needs.covered(o.Source) {
			return nil, fmt.Errorf("load: %s uses %s, which the loader did not materialize (a lockstep bug: please report it)", o.Key, o.Source)
		}
	}
	p.Stack = st
	p.Warnings = c.warnings
	return p, nil
}

// fileObjectsOf returns the top-level configs or secrets.
func (c *converter) fileObjectsOf(kind string) map[string]types.FileObjectConfig {
	out := map[string]types.FileObjectConfig{}
	if kind == "configs" {
		for k, v := range c.cp.Configs {
			out[k] = types.FileObjectConfig(v)
		}
		return out
	}
	for k, v := range c.cp.Secrets {
		out[k] = types.FileObjectConfig(v)
	}
	return out
}

// stackNetwork converts a top-level network as docker stack deploy
// creates it: overlay unless a driver is named, with the namespace label.
// An external one is only named: the engine adapter checks that it exists.
func (c *converter) stackNetwork(key string, n types.NetworkConfig) (StackNetwork, error) {
	out := StackNetwork{Key: key, Name: n.Name, External: bool(n.External)}
	if out.Name == "" {
		out.Name = c.opts.Project + "_" + key
	}
	if out.External {
		return out, nil
	}
	fail := func(k, msg string) error {
		file, line := c.src.find("networks", key, k)
		if line == 0 {
			file, line = c.src.find("networks", key)
		}
		return &LoadError{File: file, Line: line, Key: "networks." + key + "." + k, Msg: msg}
	}
	out.Driver = n.Driver
	switch n.Driver {
	case "":
		out.Driver = defaultStackDriver
	case "bridge", "host", "none":
		return StackNetwork{}, fail("driver", fmt.Sprintf("a %s network is local to one node and cannot be created for a swarm stack; use driver: overlay (the default), or declare the node's network external: true", n.Driver))
	}
	if n.EnableIPv4 != nil && !*n.EnableIPv4 {
		return StackNetwork{}, fail("enable_ipv4", "IPv4-less networks are not supported by lockstep; remove enable_ipv4")
	}
	out.DriverOpts = cloneMap(n.DriverOpts)
	out.Attachable, out.Internal = n.Attachable, n.Internal
	out.EnableIPv6 = n.EnableIPv6 != nil && *n.EnableIPv6
	labels, err := c.stackLabels(n.Labels, func(msg string) error { return fail("labels", msg) })
	if err != nil {
		return StackNetwork{}, err
	}
	out.Labels = labels
	if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 || len(n.Ipam.Options) > 0 {
		ipam := &StackIPAM{Driver: n.Ipam.Driver, Options: cloneMap(n.Ipam.Options)}
		for _, pool := range n.Ipam.Config {
			if err := checkPool(pool); err != nil {
				return StackNetwork{}, fail("ipam.config", err.Error())
			}
			ipam.Config = append(ipam.Config, StackIPAMPool{Subnet: pool.Subnet, IPRange: pool.IPRange, Gateway: pool.Gateway,
				AuxAddress: cloneMap(pool.AuxiliaryAddresses)})
		}
		out.IPAM = ipam
	}
	return out, nil
}

// checkPool refuses an ipam pool the engine would refuse at create time,
// when the release is already being applied.
func checkPool(pool *types.IPAMPool) error {
	for _, p := range []struct{ key, v string }{{"subnet", pool.Subnet}, {"ip_range", pool.IPRange}} {
		if _, err := netip.ParsePrefix(p.v); p.v != "" && err != nil {
			return fmt.Errorf("invalid %s %q: %v", p.key, p.v, err)
		}
	}
	if _, err := netip.ParseAddr(pool.Gateway); pool.Gateway != "" && err != nil {
		return fmt.Errorf("invalid gateway %q: %v", pool.Gateway, err)
	}
	for _, name := range sortedKeys(pool.AuxiliaryAddresses) {
		if _, err := netip.ParseAddr(pool.AuxiliaryAddresses[name]); err != nil {
			return fmt.Errorf("invalid aux address for %q: %v", name, err)
		}
	}
	return nil
}

// stackVolume is a top-level named volume. The swarm has no volume
// objects: each node creates the volume from the mount's options when a
// task mounting it starts there (see stackMount).
func (c *converter) stackVolume(key string, v types.VolumeConfig) StackVolume {
	out := StackVolume{Key: key, Name: v.Name, External: bool(v.External)}
	if out.Name == "" {
		out.Name = c.opts.Project + "_" + key
	}
	if out.External {
		return out
	}
	out.Driver = v.Driver
	out.DriverOpts = cloneMap(v.DriverOpts)
	out.Labels = cloneMap(v.Labels)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[LabelStackNamespace] = c.opts.Project
	return out
}

// stackLabels returns labels with the namespace label added, refusing the
// keys docker stack deploy and lockstep set themselves (lockstep's
// health-gate opt-out excepted). fail locates a refusal.
func (c *converter) stackLabels(labels map[string]string, fail func(msg string) error) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range sortedKeys(labels) {
		reserved := strings.HasPrefix(k, "com.docker.stack.") || strings.HasPrefix(k, "lockstep.")
		if reserved && k != labelHealthGate {
			return nil, fail(fmt.Sprintf("label %q is reserved for docker stack and lockstep; rename it", k))
		}
		out[k] = labels[k]
	}
	out[LabelStackNamespace] = c.opts.Project
	return out, nil
}

// objectName is the swarm name of a config or secret: the namespace, the
// key and the first 12 hex digits of the content hash. A key that would
// make it longer than the swarm takes is cut, and a hash of the whole key
// keeps two long keys with a common prefix apart. ok is false when even
// the shortest form is too long (a very long project name).
func objectName(namespace, key, contentHash string) (string, bool) {
	short := contentHash
	if len(short) > 12 {
		short = short[:12]
	}
	name := namespace + "_" + key + "_" + short
	if len(name) <= maxObjectName {
		return name, true
	}
	sum := sha256.Sum256([]byte(key))
	tag := hex.EncodeToString(sum[:])[:8]
	room := maxObjectName - len(namespace) - len(short) - 2 - len(tag) - 1
	if room < 1 {
		return "", false
	}
	return namespace + "_" + key[:room] + "-" + tag + "_" + short, true
}

// stackServiceHash is lockstep.hash of a converted service: the sha256 of
// its spec as canonical JSON (encoding/json sorts map keys), with the
// labels that vary per commit or hold the hash left out, and each config
// and secret named by its content hash rather than its object name, so
// the hash says what the service runs, not what it was called.
func stackServiceHash(spec swarm.ServiceSpec, objs map[string]string) string {
	h := deepCopy(&spec)
	h.Labels = withoutKeys(h.Labels, LabelCommit, LabelHash)
	if cs := h.TaskTemplate.ContainerSpec; cs != nil {
		for _, r := range cs.Configs {
			r.ConfigName = objs["configs/"+r.ConfigName]
		}
		for _, r := range cs.Secrets {
			r.SecretName = objs["secrets/"+r.SecretName]
		}
	}
	return hashJSON(h)
}
