package fake

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Engine records every call Apply makes, in order, as one line each
// ("stop web1 timeout=7s"), and answers from a script. It stands in for
// the engine only behind reconcile's small Engine interface, which it
// implements (structurally: this package must not import reconcile).
type Engine struct {
	Mu    sync.Mutex
	calls []string
	// Fail makes the call whose recorded line starts with the key fail.
	Fail map[string]error
	// States scripts what InspectContainer returns for an ID: each inspect
	// takes the next state, the last one repeats.
	States map[string][]compose.Container
	// OnInspect runs before each inspect (to cancel a context mid-wait).
	OnInspect func(id string)
	created   int
	// Observed is what Observe reports (nothing when nil).
	Observed *compose.Observed
	// ContainerLogs is what Logs returns for a container ID or name.
	ContainerLogs map[string][]string
	// names maps the names of containers the fake created (and renamed)
	// to their IDs, so an inspect by name finds a scripted ID.
	names map[string]string
	// World, when set (UseWorld), makes the fake stateful: the containers
	// it creates, starts, stops, renames and removes are what Observe and
	// InspectContainer report. Keyed by ID.
	World map[string]*compose.Container
	// onStart, per service, changes what a started container looks like
	// in the world (a one-shot exits, a broken release crash-loops).
	onStart map[string]func(c *compose.Container)
	// healthchecked notes the IDs created from a service with a
	// healthcheck: the world reports them healthy once started.
	healthchecked map[string]bool
}

// ImageID is the image ID the stateful fake reports for ref.
func ImageID(ref string) string { return "sha256:img-" + ref }

// UseWorld makes the fake stateful, starting from the containers of o
// (networks and volumes stay as o has them).
func (f *Engine) UseWorld(o compose.Observed) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.World = map[string]*compose.Container{}
	for _, c := range o.Containers {
		c := c
		c.ImageID = ImageID(c.Image)
		c.Networks = maps.Clone(c.Networks) // the world changes its own copy
		f.World[c.ID] = &c
	}
	o.Containers = nil
	f.Observed = &o
}

// SetOnStart scripts how service's containers behave once started.
func (f *Engine) SetOnStart(service string, fn func(c *compose.Container)) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.onStart[service] = fn
}

// resolve returns the ID of the container named or identified by x.
// Called with f.Mu held.
func (f *Engine) resolve(x string) string {
	if id, ok := f.names[x]; ok {
		return id
	}
	for id, c := range f.World {
		if c.Name == x {
			return id
		}
	}
	return x
}

// NewEngine returns an Engine that records calls and fails none.
func NewEngine() *Engine {
	return &Engine{
		Fail: map[string]error{}, States: map[string][]compose.Container{}, ContainerLogs: map[string][]string{},
		names: map[string]string{}, onStart: map[string]func(*compose.Container){}, healthchecked: map[string]bool{},
	}
}

func (f *Engine) record(ctx context.Context, format string, args ...any) error {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	line := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, line)
	if _, ok := ctx.Deadline(); !ok {
		return fmt.Errorf("fake engine: %s called without a deadline", line)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for prefix, err := range f.Fail {
		if strings.HasPrefix(line, prefix) {
			return err
		}
	}
	return nil
}

// Calls returns the recorded calls, in order.
func (f *Engine) Calls() []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return append([]string{}, f.calls...)
}

// Script sets the successive states InspectContainer reports for id.
func (f *Engine) Script(id string, states ...compose.Container) {
	for i := range states {
		states[i].ID = id
	}
	f.States[id] = states
}

func (f *Engine) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	var o compose.Observed
	if f.Observed != nil {
		o = *f.Observed
	}
	err := f.record(ctx, "observe %s", p.Name)
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.World != nil {
		o.Containers = nil
		for _, c := range f.World {
			o.Containers = append(o.Containers, *c)
		}
		slices.SortFunc(o.Containers, func(a, b compose.Container) int {
			return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Number, b.Number), cmp.Compare(a.Name, b.Name))
		})
		o.Images = map[string]string{}
		for _, s := range p.Services {
			o.Images[s.Image] = ImageID(s.Image)
		}
	}
	return o, err
}

func (f *Engine) Pull(ctx context.Context, ref string) (string, error) {
	if err := f.record(ctx, "pull %s", ref); err != nil {
		return "", err
	}
	return "sha256:pulled-" + ref, nil
}

func (f *Engine) CreateNetwork(ctx context.Context, n compose.Network) error {
	if err := f.record(ctx, "create-network %s", n.Name); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.World == nil {
		return nil
	}
	for _, on := range f.Observed.Networks {
		if on.Name == n.Name {
			return nil
		}
	}
	// A new network has a new ID: endpoints of the one it replaces are stale.
	f.Observed.Networks = append(slices.Clone(f.Observed.Networks), compose.ObservedNetwork{
		ID: "created-" + n.Name, Name: n.Name, Labels: withHash(n),
	})
	return nil
}

func (f *Engine) CreateVolume(ctx context.Context, v compose.Volume) error {
	return f.record(ctx, "create-volume %s", v.Name)
}

func (f *Engine) CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	line := fmt.Sprintf("create %s#%d %s", svc.Name, number, name)
	if inheritFrom != "" {
		line += " inherit=" + inheritFrom
	}
	if err := f.record(ctx, "%s", line); err != nil {
		return "", err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.created++
	id := fmt.Sprintf("new%d", f.created)
	f.names[name] = id
	f.healthchecked[id] = svc.Healthcheck
	if f.World != nil {
		c := &compose.Container{
			ID: id, Name: name, Service: svc.Name, Number: number, State: "created",
			Image: svc.Image, ImageID: ImageID(svc.Image), Hash: svc.Hash, ConfigHash: svc.ConfigHash, SpecHash: svc.SpecHash,
			Commit: p.Commit, WorkingDir: p.ReleaseDir,
		}
		if svc.Networking != nil {
			c.Networks = map[string]compose.Endpoint{}
			for network := range svc.Networking.EndpointsConfig {
				c.Networks[network] = endpointOf(f.Observed, svc, network)
			}
		}
		f.World[id] = c
	}
	return id, nil
}

