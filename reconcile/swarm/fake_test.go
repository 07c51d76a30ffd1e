package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
)

// fakeSwarm is an in-memory swarm behind Engine: it keeps services,
// networks, configs and secrets, refuses what the real one refuses (a
// stale version, a config in use, an unknown reference, an unpinned
// image) and runs every service's tasks at once. Tests change its state
// between calls, or on each gate poll with onPoll.
type fakeSwarm struct {
	mu       sync.Mutex
	clock    interface{ Now() time.Time }
	info     Info
	seq      int
	services map[string]*compose.ObservedService // by id
	networks map[string]compose.ObservedStackNetwork
	configs  map[string]compose.ObservedObject
	secrets  map[string]compose.ObservedObject
	nodes    []compose.ObservedNode
	digests  map[string]string // image reference -> the digest its registry has
	calls    []string          // every changing call, and every resolve
	// onPoll, when set, changes a service each time Service reads it (n
	// counts the reads of that service, from 1).
	onPoll func(s *compose.ObservedService, n int)
	polls  map[string]int
}

func newFakeSwarm(clock interface{ Now() time.Time }) *fakeSwarm {
	return &fakeSwarm{
		clock:    clock,
		info:     Info{NodeID: "m1", ClusterID: "c1", State: "active", Manager: true, Leader: true, Managers: 1, Nodes: 3},
		services: map[string]*compose.ObservedService{},
		networks: map[string]compose.ObservedStackNetwork{},
		configs:  map[string]compose.ObservedObject{},
		secrets:  map[string]compose.ObservedObject{},
		nodes: []compose.ObservedNode{
			{ID: "n1", Hostname: "m1", Role: "manager", State: "ready", Availability: "active", Leader: true},
			{ID: "n2", Hostname: "w1", Role: "worker", State: "ready", Availability: "active"},
			{ID: "n3", Hostname: "w2", Role: "worker", State: "ready", Availability: "active"},
		},
		digests: map[string]string{},
		polls:   map[string]int{},
	}
}

func (f *fakeSwarm) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s%d", prefix, f.seq)
}

func (f *fakeSwarm) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// changes are the calls that changed the swarm (not the resolves).
func (f *fakeSwarm) changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "resolve ") {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSwarm) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *fakeSwarm) Info(context.Context) (Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info, nil
}

