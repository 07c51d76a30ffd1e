package engine

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/lockstep-gitops/lockstep/compose"
)

// CreateNetwork creates n with its labels plus lockstep.hash. A network of
// that name that already carries n's project label is taken as created
// (a pass re-run after a crash); one that does not is an error, because
// lockstep would otherwise run containers on a network it does not own.
// An external network is only checked for existence.
//
// The engine (API < 1.44) does not refuse duplicate network names by
// itself, hence the lookup before the create.
func (e *Engine) CreateNetwork(ctx context.Context, n compose.Network) error {
	e.call(ctx, "create-network", n.Name)
	existing, found, err := e.inspectNetwork(ctx, n.Name)
	if err != nil {
		return fmt.Errorf("create network %s (networks.%s): %w", n.Name, n.Key, err)
	}
	if n.External {
		if !found {
			return fmt.Errorf("network %s (networks.%s) is declared external but does not exist: create it (docker network create %s) or drop `external: true`", n.Name, n.Key, n.Name)
		}
		return nil
	}
	project := n.Labels[compose.LabelProject]
	if found {
		if got := existing.Labels[compose.LabelProject]; got != project {
			return fmt.Errorf("create network %s (networks.%s): a network of that name already exists and belongs to %s, not project %s: remove or rename it, or declare it `external: true`", n.Name, n.Key, ownerOf(got), project)
		}
		e.logger(ctx).Debug().Str("network", n.Name).Msg("network exists already")
		return nil
	}

	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if n.Hash != "" {
		labels[compose.LabelHash] = n.Hash
	}
	if n.ConfigHash != "" {
		// As Compose labels the networks it creates; it recreates one whose
		// label differs from its own value.
		labels[compose.LabelConfigHash] = n.ConfigHash
	}
	opts := client.NetworkCreateOptions{
		Driver:     n.Driver,
		Options:    n.DriverOpts,
		Internal:   n.Internal,
		Attachable: n.Attachable,
		IPAM:       n.IPAM,
		Labels:     labels,
	}
	if n.EnableIPv6 {
		opts.EnableIPv6 = &n.EnableIPv6
	}
	res, err := e.cli.NetworkCreate(ctx, n.Name, opts)
	if err != nil {
		return fmt.Errorf("create network %s (networks.%s): %w", n.Name, n.Key, err)
	}
	for _, w := range res.Warning {
		e.logger(ctx).Warn().Str("network", n.Name).Str("warning", w).Msg("engine warning on network create")
	}
	e.logger(ctx).Debug().Str("network", n.Name).Str("network_id", shortID(res.ID)).Msg("created network")
	return nil
}

func ownerOf(project string) string {
	if project == "" {
		return "no compose project"
	}
	return "project " + project
}

// CreateVolume creates v. The engine answers a create of an existing name
// with the existing volume, so this looks first: an existing volume of the
// project is fine, one of another project is an error, and one without any
// project label is adopted with a warning, never recreated, because it may
// hold the data the operator cares about most.
func (e *Engine) CreateVolume(ctx context.Context, v compose.Volume) error {
	e.call(ctx, "create-volume", v.Name)
	res, err := e.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
	found := err == nil
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("create volume %s (volumes.%s): %w", v.Name, v.Key, err)
	}
	if v.External {
		if !found {
			return fmt.Errorf("volume %s (volumes.%s) is declared external but does not exist: create it (docker volume create %s) or drop `external: true`", v.Name, v.Key, v.Name)
		}
		return nil
	}
	project := v.Labels[compose.LabelProject]
	if found {
		got := res.Volume.Labels[compose.LabelProject]
		switch got {
		case project:
			e.logger(ctx).Debug().Str("volume", v.Name).Msg("volume exists already")
		case "":
			e.logger(ctx).Warn().Str("volume", v.Name).Str("project", project).
				Msg("volume exists already but was not created by compose or lockstep; using it as is (declare it `external: true` to silence this)")
		default:
			return fmt.Errorf("create volume %s (volumes.%s): a volume of that name already exists and belongs to project %s, not %s: set a different `name:` or declare it `external: true`", v.Name, v.Key, got, project)
		}
		return nil
	}
	labels := v.Labels
	if v.ConfigHash != "" {
		// As Compose labels the volumes it creates.
		labels = maps.Clone(v.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[compose.LabelConfigHash] = v.ConfigHash
	}
	_, err = e.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:       v.Name,
		Driver:     v.Driver,
		DriverOpts: v.DriverOpts,
		Labels:     labels,
	})
	if err != nil {
		return fmt.Errorf("create volume %s (volumes.%s): %w", v.Name, v.Key, err)
	}
	e.logger(ctx).Debug().Str("volume", v.Name).Msg("created volume")
	return nil
}

