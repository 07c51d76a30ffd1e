package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// fakeEngine records every call Apply makes, in order, as one line each
// ("stop web1 timeout=7s"), and answers from a script. It stands in for
// the engine only behind the small Engine interface.
type fakeEngine struct {
	mu    sync.Mutex
	calls []string
	// fail makes the call whose recorded line starts with the key fail.
	fail map[string]error
	// states scripts what InspectContainer returns for an ID: each inspect
	// takes the next state, the last one repeats.
	states map[string][]compose.Container
	// onInspect runs before each inspect (to cancel a context mid-wait).
	onInspect func(id string)
	created   int
	// observed is what Observe reports (nothing when nil).
	observed *compose.Observed
	// logs is what Logs returns for a container ID or name.
	logs map[string][]string
	// names maps the names of containers the fake created (and renamed)
	// to their IDs, so an inspect by name finds a scripted ID.
	names map[string]string
	// world, when set (useWorld), makes the fake stateful: the containers
	// it creates, starts, stops, renames and removes are what Observe and
	// InspectContainer report. Keyed by ID.
	world map[string]*compose.Container
	// onStart, per service, changes what a started container looks like
	// in the world (a one-shot exits, a broken release crash-loops).
	onStart map[string]func(c *compose.Container)
	// healthchecked notes the IDs created from a service with a
	// healthcheck: the world reports them healthy once started.
	healthchecked map[string]bool
}

// fakeImageID is the image ID the stateful fake reports for ref.
func fakeImageID(ref string) string { return "sha256:img-" + ref }

// useWorld makes the fake stateful, starting from the containers of o
// (networks and volumes stay as o has them).
func (f *fakeEngine) useWorld(o compose.Observed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.world = map[string]*compose.Container{}
	for _, c := range o.Containers {
		c := c
		c.ImageID = fakeImageID(c.Image)
		f.world[c.ID] = &c
	}
	o.Containers = nil
	f.observed = &o
}

// setOnStart scripts how service's containers behave once started.
func (f *fakeEngine) setOnStart(service string, fn func(c *compose.Container)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onStart[service] = fn
}

// resolve returns the ID of the container named or identified by x.
// Called with f.mu held.
func (f *fakeEngine) resolve(x string) string {
	if id, ok := f.names[x]; ok {
		return id
	}
	for id, c := range f.world {
		if c.Name == x {
			return id
		}
	}
	return x
}

var _ Engine = (*fakeEngine)(nil)

func newFake() *fakeEngine {
	return &fakeEngine{
		fail: map[string]error{}, states: map[string][]compose.Container{}, logs: map[string][]string{},
		names: map[string]string{}, onStart: map[string]func(*compose.Container){}, healthchecked: map[string]bool{},
	}
}

func (f *fakeEngine) record(ctx context.Context, format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, line)
	if _, ok := ctx.Deadline(); !ok {
		return fmt.Errorf("fake engine: %s called without a deadline", line)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for prefix, err := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return err
		}
	}
	return nil
}

func (f *fakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.calls...)
}

// script sets the successive states InspectContainer reports for id.
func (f *fakeEngine) script(id string, states ...compose.Container) {
	for i := range states {
		states[i].ID = id
	}
	f.states[id] = states
}

func (f *fakeEngine) Observe(ctx context.Context, p *compose.Project) (compose.Observed, error) {
	var o compose.Observed
	if f.observed != nil {
		o = *f.observed
	}
	err := f.record(ctx, "observe %s", p.Name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.world != nil {
		o.Containers = nil
		for _, c := range f.world {
			o.Containers = append(o.Containers, *c)
		}
		slices.SortFunc(o.Containers, func(a, b compose.Container) int {
			return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Number, b.Number), cmp.Compare(a.Name, b.Name))
		})
		o.Images = map[string]string{}
		for _, s := range p.Services {
			o.Images[s.Image] = fakeImageID(s.Image)
		}
	}
	return o, err
}

func (f *fakeEngine) Pull(ctx context.Context, ref string) (string, error) {
	if err := f.record(ctx, "pull %s", ref); err != nil {
		return "", err
	}
	return "sha256:pulled-" + ref, nil
}

func (f *fakeEngine) CreateNetwork(ctx context.Context, n compose.Network) error {
	return f.record(ctx, "create-network %s", n.Name)
}

func (f *fakeEngine) CreateVolume(ctx context.Context, v compose.Volume) error {
	return f.record(ctx, "create-volume %s", v.Name)
}

func (f *fakeEngine) CreateContainer(ctx context.Context, p *compose.Project, svc *compose.Service, number int, name, inheritFrom string) (string, error) {
	line := fmt.Sprintf("create %s#%d %s", svc.Name, number, name)
	if inheritFrom != "" {
		line += " inherit=" + inheritFrom
	}
	if err := f.record(ctx, "%s", line); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created++
	id := fmt.Sprintf("new%d", f.created)
	f.names[name] = id
	f.healthchecked[id] = svc.Healthcheck
	if f.world != nil {
		f.world[id] = &compose.Container{
			ID: id, Name: name, Service: svc.Name, Number: number, State: "created",
			Image: svc.Image, ImageID: fakeImageID(svc.Image), Hash: svc.Hash, ConfigHash: svc.ConfigHash,
			Commit: p.Commit, WorkingDir: p.ReleaseDir,
		}
	}
	return id, nil
}

func (f *fakeEngine) StartContainer(ctx context.Context, id string) error {
	if err := f.record(ctx, "start %s", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.world[id]; c != nil {
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

func (f *fakeEngine) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	t := "nil"
	if timeout != nil {
		t = timeout.String()
	}
	if err := f.record(ctx, "stop %s timeout=%s", id, t); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.world[id]; c != nil {
		c.State, c.Health = "exited", ""
	}
	return nil
}

func (f *fakeEngine) RemoveContainer(ctx context.Context, id string) error {
	if err := f.record(ctx, "remove %s", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.world, id)
	return nil
}

func (f *fakeEngine) RenameContainer(ctx context.Context, id, name string) error {
	if err := f.record(ctx, "rename %s %s", id, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names[name] = id
	if c := f.world[id]; c != nil {
		c.Name = name
	}
	return nil
}

func (f *fakeEngine) InspectContainer(ctx context.Context, id string) (compose.Container, error) {
	if f.onInspect != nil {
		f.onInspect(id)
	}
	if err := f.record(ctx, "inspect %s", id); err != nil {
		return compose.Container{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := id
	if _, scripted := f.states[key]; !scripted {
		key = f.resolve(id)
	}
	states := f.states[key]
	if len(states) == 0 {
		if c := f.world[key]; c != nil {
			return *c, nil
		}
		return compose.Container{}, fmt.Errorf("no such container: %s", id)
	}
	c := states[0]
	if len(states) > 1 {
		f.states[key] = states[1:]
	}
	return c, nil
}

func (f *fakeEngine) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	if err := f.record(ctx, "logs %s tail=%d", id, tail); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, ok := f.logs[id]
	if !ok {
		lines = f.logs[f.resolve(id)]
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return append([]string(nil), lines...), nil
}