func (f *Engine) StartContainer(ctx context.Context, id string) error {
	if err := f.record(ctx, "start %s", id); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if c := f.World[id]; c != nil {
		c.State, c.ExitCode, c.Health = "running", 0, ""
		if f.healthchecked[id] {
			c.Health = "healthy"
		}
		if fn := f.onStart[c.Service]; fn != nil {
			fn(c)
		}
	}
	return nil
}

func (f *Engine) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	t := "nil"
	if timeout != nil {
		t = timeout.String()
	}
	if err := f.record(ctx, "stop %s timeout=%s", id, t); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if c := f.World[id]; c != nil {
		c.State, c.Health = "exited", ""
	}
	return nil
}

func (f *Engine) RemoveContainer(ctx context.Context, id string) error {
	if err := f.record(ctx, "remove %s", id); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	delete(f.World, id)
	return nil
}

func (f *Engine) RemoveNetwork(ctx context.Context, name string) error {
	if err := f.record(ctx, "remove-network %s", name); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.Observed != nil {
		f.Observed.Networks = slices.DeleteFunc(slices.Clone(f.Observed.Networks), func(n compose.ObservedNetwork) bool { return n.Name == name })
	}
	return nil
}

func (f *Engine) RemoveVolume(ctx context.Context, name string) error {
	if err := f.record(ctx, "remove-volume %s", name); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.Observed != nil {
		f.Observed.Volumes = slices.DeleteFunc(slices.Clone(f.Observed.Volumes), func(v compose.ObservedVolume) bool { return v.Name == name })
	}
	return nil
}

// Environments lists the environments of the containers Observe reports.
func (f *Engine) Environments(ctx context.Context) (map[string]string, error) {
	if err := f.record(ctx, "environments"); err != nil {
		return nil, err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	out := map[string]string{}
	add := func(c compose.Container) {
		if env := c.Labels[compose.LabelEnvironment]; env != "" {
			out[env] = c.Labels[compose.LabelProject]
		}
	}
	if f.Observed != nil {
		for _, c := range f.Observed.Containers {
			add(c)
		}
	}
	for _, c := range f.World {
		add(*c)
	}
	return out, nil
}

func (f *Engine) RenameContainer(ctx context.Context, id, name string) error {
	if err := f.record(ctx, "rename %s %s", id, name); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for other, c := range f.World {
		if other != id && c.Name == name {
			// As the engine: one name, one container.
			return fmt.Errorf("conflict: the container name %q is already in use by container %s", name, other)
		}
	}
	f.names[name] = id
	if c := f.World[id]; c != nil {
		c.Name = name
	}
	return nil
}

func (f *Engine) ConnectNetwork(ctx context.Context, svc *compose.Service, id, network string) error {
	if err := f.record(ctx, "connect %s %s", id, network); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if c := f.World[id]; c != nil {
		if c.Networks == nil {
			c.Networks = map[string]compose.Endpoint{}
		}
		c.Networks[network] = endpointOf(f.Observed, svc, network)
	}
	return nil
}

func (f *Engine) DisconnectNetwork(ctx context.Context, id, network string) error {
	if err := f.record(ctx, "disconnect %s %s", id, network); err != nil {
		return err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if c := f.World[id]; c != nil {
		delete(c.Networks, network)
	}
	return nil
}

// endpointOf is the endpoint the stateful fake gives a container of svc on
// network: the observed network's ID and the service's aliases.
func endpointOf(o *compose.Observed, svc *compose.Service, network string) compose.Endpoint {
	ep := compose.Endpoint{}
	if o != nil {
		for _, n := range o.Networks {
			if n.Name == network {
				ep.NetworkID = n.ID
			}
		}
	}
	if svc.Networking != nil && svc.Networking.EndpointsConfig[network] != nil {
		ep.Aliases = slices.Clone(svc.Networking.EndpointsConfig[network].Aliases)
	}
	return ep
}

func (f *Engine) InspectContainer(ctx context.Context, id string) (compose.Container, error) {
	if f.OnInspect != nil {
		f.OnInspect(id)
	}
	if err := f.record(ctx, "inspect %s", id); err != nil {
		return compose.Container{}, err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	key := id
	if _, scripted := f.States[key]; !scripted {
		key = f.resolve(id)
	}
	states := f.States[key]
	if len(states) == 0 {
		if c := f.World[key]; c != nil {
			return *c, nil
		}
		return compose.Container{}, fmt.Errorf("no such container: %s", id)
	}
	c := states[0]
	if len(states) > 1 {
		f.States[key] = states[1:]
	}
	return c, nil
}

func (f *Engine) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	if err := f.record(ctx, "logs %s tail=%d", id, tail); err != nil {
		return nil, err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	lines, ok := f.ContainerLogs[id]
	if !ok {
		lines = f.ContainerLogs[f.resolve(id)]
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return append([]string(nil), lines...), nil
}

// Mutating returns the engine calls that change something (not observe or
// inspect), from Calls.
func Mutating(calls []string) []string {
	var out []string
	for _, c := range calls {
		if !strings.HasPrefix(c, "observe") && !strings.HasPrefix(c, "inspect") {
			out = append(out, c)
		}
	}
	return out
}

// withHash is the labels the real engine adapter gives a network it creates.
func withHash(n compose.Network) map[string]string {
	l := maps.Clone(n.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[compose.LabelHash] = n.Hash
	return l
}