// CreateContainer creates (does not start) replica number of svc as name.
// Before the create it labels the container with the local image ID,
// resolves "service:x" namespace references to replica 1 of x, and, when
// inheritFrom is set, reuses that container's anonymous volumes. An engine
// at API 1.44 or later takes every network in the create itself; before
// 1.44 a create takes one network: the others are connected before
// returning, and a failed connect removes the new container (not its
// volumes) so no half-wired container is left behind.
func (e *Engine) CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	e.call(ctx, "create-container", name)
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("create container %s for service %s: %w", name, svc.Name, err)
	}
	cfg, host, nets := compose.ContainerCreate(svc, number)
	withNameAlias(nets, svc.ContainerNameFor(p.Name, number))

	img, err := e.inspectImage(ctx, cfg.Image)
	if cerrdefs.IsNotFound(err) {
		return fail(fmt.Errorf("image %s is not present locally: pull it first: %w", cfg.Image, err))
	}
	if err != nil {
		return fail(fmt.Errorf("inspect image %s: %w", cfg.Image, err))
	}
	// As compose does: the identity of the image the container was created
	// from, which `docker compose up` compares with the local image's.
	cfg.Labels[compose.LabelImage] = composeImageDigest(img.InspectResponse)

	refs, err := e.resolveServiceRefs(ctx, p.Name, svc.Name, host)
	if err != nil {
		return fail(err)
	}
	// Compose hashes network_mode/ipc/pid: service:x resolved to the
	// container id, so the label is only known now.
	cfg.Labels[compose.LabelConfigHash] = compose.ConfigHashWithRefs(svc, func(s string) (string, bool) {
		id, ok := refs[s]
		return id, ok
	})
	if host.NetworkMode.IsContainer() {
		// Sharing another container's network stack: no endpoints of its own.
		nets.EndpointsConfig = nil
	}

	if inheritFrom != "" {
		old, err := e.cli.ContainerInspect(ctx, inheritFrom, client.ContainerInspectOptions{})
		if err != nil {
			return fail(fmt.Errorf("inspect container %s to inherit its anonymous volumes: %w", shortID(inheritFrom), err))
		}
		var imageVolumes map[string]struct{}
		if img.Config != nil {
			imageVolumes = img.Config.Volumes
		}
		for _, v := range inheritAnonymousVolumes(cfg, host, imageVolumes, old.Container.Mounts) {
			e.logger(ctx).Debug().Str("container", name).Str("volume", v).Msg("inheriting anonymous volume")
		}
	}

	// The API version is negotiated by now: the image inspect above was a call.
	primary, atCreate, rest := networksAtCreate(e.cli.ClientVersion(), host.NetworkMode, nets.EndpointsConfig)
	create := client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host}
	if primary != "" {
		if host.NetworkMode == "" || host.NetworkMode.IsDefault() {
			host.NetworkMode = container.NetworkMode(primary)
		}
		create.NetworkingConfig = &network.NetworkingConfig{EndpointsConfig: atCreate}
	}
	res, err := e.cli.ContainerCreate(ctx, create)
	if err != nil {
		return fail(err)
	}
	for _, w := range res.Warnings {
		e.logger(ctx).Warn().Str("container", name).Str("warning", w).Msg("engine warning on container create")
	}
	for _, n := range rest {
		_, err := e.cli.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: nets.EndpointsConfig[n]})
		if err != nil {
			// RemoveVolumes stays false: inherited volumes are mounted here.
			if _, rmErr := e.cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); rmErr != nil {
				e.logger(ctx).Error().Err(rmErr).Str("container", name).Msg("remove half-created container")
			}
			return fail(fmt.Errorf("connect to network %s: %w", n, err))
		}
	}
	e.logger(ctx).Debug().Str("container", name).Str("container_id", shortID(res.ID)).Msg("created container")
	return res.ID, nil
}