func (f *fakeSwarm) ObserveStack(_ context.Context, desired *compose.Stack) (compose.ObservedStack, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns := desired.Namespace
	o := compose.ObservedStack{Namespace: ns, Nodes: slices.Clone(f.nodes)}
	for _, s := range f.services {
		if s.Spec.Labels[compose.LabelStackNamespace] == ns {
			o.Services = append(o.Services, copyService(*s))
		}
	}
	external := func(names []string, name string, labels map[string]string) bool {
		return labels[compose.LabelStackNamespace] == ns || slices.Contains(names, name)
	}
	var nets, cfgs, secs []string
	for _, n := range desired.Networks {
		nets = append(nets, n.Name)
	}
	for _, c := range desired.Configs {
		cfgs = append(cfgs, c.Name)
	}
	for _, c := range desired.Secrets {
		secs = append(secs, c.Name)
	}
	for _, n := range f.networks {
		if external(nets, n.Name, n.Labels) {
			o.Networks = append(o.Networks, n)
		}
	}
	for _, c := range f.configs {
		if external(cfgs, c.Name, c.Labels) {
			o.Configs = append(o.Configs, c)
		}
	}
	for _, c := range f.secrets {
		if external(secs, c.Name, c.Labels) {
			o.Secrets = append(o.Secrets, c)
		}
	}
	slices.SortFunc(o.Services, func(a, b compose.ObservedService) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(o.Networks, func(a, b compose.ObservedStackNetwork) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(o.Configs, func(a, b compose.ObservedObject) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(o.Secrets, func(a, b compose.ObservedObject) int { return strings.Compare(a.Name, b.Name) })
	return o, nil
}

func (f *fakeSwarm) ResolveImage(_ context.Context, ref string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("resolve %s", ref)
	d, ok := f.digests[ref]
	if !ok {
		return "", fmt.Errorf("manifest unknown: %s", ref)
	}
	return ref + "@" + d, nil
}

func (f *fakeSwarm) CreateNetwork(_ context.Context, n compose.StackNetwork) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create-network %s", n.Name)
	for _, o := range f.networks {
		if o.Name == n.Name {
			return "", fmt.Errorf("network %s already exists", n.Name)
		}
	}
	id := f.id("net")
	f.networks[id] = compose.ObservedStackNetwork{ID: id, Name: n.Name, Driver: "overlay", Scope: "swarm", Labels: n.Labels, Attachable: n.Attachable, Internal: n.Internal}
	return id, nil
}

func (f *fakeSwarm) RemoveNetwork(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-network %s", id)
	delete(f.networks, id)
	return nil
}

func (f *fakeSwarm) createObject(objs map[string]compose.ObservedObject, k kind, o compose.StackObject) (string, error) {
	f.record("create-%s %s", k, o.Name)
	for _, have := range objs {
		if have.Name == o.Name {
			return "", fmt.Errorf("%s %s already exists", k, o.Name)
		}
	}
	id := f.id(string(k))
	objs[id] = compose.ObservedObject{ID: id, Name: o.Name, Labels: o.Labels}
	return id, nil
}

// removeObject refuses an object a service uses, as the swarm does.
func (f *fakeSwarm) removeObject(objs map[string]compose.ObservedObject, k kind, id string) error {
	o, ok := objs[id]
	f.record("remove-%s %s", k, o.Name)
	if !ok {
		return nil
	}
	for _, s := range f.services {
		names := configNames(containerOf(s.Spec))
		if k == kindSecret {
			names = secretNames(containerOf(s.Spec))
		}
		if slices.Contains(names, o.Name) {
			return fmt.Errorf("%s '%s' is in use by the following service: %s", k, o.Name, s.Name)
		}
	}
	delete(objs, id)
	return nil
}

func (f *fakeSwarm) CreateConfig(_ context.Context, o compose.StackObject) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.createObject(f.configs, kindConfig, o)
}

func (f *fakeSwarm) RemoveConfig(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removeObject(f.configs, kindConfig, id)
}

func (f *fakeSwarm) CreateSecret(_ context.Context, o compose.StackObject) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.createObject(f.secrets, kindSecret, o)
}

func (f *fakeSwarm) RemoveSecret(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removeObject(f.secrets, kindSecret, id)
}

// accept checks spec as the swarm would, and stores it as the swarm
// reports it: networks by id.
func (f *fakeSwarm) accept(spec swarmapi.ServiceSpec) (swarmapi.ServiceSpec, error) {
	spec = copySpec(spec)
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil || !hasDigest(cs.Image) {
		return spec, errors.New("the image is not pinned to a digest")
	}
	for _, r := range cs.Configs {
		if o, ok := f.configs[r.ConfigID]; !ok || o.Name != r.ConfigName {
			return spec, fmt.Errorf("config %s (%s) not found", r.ConfigName, r.ConfigID)
		}
	}
	for _, r := range cs.Secrets {
		if o, ok := f.secrets[r.SecretID]; !ok || o.Name != r.SecretName {
			return spec, fmt.Errorf("secret %s (%s) not found", r.SecretName, r.SecretID)
		}
	}
	for i, n := range spec.TaskTemplate.Networks {
		found := false
		for id, o := range f.networks {
			if o.Name == n.Target || id == n.Target {
				spec.TaskTemplate.Networks[i].Target, found = id, true
			}
		}
		if !found {
			return spec, fmt.Errorf("network %s not found", n.Target)
		}
	}
	return spec, nil
}

