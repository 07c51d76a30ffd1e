package reconcile

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Adoption: the first pass of lockstep on a project Docker Compose created
// (same project name) takes over what is equal and recreates only what
// differs, saying why. A container is equal when its com.docker.compose.
// config-hash is the value Docker Compose computes for the desired service
// (Service.ConfigHash) and it runs the desired image: it is kept as it is,
// and the pass records it (reconcile/state) so later passes treat it as
// lockstep's. Everything here is worded "adopt: ...", and never drift: the
// operator moved the project to lockstep, nobody changed it behind its back.

const (
	reasonAdoptKept        = "adopt: configuration equal, kept"
	reasonAdoptNetworkKept = "adopt: created by Docker Compose with the same configuration, kept"
	reasonAdoptVolumeKept  = "adopt: created by Docker Compose, kept (its data is never touched)"
)

// adoptReasons says why c, a container without a lockstep.hash, cannot be
// adopted as it is: nil when it can.
func adoptReasons(desired *compose.Project, observed compose.Observed, svc *compose.Service, c compose.Container, name string) []string {
	var reasons []string
	if c.Image != svc.Image {
		reasons = append(reasons, fmt.Sprintf("adopt: image %s -> %s", c.Image, svc.Image))
	} else if want := observed.Images[svc.Image]; want != "" && c.ImageID != "" && want != c.ImageID {
		reasons = append(reasons, fmt.Sprintf("adopt: image %s updated (%s -> %s)", svc.Image, shortID(c.ImageID), shortID(want)))
	}
	// A service sharing another's namespace (network_mode: service:x) is
	// hashed by Compose with x's container ID in place of the reference.
	want := compose.ConfigHashIn(svc, desired.ReleaseDir, c.WorkingDir, func(service string) (string, bool) { return firstContainer(observed, service) })
	if c.ConfigHash == "" || c.ConfigHash != want {
		diff := specReasons(desired, svc, c)
		if len(diff) == 0 {
			diff = []string{fmt.Sprintf("adopt: configuration differs from the compose files (config-hash %s -> %s)", short(c.ConfigHash), short(want))}
		}
		reasons = append(reasons, diff...)
	} else if c.Spec != nil {
		// Compose's config-hash names a config or secret by its key, not by
		// the file it binds: a container binding the operator's working
		// copy hashes the same as one binding the release. What runs must
		// be the immutable release, so the mounts are compared too.
		reasons = append(reasons, mountReasons(desired, compose.SpecOf(svc).Mounts, c.Spec.Mounts)...)
	}
	if c.Name != name {
		reasons = append(reasons, fmt.Sprintf("adopt: container name %s, want %s", c.Name, name))
	}
	if c.State == "dead" && len(reasons) == 0 {
		reasons = append(reasons, "adopt: container is dead")
	}
	return reasons
}

// firstContainer is the ID of service's lowest-numbered container, the one
// Compose resolves a service: reference to.
func firstContainer(observed compose.Observed, service string) (string, bool) {
	id, best := "", 0
	for _, c := range observed.Containers {
		if c.Service == service && c.Number > 0 && (id == "" || c.Number < best) {
			id, best = c.ID, c.Number
		}
	}
	return id, id != ""
}

// planAdoption plans replica n, whose container keep has no lockstep.hash:
// kept when its configuration is equal (ActAdopt, then whatever a right
// replica needs: a start, a reconnect), else recreated with the
// differences as reasons. It says whether the replica is replaced.
func (p *servicePlanner) planAdoption(svc *compose.Service, keep compose.Container, n int, name string) (replaced bool) {
	reasons := adoptReasons(p.desired, p.observed, svc, keep, name)
	if len(reasons) == 0 {
		p.sp.services = append(p.sp.services, Action{
			Kind: ActAdopt, Service: svc.Name, Number: n, Container: name, ContainerID: keep.ID,
			Image: svc.Image, Reasons: []string{reasonAdoptKept}, Adopt: true,
		})
		p.adopting = true
		return false
	}
	a, why := recreateAction(svc, keep, n, name, reasons, false)
	a.Adopt = true
	if why != "" {
		p.sp.warnings = append(p.sp.warnings, fmt.Sprintf(
			"service %s: update_config.order start-first is not possible because %s; it is recreated stop-first (brief downtime)",
			svc.Name, why))
	}
	p.sp.services = append(p.sp.services, a)
	p.adopting = true
	return true
}

