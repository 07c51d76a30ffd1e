package compose

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// converter turns one loaded compose-go project into lockstep's model.
// Conversions follow what Docker Compose v2 does when it creates a
// container (pkg/compose/create.go), so a service behaves the same under
// lockstep as under `docker compose up`.
type converter struct {
	opts        LoadOptions
	src         *sources
	cp          *types.Project
	files       []string // absolute compose files
	realRoot    string   // ReleaseDir with symlinks resolved
	fileCache   map[string]string
	secrets     *keyring
	secretFiles map[string]secretWrite // by host path: the decrypted configs/secrets the services bind
	warnings    []Warning              // keys ignored as Docker Compose ignores them (see ignore)
}

func convertProject(opts LoadOptions, files []string, src *sources, cp *types.Project, k *keyring) (*Project, error) {
	realRoot, err := filepath.EvalSymlinks(opts.ReleaseDir)
	if err != nil {
		return nil, fmt.Errorf("load: resolve release dir %s: %w", opts.ReleaseDir, err)
	}
	c := &converter{opts: opts, src: src, cp: cp, files: files, realRoot: realRoot, fileCache: map[string]string{},
		secrets: k, secretFiles: map[string]secretWrite{}}

	if len(cp.Jobs) > 0 {
		file, line := src.find("jobs")
		return nil, &LoadError{File: file, Line: line, Key: "jobs", Msg: "jobs are not supported by lockstep; run one-off tasks as services with restart: \"no\""}
	}

	p := &Project{
		Name:        opts.Project,
		Environment: opts.Environment,
		Commit:      opts.Commit,
		ReleaseDir:  opts.ReleaseDir,
		ConfigFiles: slices.Clone(files),
	}
	if opts.Swarm {
		return c.stack(p)
	}
	for _, key := range sortedKeys(cp.Networks) {
		n, err := c.network(key, cp.Networks[key])
		if err != nil {
			return nil, err
		}
		p.Networks = append(p.Networks, n)
	}
	slices.SortFunc(p.Networks, func(a, b Network) int { return strings.Compare(a.Name, b.Name) })
	for _, key := range sortedKeys(cp.Volumes) {
		v, err := c.volume(key, cp.Volumes[key])
		if err != nil {
			return nil, err
		}
		p.Volumes = append(p.Volumes, v)
	}
	slices.SortFunc(p.Volumes, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })

	var services []Service
	for _, name := range sortedKeys(cp.Services) {
		svc, err := c.service(cp.Services[name])
		if err != nil {
			return nil, err
		}
		services = append(services, svc)
		mps, err := c.mountPoints(cp.Services[name])
		if err != nil {
			return nil, err
		}
		p.MountPoints = append(p.MountPoints, mps...)
	}
	p.Warnings = c.warnings
	slices.Sort(p.MountPoints)
	p.MountPoints = slices.Compact(p.MountPoints)
	if err := uniqueContainerNames(src, opts.Project, services); err != nil {
		return nil, err
	}
	if p.Services, err = orderServices(services); err != nil {
		return nil, err
	}
	if len(c.secretFiles) > 0 {
		p.SecretFiles = sortedKeys(c.secretFiles)
		p.secrets = &secretWrites{runtimeDir: filepath.Clean(opts.Secrets.RuntimeDir)}
		for _, target := range p.SecretFiles {
			p.secrets.files = append(p.secrets.files, c.secretFiles[target])
		}
	}
	return p, nil
}

// uniqueContainerNames refuses two services with the same container_name,
// as `docker compose up` does before it creates anything: the engine takes
// a name once, so the second service could never start (and a recreate of
// either would take the other down). Services scaled to 0 count too, as in
// compose. services are sorted by name: the first keeps the name, every
// other one is reported.
func uniqueContainerNames(src *sources, project string, services []Service) error {
	owner := map[string]string{}
	var errs []error
	for _, s := range services {
		if s.ContainerName == "" {
			continue
		}
		first, taken := owner[s.ContainerName]
		if !taken {
			owner[s.ContainerName] = s.Name
			continue
		}
		errs = append(errs, located(src, s.Name, "container_name", fmt.Sprintf(
			"container name %q is already in use by service %s; give each service its own container_name, or remove it (the container is then named %s-%s-1)",
			s.ContainerName, first, project, s.Name)))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func (c *converter) volume(key string, v types.VolumeConfig) (Volume, error) {
	out := Volume{
		Key:        key,
		Name:       v.Name,
		External:   bool(v.External),
		Driver:     v.Driver,
		DriverOpts: cloneMap(v.DriverOpts),
	}
	if !out.External {
		out.Labels = cloneMap(v.Labels)
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		out.Labels[LabelProject] = c.opts.Project
		out.Labels[LabelVolume] = key
		out.Labels[LabelVersion] = c.opts.Version
		var err error
		if out.ConfigHash, err = composeVolumeHash(v); err != nil {
			return Volume{}, err
		}
	}
	return out, nil
}

func cloneMap[M ~map[string]string](m M) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func withoutKeys(m map[string]string, keys ...string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if !slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}

func sortedList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	slices.Sort(l)
	return l
}

func dedupeFiles(files []File) []File {
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return slices.CompactFunc(files, func(a, b File) bool { return a.Path == b.Path })
}