// resolveServiceRefs rewrites "service:x" in network_mode, ipc, pid and
// volumes_from to "container:<id>" of replica 1 of x, as compose does: the
// engine knows containers, not services. It returns the ids by service.
func (e *Engine) resolveServiceRefs(ctx context.Context, project, service string, host *container.HostConfig) (map[string]string, error) {
	refs := map[string]string{}
	resolve := func(mode, key string) (string, error) {
		s, ok := strings.CutPrefix(mode, "service:")
		if !ok {
			return mode, nil
		}
		id, err := e.serviceContainer(ctx, project, s, key, service)
		if err != nil {
			return "", err
		}
		refs[s] = id
		return "container:" + id, nil
	}
	nm, err := resolve(string(host.NetworkMode), "network_mode")
	if err != nil {
		return nil, err
	}
	ipc, err := resolve(string(host.IpcMode), "ipc")
	if err != nil {
		return nil, err
	}
	pid, err := resolve(string(host.PidMode), "pid")
	if err != nil {
		return nil, err
	}
	host.NetworkMode, host.IpcMode, host.PidMode = container.NetworkMode(nm), container.IpcMode(ipc), container.PidMode(pid)
	for i, vf := range host.VolumesFrom {
		s, ok := strings.CutPrefix(vf, "service:")
		if !ok {
			continue
		}
		target, mode, _ := strings.Cut(s, ":")
		id, err := e.serviceContainer(ctx, project, target, "volumes_from", service)
		if err != nil {
			return nil, err
		}
		host.VolumesFrom = slices.Clone(host.VolumesFrom)
		host.VolumesFrom[i] = id
		if mode != "" {
			host.VolumesFrom[i] += ":" + mode
		}
	}
	return refs, nil
}

// serviceContainer returns the ID of replica 1 of service target.
func (e *Engine) serviceContainer(ctx context.Context, project, target, key, service string) (string, error) {
	f := projectFilter(project).
		Add("label", compose.LabelService+"="+target).
		Add("label", compose.LabelContainerNumber+"=1").
		Add("label", compose.LabelOneoff+"=False")
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return "", fmt.Errorf("%s: service:%s: find its container: %w", key, target, err)
	}
	if len(list.Items) == 0 {
		return "", fmt.Errorf("%s: service:%s of service %s: service %s has no container 1 in project %s yet: it must be created first (add it to depends_on)", key, target, service, target, project)
	}
	return list.Items[0].ID, nil
}

// multiNetworkCreateAPI is the first API version whose container create
// takes more than one network endpoint; earlier engines refuse a second.
const multiNetworkCreateAPI = "1.44"

// networksAtCreate splits a container's endpoints into those its create
// carries and the networks connected after it, for an engine at API
// version api. From 1.44 on, the create carries them all: one call wires
// the container, and there is no connect left to fail half-way.
func networksAtCreate(api string, mode container.NetworkMode, eps map[string]*network.EndpointSettings) (string, map[string]*network.EndpointSettings, []string) {
	primary, rest := splitNetworks(mode, eps)
	if primary == "" {
		return "", nil, nil
	}
	if versions.GreaterThanOrEqualTo(api, multiNetworkCreateAPI) {
		return primary, maps.Clone(eps), nil
	}
	return primary, map[string]*network.EndpointSettings{primary: eps[primary]}, rest
}