// specReasons explains, field by field, how the container differs from the
// desired create configuration, as far as its observed Spec tells: nil
// when it does not know (no Spec) or finds nothing it can name.
func specReasons(desired *compose.Project, svc *compose.Service, c compose.Container) []string {
	if c.Spec == nil {
		return nil
	}
	want, got := compose.SpecOf(svc), *c.Spec
	out := mountReasons(desired, want.Mounts, got.Mounts)
	out = append(out, envReasons(want.Env, got.Env)...)
	if !slices.Equal(want.Ports, got.Ports) {
		out = append(out, fmt.Sprintf("adopt: published ports %s -> %s", portsText(got.Ports), portsText(want.Ports)))
	}
	// Left to the image on the desired side: the observed value is the
	// image's, nothing to compare. Values are not shown: a command line
	// can carry a secret as well as an environment can.
	if want.Entrypoint != nil && !slices.Equal(want.Entrypoint, got.Entrypoint) {
		out = append(out, "adopt: entrypoint changed")
	}
	if want.Cmd != nil && !slices.Equal(want.Cmd, got.Cmd) {
		out = append(out, "adopt: command changed")
	}
	return out
}

func portsText(ports []string) string {
	if len(ports) == 0 {
		return "none"
	}
	return strings.Join(ports, ", ")
}

// mountReasons compares mounts by target. A bind whose source moves from a
// directory on the host into the release directory is the usual one: a
// compose directory updated in place (git pull) becomes an immutable
// release. Volumes the container has and the service does not are left
// out: an image's VOLUME makes them without the compose files saying so.
func mountReasons(desired *compose.Project, want, got []compose.SpecMount) []string {
	var out []string
	gotBy := map[string]compose.SpecMount{}
	for _, m := range got {
		gotBy[m.Target] = m
	}
	wantBy := map[string]bool{}
	for _, w := range want {
		wantBy[w.Target] = true
		g, ok := gotBy[w.Target]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("adopt: mount %s added (%s)", w.Target, w.Type))
		case g.Type != w.Type:
			out = append(out, fmt.Sprintf("adopt: mount %s: %s -> %s", w.Target, g.Type, w.Type))
		case w.Type == "bind" && g.Source != w.Source && inDir(w.Source, desired.ReleaseDir):
			out = append(out, fmt.Sprintf("adopt: bind source moves from %s to the immutable release", g.Source))
		case w.Type == "bind" && g.Source != w.Source:
			out = append(out, fmt.Sprintf("adopt: bind source of %s changes from %s to %s", w.Target, g.Source, w.Source))
		case w.Type == "volume" && w.Source != "" && g.Source != w.Source:
			out = append(out, fmt.Sprintf("adopt: mount %s: volume %s -> %s", w.Target, g.Source, w.Source))
		}
	}
	for _, g := range got {
		if g.Type == "bind" && !wantBy[g.Target] {
			out = append(out, fmt.Sprintf("adopt: bind %s (from %s) no longer used", g.Target, g.Source))
		}
	}
	return out
}

// inDir says whether path is dir or inside it.
func inDir(path, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// envReasons names the environment variables the service sets that the
// container has with another value or not at all: names only, never
// values. Variables the container has and the service does not are left
// out: the image's ENV puts them there.
func envReasons(want, got map[string]string) []string {
	var changed, added []string
	for name, d := range want {
		g, ok := got[name]
		switch {
		case !ok:
			added = append(added, name)
		case g != d:
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	sort.Strings(added)
	var out []string
	if len(changed) > 0 {
		out = append(out, "adopt: environment "+strings.Join(changed, ", ")+" changed")
	}
	if len(added) > 0 {
		out = append(out, "adopt: environment "+strings.Join(added, ", ")+" added")
	}
	return out
}
