package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// inspectFlat is one engine object's `docker inspect`, flattened to field path ->
// value ("HostConfig.Binds[0]" -> "<dir>/nginx.conf:/etc/nginx.conf:ro"),
// normalized so that two deploys of the same files compare equal field by
// field: project and release directories read "<dir>", container IDs read
// "<container SERVICE>", anonymous volume names "<anonymous volume TARGET>".
type inspectFlat map[string]string

// paritySnapshot is what one tool deployed for a project: containers by
// name, networks and volumes by engine name, and the container IDs
// (takeover counts compare them).
type paritySnapshot struct {
	containers map[string]inspectFlat
	networks   map[string]inspectFlat
	volumes    map[string]inspectFlat
	ids        map[string]string
	// mounts lists each container's bind sources, raw: takeover (b) expects
	// a recreate where one lies in the project directory.
	mounts map[string][]string
}

// takeParitySnapshot inspects every container, network and volume carrying the
// project label. dir is the directory the tool deployed from (Compose's
// project directory, lockstep's release directory).
func takeParitySnapshot(cli *client.Client, project, dir string) (paritySnapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := paritySnapshot{containers: map[string]inspectFlat{}, networks: map[string]inspectFlat{}, volumes: map[string]inspectFlat{},
		ids: map[string]string{}, mounts: map[string][]string{}}
	filter := client.Filters{}.Add("label", "com.docker.compose.project="+project)
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return s, fmt.Errorf("list containers: %w", err)
	}
	var raws []map[string]any
	var names []string
	pairs := dirPairs(dir)
	for _, c := range list.Items {
		in, err := cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return s, fmt.Errorf("inspect container %s: %w", c.ID, err)
		}
		// Keyed by container name (<project>-<service>-<n>, or the
		// container_name): a scaled service has several.
		name := strings.TrimPrefix(in.Container.Name, "/")
		s.ids[name] = c.ID
		pairs = append(pairs, c.ID, "<container "+name+">", c.ID[:12], "<container "+name+">")
		for _, m := range in.Container.Mounts {
			if m.Type == "volume" && anonVolumeName.MatchString(m.Name) {
				pairs = append(pairs, m.Name, "<anonymous volume "+m.Destination+">")
			}
			if m.Type == "bind" {
				s.mounts[name] = append(s.mounts[name], m.Source)
			}
		}
		raw, err := toGeneric(in.Container)
		if err != nil {
			return s, err
		}
		raws = append(raws, raw)
		names = append(names, name)
	}
	// Full IDs come before their 12-character prefixes: a Replacer tries
	// its pairs in argument order at each position.
	norm := strings.NewReplacer(pairs...)
	for i, raw := range raws {
		s.containers[names[i]] = flattenInspect(sortUnordered(raw), norm)
	}
	if err := parityNetworks(ctx, cli, filter, norm, s.networks); err != nil {
		return s, err
	}
	return s, parityVolumes(ctx, cli, filter, norm, s.volumes)
}

var anonVolumeName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// dirPairs maps the directory (and its resolved path) to "<dir>".
func dirPairs(dir string) []string {
	pairs := []string{dir, "<dir>"}
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		pairs = append(pairs, real, "<dir>")
	}
	return pairs
}

func parityNetworks(ctx context.Context, cli *client.Client, filter client.Filters, norm *strings.Replacer, out map[string]inspectFlat) error {
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets.Items {
		in, err := cli.NetworkInspect(ctx, n.ID, client.NetworkInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect network %s: %w", n.Name, err)
		}
		raw, err := toGeneric(in.Network)
		if err != nil {
			return err
		}
		out[n.Name] = flattenInspect(raw, norm)
	}
	return nil
}

func parityVolumes(ctx context.Context, cli *client.Client, filter client.Filters, norm *strings.Replacer, out map[string]inspectFlat) error {
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range vols.Items {
		in, err := cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect volume %s: %w", v.Name, err)
		}
		raw, err := toGeneric(in.Volume)
		if err != nil {
			return err
		}
		out[v.Name] = flattenInspect(raw, norm)
	}
	return nil
}

