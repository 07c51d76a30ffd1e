package swarm

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/distribution/reference"
	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
)

// The fields of a service spec compared one by one, besides the
// lockstep.hash label: what a person changes by hand (docker service
// scale, update --image, --env-add, ...) without touching the label, and
// what a plan names when the label says the spec changed. Each is read
// the same way from the desired spec and from the one the swarm reports,
// so that what the swarm fills in or rewrites (the image's digest,
// network ids, config ids) is never a difference.

// specDiff lists, in words, how the observed spec differs from the
// desired one. Empty when they agree on every compared field.
func specDiff(st *stackIndex, svc *compose.StackService, obs compose.ObservedService) []string {
	want, got := svc.Spec, obs.Spec
	var out []string
	if r := imageDiff(svc.Image, imageOf(got)); r != "" {
		out = append(out, r)
	}
	out = append(out, modeDiff(want.Mode, got.Mode)...)
	wc, gc := containerOf(want), containerOf(got)
	if keys := envDiff(wc.Env, gc.Env); len(keys) > 0 {
		out = append(out, "env changed: "+strings.Join(keys, ", "))
	}
	if !slices.Equal(wc.Command, gc.Command) {
		out = append(out, "command changed")
	}
	if !slices.Equal(wc.Args, gc.Args) {
		out = append(out, "args changed")
	}
	out = append(out, st.objectDiff(kindConfig, configNames(wc), configNames(gc))...)
	out = append(out, st.objectDiff(kindSecret, secretNames(wc), secretNames(gc))...)
	if w, g := networkNames(want, nil), networkNames(got, st.networkNames); !slices.Equal(w, g) {
		out = append(out, fmt.Sprintf("networks %s -> %s", listText(g), listText(w)))
	}
	if w, g := portsOf(want), portsOf(got); !slices.Equal(w, g) {
		out = append(out, fmt.Sprintf("published ports %s -> %s", listText(g), listText(w)))
	}
	if keys := mapDiff(userLabels(want.Labels), userLabels(got.Labels)); len(keys) > 0 {
		out = append(out, "labels changed: "+strings.Join(keys, ", "))
	}
	if keys := mapDiff(wc.Labels, gc.Labels); len(keys) > 0 {
		out = append(out, "container labels changed: "+strings.Join(keys, ", "))
	}
	if w, g := mountsOf(wc), mountsOf(gc); !slices.Equal(w, g) {
		out = append(out, fmt.Sprintf("mounts %s -> %s", listText(g), listText(w)))
	}
	if w, g := constraintsOf(want), constraintsOf(got); !slices.Equal(w, g) {
		out = append(out, fmt.Sprintf("placement constraints %s -> %s", listText(g), listText(w)))
	}
	if resourcesOf(want) != resourcesOf(got) {
		out = append(out, "resources changed")
	}
	return out
}

// containerOf is spec's container spec, empty when it has none.
func containerOf(spec swarmapi.ServiceSpec) swarmapi.ContainerSpec {
	if c := spec.TaskTemplate.ContainerSpec; c != nil {
		return *c
	}
	return swarmapi.ContainerSpec{}
}

func imageOf(spec swarmapi.ServiceSpec) string { return containerOf(spec).Image }

// stripDigest is ref without its pinned digest ("repo:tag@sha256:..." is
// "repo:tag"); a reference by digest alone is kept whole.
func stripDigest(ref string) string {
	i := strings.Index(ref, "@")
	if i < 0 {
		return ref
	}
	name := ref[:i]
	// "repo@sha256:..." has no tag to fall back on: the digest is the
	// reference.
	if !strings.Contains(name[strings.LastIndex(name, "/")+1:], ":") {
		return ref
	}
	return name
}

// normalRef is ref without digest, in its canonical form (docker.io/library
// and :latest filled in), so "nginx" and "docker.io/library/nginx:latest"
// are one image.
func normalRef(ref string) string {
	ref = stripDigest(ref)
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}

// samePinnedRef reports whether pinned (as the swarm has it) is written
// ref pinned to some digest; when ref is itself pinned (the compose file
// names a digest), to that digest.
func samePinnedRef(pinned, ref string) bool {
	if pinned == "" {
		return false
	}
	if hasDigest(ref) {
		return canonical(pinned) == canonical(ref)
	}
	return normalRef(pinned) == normalRef(ref)
}

// canonical is ref in its canonical form, digest included.
func canonical(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return named.String()
}

