package reconcile

import (
	"context"
	"fmt"
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
}

var _ Engine = (*fakeEngine)(nil)

func newFake() *fakeEngine {
	return &fakeEngine{fail: map[string]error{}, states: map[string][]compose.Container{}}
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
	return o, f.record(ctx, "observe %s", p.Name)
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
	return fmt.Sprintf("new%d", f.created), nil
}

func (f *fakeEngine) StartContainer(ctx context.Context, id string) error {
	return f.record(ctx, "start %s", id)
}

func (f *fakeEngine) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	t := "nil"
	if timeout != nil {
		t = timeout.String()
	}
	return f.record(ctx, "stop %s timeout=%s", id, t)
}

func (f *fakeEngine) RemoveContainer(ctx context.Context, id string) error {
	return f.record(ctx, "remove %s", id)
}

func (f *fakeEngine) RenameContainer(ctx context.Context, id, name string) error {
	return f.record(ctx, "rename %s %s", id, name)
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
	states := f.states[id]
	if len(states) == 0 {
		return compose.Container{}, fmt.Errorf("no such container: %s", id)
	}
	c := states[0]
	if len(states) > 1 {
		f.states[id] = states[1:]
	}
	return c, nil
}