func (f *fakeSwarm) CreateService(_ context.Context, spec swarmapi.ServiceSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create-service %s", spec.Name)
	for _, s := range f.services {
		if s.Name == spec.Name {
			return "", fmt.Errorf("service %s already exists", spec.Name)
		}
	}
	spec, err := f.accept(spec)
	if err != nil {
		return "", err
	}
	id := f.id("svc")
	s := &compose.ObservedService{ID: id, Name: spec.Name, Version: 10, Spec: spec, UpdatedAt: f.clock.Now()}
	s.Tasks = f.runTasks(s)
	f.services[id] = s
	return id, nil
}

func (f *fakeSwarm) UpdateService(_ context.Context, id string, version uint64, spec swarmapi.ServiceSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[id]
	if !ok {
		return fmt.Errorf("service %s not found", id)
	}
	f.record("update-service %s", s.Name)
	if version != s.Version {
		return fmt.Errorf("update out of sequence (version %d, the service is at %d)", version, s.Version)
	}
	if modeKind(spec.Mode) != modeKind(s.Spec.Mode) {
		return errors.New("service mode change is not allowed")
	}
	spec, err := f.accept(spec)
	if err != nil {
		return err
	}
	prev := s.Spec
	s.PreviousSpec, s.Spec = &prev, spec
	s.Version += 10
	s.UpdateState, s.UpdatedAt = "completed", f.clock.Now()
	for i := range s.Tasks {
		if s.Tasks[i].DesiredState == taskRunning {
			s.Tasks[i].DesiredState, s.Tasks[i].State = "shutdown", "shutdown"
		}
	}
	s.Tasks = append(f.runTasks(s), s.Tasks...)
	return nil
}

func (f *fakeSwarm) RemoveService(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := id
	if s, ok := f.services[id]; ok {
		name = s.Name
	}
	f.record("remove-service %s", name)
	delete(f.services, id)
	return nil
}

func (f *fakeSwarm) Service(_ context.Context, id string) (compose.ObservedService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[id]
	if !ok {
		return compose.ObservedService{}, fmt.Errorf("service %s not found", id)
	}
	f.polls[s.Name]++
	if f.onPoll != nil {
		f.onPoll(s, f.polls[s.Name])
	}
	return copyService(*s), nil
}

// runTasks are s's tasks once the swarm scheduled and started them: one
// per replica (per ready node for a global service), running, or complete
// for a job.
func (f *fakeSwarm) runTasks(s *compose.ObservedService) []compose.ObservedTask {
	state, desired := taskRunning, taskRunning
	m := s.Spec.Mode
	if m.ReplicatedJob != nil || m.GlobalJob != nil {
		state, desired = taskComplete, taskComplete
	}
	var out []compose.ObservedTask
	add := func(slot int, node string) {
		out = append(out, compose.ObservedTask{ID: f.id("task"), Slot: slot, NodeID: node, State: state, DesiredState: desired,
			Image: imageOf(s.Spec), CreatedAt: f.clock.Now()})
	}
	if m.Global != nil || m.GlobalJob != nil {
		for _, n := range f.nodes {
			if n.State == "ready" && n.Availability == "active" {
				add(0, n.ID)
			}
		}
		return out
	}
	n := wantTasks(*s, f.nodes, 0)
	for i := 1; i <= n; i++ {
		add(i, f.nodes[(i-1)%len(f.nodes)].ID)
	}
	return out
}

// copySpec is a deep copy, through JSON as the API sends it.
func copySpec(spec swarmapi.ServiceSpec) swarmapi.ServiceSpec {
	b, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	var out swarmapi.ServiceSpec
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func copyService(s compose.ObservedService) compose.ObservedService {
	s.Spec = copySpec(s.Spec)
	if s.PreviousSpec != nil {
		p := copySpec(*s.PreviousSpec)
		s.PreviousSpec = &p
	}
	s.Tasks = slices.Clone(s.Tasks)
	return s
}

// service is the stored service named name (to change it by hand).
func (f *fakeSwarm) service(t *testing.T, name string) *compose.ObservedService {
	t.Helper()
	for _, s := range f.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("the fake swarm has no service %s", name)
	return nil
}