// imageDiff words an image change, "" when want (as written) and got (as
// the swarm runs it, pinned) are the same reference: a moved tag is not
// a change.
func imageDiff(want, got string) string {
	if samePinnedRef(got, want) {
		return ""
	}
	from := stripDigest(got)
	if hasDigest(want) {
		from = got // the compose file pins a digest: which one matters
	}
	if from == "" {
		from = "none"
	}
	to := want
	if i, j := strings.LastIndex(from, ":"), strings.LastIndex(want, ":"); i > 0 && j > 0 && !strings.Contains(from+want, "@") &&
		from[:i] == want[:j] && !strings.Contains(want[j:], "/") && !strings.Contains(from[i:], "/") {
		to = want[j:] // same repository: "image reg/web:v1 -> :v2"
	}
	return fmt.Sprintf("image %s -> %s", from, to)
}

// modeText is a service mode in words, with its replica count.
func modeText(m swarmapi.ServiceMode) (mode string, replicas uint64) {
	switch {
	case m.Global != nil:
		return "global", 0
	case m.ReplicatedJob != nil:
		return "replicated-job", 0
	case m.GlobalJob != nil:
		return "global-job", 0
	case m.Replicated != nil && m.Replicated.Replicas != nil:
		return "replicated", *m.Replicated.Replicas
	}
	return "replicated", 1 // the swarm's default
}

// modeKind is a mode without its replica count.
func modeKind(m swarmapi.ServiceMode) string {
	mode, _ := modeText(m)
	return mode
}

func modeDiff(want, got swarmapi.ServiceMode) []string {
	wm, wr := modeText(want)
	gm, gr := modeText(got)
	switch {
	case wm != gm:
		return []string{fmt.Sprintf("mode %s -> %s", gm, wm)}
	case wr != gr:
		return []string{fmt.Sprintf("replicas %d, want %d", gr, wr)}
	}
	return nil
}

// envDiff lists the variables set differently, by name only: values may
// be secrets.
func envDiff(want, got []string) []string {
	return mapDiff(envMap(want), envMap(got))
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, e := range env {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			v = "\x00unset" // "KEY" alone: taken from the daemon's environment
		}
		m[k] = v
	}
	return m
}

// mapDiff lists the keys whose values differ between want and got, sorted.
func mapDiff(want, got map[string]string) []string {
	var keys []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			keys = append(keys, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// userLabels are a service's labels without lockstep's own and the stack
// image label (compared on their own).
func userLabels(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	for k := range out {
		if strings.HasPrefix(k, "lockstep.") || k == compose.LabelStackImage {
			delete(out, k)
		}
	}
	return out
}

func configNames(c swarmapi.ContainerSpec) []string {
	var out []string
	for _, r := range c.Configs {
		if r != nil {
			out = append(out, r.ConfigName)
		}
	}
	slices.Sort(out)
	return out
}

func secretNames(c swarmapi.ContainerSpec) []string {
	var out []string
	for _, r := range c.Secrets {
		if r != nil {
			out = append(out, r.SecretName)
		}
	}
	slices.Sort(out)
	return out
}

// networkNames are the networks spec attaches to, by name: the swarm
// reports a network's id where the spec gave its name, so a target that
// is a known id is read as that network's name.
func networkNames(spec swarmapi.ServiceSpec, byID map[string]string) []string {
	var out []string
	for _, n := range spec.TaskTemplate.Networks {
		t := n.Target
		if name, ok := byID[t]; ok {
			t = name
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

func portsOf(spec swarmapi.ServiceSpec) []string {
	if spec.EndpointSpec == nil {
		return nil
	}
	var out []string
	for _, p := range spec.EndpointSpec.Ports {
		proto, mode := string(p.Protocol), string(p.PublishMode)
		if proto == "" {
			proto = "tcp"
		}
		if mode == "" {
			mode = "ingress"
		}
		out = append(out, fmt.Sprintf("%d:%d/%s (%s)", p.PublishedPort, p.TargetPort, proto, mode))
	}
	slices.Sort(out)
	return out
}

func mountsOf(c swarmapi.ContainerSpec) []string {
	var out []string
	for _, m := range c.Mounts {
		s := fmt.Sprintf("%s %s:%s", m.Type, m.Source, m.Target)
		if m.ReadOnly {
			s += ":ro"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func constraintsOf(spec swarmapi.ServiceSpec) []string {
	if spec.TaskTemplate.Placement == nil {
		return nil
	}
	out := slices.Clone(spec.TaskTemplate.Placement.Constraints)
	slices.Sort(out)
	return out
}

// resourcesOf is the spec's limits and reservations, nil read as zero.
func resourcesOf(spec swarmapi.ServiceSpec) [4]int64 {
	var out [4]int64
	if r := spec.TaskTemplate.Resources; r != nil {
		if r.Limits != nil {
			out[0], out[1] = r.Limits.NanoCPUs, r.Limits.MemoryBytes
		}
		if r.Reservations != nil {
			out[2], out[3] = r.Reservations.NanoCPUs, r.Reservations.MemoryBytes
		}
	}
	return out
}

func listText(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