// toGeneric round-trips an inspect answer through JSON, so fields are named
// as `docker inspect` prints them.
func toGeneric(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// unorderedLists are the container lists of objects whose order the
// engine does not act on (mounts, ulimits); they are sorted by target or name so that an
// order that differs only by map iteration in either tool is not
// reported. Lists whose order matters (Cmd, Entrypoint, Dns) keep it;
// lists of strings that are sets are flattened member by member.
var unorderedLists = []string{"HostConfig.Mounts", "HostConfig.Ulimits", "Mounts"}

func sortUnordered(raw map[string]any) map[string]any {
	for _, p := range unorderedLists {
		parent, key := raw, p
		if i := strings.Index(p, "."); i >= 0 {
			m, _ := raw[p[:i]].(map[string]any)
			parent, key = m, p[i+1:]
		}
		list, _ := parent[key].([]any)
		sort.SliceStable(list, func(i, j int) bool { return unorderedKey(list[i]) < unorderedKey(list[j]) })
	}
	return raw
}

// unorderedKey orders strings by value and mounts by where they are mounted.
func unorderedKey(v any) string {
	if m, ok := v.(map[string]any); ok {
		for _, k := range []string{"Destination", "Target", "Name"} {
			if s, ok := m[k].(string); ok {
				return s
			}
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var plainFieldKey = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// stringSets are the lists of strings the engine treats as sets (the
// variables, binds, capabilities, extra hosts, and the names a container
// answers to on a network): compared member by member, in any order.
var stringSets = regexp.MustCompile(`^(Config\.Env|HostConfig\.(Binds|CapAdd|CapDrop|ExtraHosts)|NetworkSettings\.Networks(\.[^.\[]+|\[[^\]]+\])\.Aliases)$`)

func isStringSet(path string) bool { return stringSets.MatchString(path) }

// dependsOnLabel lists a service's dependencies. Compose v5.6 writes them
// in Go map iteration order (create.go ranges over service.DependsOn), so
// its own value changes from one create to the next: the list is compared
// as a set.
const dependsOnLabel = "Config.Labels[com.docker.compose.depends_on]"

func sortedCommaList(s string) string {
	parts := strings.Split(s, ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// keepsEmpty says whether an empty list at path means something other
// than an absent one. To the engine, an empty map, an empty list and null
// are all "not set" (ExtraHosts [] and null, PortBindings {} and null,
// BindOptions {} and none), so flattenInspect leaves them out and a tool
// that sends one and a tool that sends the other compare equal; only an
// empty Cmd or Entrypoint is a value of its own ("override the image's
// with nothing").
func keepsEmpty(path string) bool {
	return path == "Config.Cmd" || path == "Config.Entrypoint"
}

// flattenInspect turns a decoded JSON value into path -> value. Map keys that are
// not plain identifiers (labels, options) are bracketed: Labels[a.b.c].
func flattenInspect(raw map[string]any, norm *strings.Replacer) inspectFlat {
	out := inspectFlat{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				k = norm.Replace(k)
				p := path + "." + k
				if !plainFieldKey.MatchString(k) {
					p = path + "[" + k + "]"
				}
				walk(strings.TrimPrefix(p, "."), child)
			}
		case []any:
			if len(x) == 0 && keepsEmpty(path) {
				out[path] = "[]"
			}
			if isStringSet(path) {
				// One field per member, so a difference names the member
				// rather than every index after it.
				for _, child := range x {
					out[fmt.Sprintf("%s{%s}", path, norm.Replace(fmt.Sprint(child)))] = "present"
				}
				return
			}
			for i, child := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		case nil:
		case string:
			if path == dependsOnLabel {
				x = sortedCommaList(x)
			}
			out[path] = norm.Replace(x)
		default:
			b, _ := json.Marshal(x)
			out[path] = string(b)
		}
	}
	walk("", raw)
	return out
}

// parityDiff is one field that differs between Compose's and lockstep's
// deploy of the same stack. Reason is set when the difference is expected
// (documented in parityExpected); an empty Reason fails the suite.
type parityDiff struct {
	Kind, Object, Path string
	Compose, Lockstep  string
	Reason             string
}

func (d parityDiff) String() string {
	s := fmt.Sprintf("%s %s %s: compose %q, lockstep %q", d.Kind, d.Object, d.Path, d.Compose, d.Lockstep)
	if d.Reason != "" {
		s += " (expected: " + d.Reason + ")"
	}
	return s
}

const parityAbsent = "<absent>"

// diffObjects compares two sets of flattened objects of one kind, leaving
// out the fields ignore names (with the reason it gives).
func diffObjects(kind string, compose, lockstep map[string]inspectFlat, ignore func(path string) string) []parityDiff {
	var out []parityDiff
	names := map[string]bool{}
	for n := range compose {
		names[n] = true
	}
	for n := range lockstep {
		names[n] = true
	}
	for _, name := range paritySorted(names) {
		c, inC := compose[name]
		l, inL := lockstep[name]
		if !inC || !inL {
			d := parityDiff{Kind: kind, Object: name, Path: "(object)", Compose: "present", Lockstep: "present"}
			if !inC {
				d.Compose = parityAbsent
			} else {
				d.Lockstep = parityAbsent
			}
			out = append(out, d)
			continue
		}
		paths := map[string]bool{}
		for p := range c {
			paths[p] = true
		}
		for p := range l {
			paths[p] = true
		}
		for _, p := range paritySorted(paths) {
			cv, ok1 := c[p]
			lv, ok2 := l[p]
			if ok1 && ok2 && cv == lv || ignore(p) != "" {
				continue
			}
			if !ok1 {
				cv = parityAbsent
			}
			if !ok2 {
				lv = parityAbsent
			}
			out = append(out, parityDiff{Kind: kind, Object: name, Path: p, Compose: cv, Lockstep: lv})
		}
	}
	return out
}

func paritySorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