// splitNetworks picks the network a container is created on and the ones
// connected afterwards. The model keys endpoints by name, so order comes
// from the network mode (compose sets it to the primary network) and then
// from the names, which keeps the choice stable from run to run.
func splitNetworks(mode container.NetworkMode, eps map[string]*network.EndpointSettings) (string, []string) {
	if len(eps) == 0 {
		return "", nil
	}
	names := slices.Sorted(maps.Keys(eps))
	primary := names[0]
	if _, ok := eps[string(mode)]; ok {
		primary = string(mode)
	}
	rest := slices.DeleteFunc(names, func(n string) bool { return n == primary })
	return primary, rest
}

// inheritAnonymousVolumes makes the new container reuse the volumes old had
// at each mount point the new config leaves to an anonymous volume: a
// Config.Volumes entry, a volume mount without a source, a one-part bind,
// or a VOLUME of the image. Mount points the new config binds or names
// explicitly are its own. It returns the inherited volume names.
func inheritAnonymousVolumes(cfg *container.Config, host *container.HostConfig, imageVolumes map[string]struct{}, old []container.MountPoint) []string {
	oldVolumes := map[string]string{} // destination -> volume name
	for _, m := range old {
		if m.Type == mount.TypeVolume && m.Name != "" {
			oldVolumes[path.Clean(m.Destination)] = m.Name
		}
	}
	if len(oldVolumes) == 0 {
		return nil
	}

	explicit := map[string]bool{}
	for _, b := range host.Binds {
		if parts := strings.Split(b, ":"); len(parts) >= 2 {
			explicit[path.Clean(parts[1])] = true
		}
	}
	for _, m := range host.Mounts {
		if m.Type != mount.TypeVolume || m.Source != "" {
			explicit[path.Clean(m.Target)] = true
		}
	}
	for dst := range host.Tmpfs {
		explicit[path.Clean(dst)] = true
	}

	var inherited []string
	take := func(dst string) (string, bool) {
		dst = path.Clean(dst)
		name, ok := oldVolumes[dst]
		if !ok || explicit[dst] {
			return "", false
		}
		// Each mount point is inherited once, whichever way it is declared.
		explicit[dst] = true
		inherited = append(inherited, name)
		return name, true
	}

	for i, m := range host.Mounts {
		if m.Type == mount.TypeVolume && m.Source == "" {
			if name, ok := take(m.Target); ok {
				host.Mounts[i].Source = name
			}
		}
	}
	for i, b := range host.Binds {
		if !strings.Contains(b, ":") {
			if name, ok := take(b); ok {
				host.Binds[i] = name + ":" + b
			}
		}
	}
	// cfg.Volumes is still the service's shared map: copy before changing.
	volumes := maps.Clone(cfg.Volumes)
	for _, dst := range slices.Sorted(maps.Keys(cfg.Volumes)) {
		if name, ok := take(dst); ok {
			delete(volumes, dst)
			host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: path.Clean(dst)})
		}
	}
	cfg.Volumes = volumes
	for _, dst := range slices.Sorted(maps.Keys(imageVolumes)) {
		if name, ok := take(dst); ok {
			host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: path.Clean(dst)})
		}
	}
	return inherited
}

// withNameAlias puts the container's own name first among the aliases of
// each of its endpoints, as Docker Compose does (getAliases): the name the
// container keeps after a recreate renames it, not a temporary one. The
// embedded DNS resolves a container's name anyway, so the planner's alias
// comparison leaves it out (fileAliases) and containers created before it
// was added are not reconnected; it is added here, not in the service's
// model, so lockstep.hash stays what it was.
func withNameAlias(nets *network.NetworkingConfig, name string) {
	if nets == nil {
		return
	}
	for _, ep := range nets.EndpointsConfig {
		if ep != nil && !slices.Contains(ep.Aliases, name) {
			ep.Aliases = append([]string{name}, ep.Aliases...)
		}
	}
}
