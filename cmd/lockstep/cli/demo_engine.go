package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// demoState is what the engine holds of the project: containers by name,
// networks by name, each with its ID.
type demoState struct {
	containers map[string]demoContainer
	networks   map[string]string
}

type demoContainer struct{ id, image string }

// snapshot reads the project's containers and networks from the engine by
// their compose label: what the narration compares, rather than trusting
// what the agent says it did.
func (s *demoStory) snapshot(ctx context.Context) (demoState, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := demoState{containers: map[string]demoContainer{}, networks: map[string]string{}}
	filter := make(client.Filters).Add("label", compose.LabelProject+"="+s.project)
	ctrs, err := s.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return st, fmt.Errorf("list the containers of project %s: %w", s.project, err)
	}
	for _, ct := range ctrs.Items {
		name := ct.ID
		if len(ct.Names) > 0 {
			name = strings.TrimPrefix(ct.Names[0], "/")
		}
		st.containers[name] = demoContainer{id: ct.ID, image: ct.Image}
	}
	nets, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return st, fmt.Errorf("list the networks of project %s: %w", s.project, err)
	}
	for _, n := range nets.Items {
		st.networks[n.Name] = n.ID
	}
	return st, nil
}

// showChanges prints what changed on the engine since before.
func (s *demoStory) showChanges(ctx context.Context, before demoState) error {
	after, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	for _, line := range engineChanges(before, after) {
		s.say("%s", line)
	}
	return nil
}

// engineChanges lists, sorted by name, what differs between two snapshots:
// networks created or removed, and every container created, recreated
// (a new ID under the same name), removed or untouched.
func engineChanges(before, after demoState) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(after.networks)) {
		if _, ok := before.networks[name]; !ok {
			lines = append(lines, "+ network "+name+" created")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before.networks)) {
		if _, ok := after.networks[name]; !ok {
			lines = append(lines, "- network "+name+" removed")
		}
	}
	names := slices.Sorted(maps.Keys(after.containers))
	for name := range before.containers {
		if _, ok := after.containers[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		b, had := before.containers[name]
		a, has := after.containers[name]
		switch {
		case !had:
			lines = append(lines, fmt.Sprintf("+ %s created (image %s)", name, a.image))
		case !has:
			lines = append(lines, fmt.Sprintf("- %s removed", name))
		case a.id != b.id && a.image != b.image:
			lines = append(lines, fmt.Sprintf("~ %s recreated (image %s -> %s)", name, b.image, a.image))
		case a.id != b.id:
			lines = append(lines, fmt.Sprintf("~ %s recreated (same image %s)", name, a.image))
		default:
			lines = append(lines, fmt.Sprintf("= %s untouched (container %s)", name, shortID(a.id)))
		}
	}
	return lines
}

// shortID is a container ID as `docker ps` shows it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// cleanup removes everything the demo created: the project's containers,
// networks and volumes (found by its compose label, so a half-finished
// apply leaves nothing behind either), its image tags and its directory.
func (s *demoStory) cleanup(ctx context.Context) []error {
	var errs []error
	filter := make(client.Filters).Add("label", compose.LabelProject+"="+s.project)
	var nCtr, nNet, nVol, nImg int
	ctrs, err := s.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the containers of project %s: %w", s.project, err))
	}
	for _, ct := range ctrs.Items {
		_, err := s.docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", ct.ID, err))
			continue
		}
		nCtr++
	}
	nets, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the networks of project %s: %w", s.project, err))
	}
	for _, n := range nets.Items {
		if _, err := s.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			continue
		}
		nNet++
	}
	// The demo's stack declares no volume; this removes any a future
	// version of its compose file adds. They hold nothing but demo data.
	vols, err := s.docker.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the volumes of project %s: %w", s.project, err))
	}
	for _, v := range vols.Items {
		if _, err := s.docker.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			continue
		}
		nVol++
	}
	// By reference, never by ID: an identical image somebody tagged
	// otherwise stays theirs.
	for _, ref := range s.images {
		_, err := s.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			continue
		}
		nImg++
	}
	if err := gitsource.RemoveReadOnlyTree(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove the demo directory %s: %w", s.dir, err))
	}
	var removed []string
	for _, n := range []struct {
		count     int
		one, many string
	}{
		{nCtr, "container", "containers"}, {nNet, "network", "networks"},
		{nVol, "volume", "volumes"}, {nImg, "image tag", "image tags"},
	} {
		if n.count > 0 {
			removed = append(removed, fmt.Sprintf("%d %s", n.count, plural(n.count, n.one, n.many)))
		}
	}
	removed = append(removed, s.dir)
	s.say("removed %s", strings.Join(removed, ", "))
	return errs
}

// removeHint says how to remove by hand what the demo made: with Docker
// Compose v2, which reads the project from its labels, and the rest with
// plain docker.
func (s *demoStory) removeHint() string {
	hint := fmt.Sprintf("docker compose -p %s down", s.project)
	if len(s.images) > 0 {
		hint += " && docker image rm " + strings.Join(s.images, " ")
	}
	return hint + fmt.Sprintf(" && chmod -R u+w %s && rm -rf %s", s.dir, s.dir)
}

// removeHintNoCompose is removeHint's first part for hosts without Docker
// Compose v2 (the v1 `docker-compose` insists on a compose file).
func (s *demoStory) removeHintNoCompose() string {
	return fmt.Sprintf("docker rm -f $(docker ps -aq --filter label=%s=%s) && docker network rm %s_default",
		compose.LabelProject, s.project, s.project)
}
