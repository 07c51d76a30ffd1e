package engine

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/swarm"
)

// The consumer's interface, reconcile/swarm.Engine: *Swarm is it, with
// no exported method beyond it.
var _ swarm.Engine = (*Swarm)(nil)

func TestSwarmMethodSetIsTheContract(t *testing.T) {
	want := reflect.TypeFor[swarm.Engine]().NumMethod()
	if got := reflect.TypeFor[*Swarm]().NumMethod(); got != want {
		t.Fatalf("*Swarm has %d exported methods, the contract %d", got, want)
	}
}

func TestResolveImageWithoutACall(t *testing.T) {
	s := &Swarm{} // no client: a call would panic
	pinned := "127.0.0.1:5000/web:v1@sha256:" + strings.Repeat("a", 64)
	if got, err := s.ResolveImage(context.Background(), pinned); err != nil || got != pinned {
		t.Fatalf("ResolveImage(%s) = %s, %v; want it as it is", pinned, got, err)
	}
	if _, err := s.ResolveImage(context.Background(), "Web:UPPER case"); err == nil || !strings.Contains(err.Error(), "not a valid image reference") {
		t.Fatalf("ResolveImage of an invalid reference = %v", err)
	}
}

func TestStackIPAM(t *testing.T) {
	if got, err := stackIPAM(nil); got != nil || err != nil {
		t.Fatalf("stackIPAM(nil) = %v, %v", got, err)
	}
	got, err := stackIPAM(&compose.StackIPAM{Driver: "default", Options: map[string]string{"o": "1"}, Config: []compose.StackIPAMPool{
		{Subnet: "10.1.0.0/16", IPRange: "10.1.2.0/24", Gateway: "10.1.0.1", AuxAddress: map[string]string{"host": "10.1.0.5"}},
		{Subnet: "fd00::/64"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := &network.IPAM{Driver: "default", Options: map[string]string{"o": "1"}, Config: []network.IPAMConfig{
		{
			Subnet: netip.MustParsePrefix("10.1.0.0/16"), IPRange: netip.MustParsePrefix("10.1.2.0/24"),
			Gateway: netip.MustParseAddr("10.1.0.1"), AuxAddress: map[string]netip.Addr{"host": netip.MustParseAddr("10.1.0.5")},
		},
		{Subnet: netip.MustParsePrefix("fd00::/64")},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stackIPAM = %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		pool compose.StackIPAMPool
		key  string
	}{
		{compose.StackIPAMPool{Subnet: "10.1.0.0"}, "ipam.config[0].subnet"},
		{compose.StackIPAMPool{IPRange: "x"}, "ipam.config[0].ip_range"},
		{compose.StackIPAMPool{Gateway: "10.1.0.0/16"}, "ipam.config[0].gateway"},
		{compose.StackIPAMPool{AuxAddress: map[string]string{"db": "nope"}}, "ipam.config[0].aux_addresses.db"},
	} {
		if _, err := stackIPAM(&compose.StackIPAM{Config: []compose.StackIPAMPool{c.pool}}); err == nil || !strings.HasPrefix(err.Error(), c.key+":") {
			t.Errorf("stackIPAM(%+v) = %v, want an error about %s", c.pool, err, c.key)
		}
	}
}

func TestListedKeepsExactExternals(t *testing.T) {
	type obj struct{ id, name string }
	labelled := []obj{{"2", "st_b"}, {"1", "st_a"}}
	named := []obj{{"3", "ext"}, {"4", "ext2"}, {"5", "my-ext"}, {"1", "st_a"}}
	got := listed(labelled, named, func(o obj) string { return o.id }, func(o obj) string { return o.name }, []string{"ext", "st_a", "gone"})
	want := []obj{{"3", "ext"}, {"1", "st_a"}, {"2", "st_b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listed = %v, want %v", got, want)
	}
}

func TestObservedServiceAndTask(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	task := observedTask(swarmapi.Task{
		ID: "t1", Meta: swarmapi.Meta{CreatedAt: created}, Slot: 2, NodeID: "n1", DesiredState: swarmapi.TaskStateShutdown,
		Spec: swarmapi.TaskSpec{ContainerSpec: &swarmapi.ContainerSpec{Image: "web:v1@sha256:x"}},
		Status: swarmapi.TaskStatus{State: swarmapi.TaskStateFailed, Message: "started", Err: "task: non-zero exit (3)",
			ContainerStatus: &swarmapi.ContainerStatus{ExitCode: 3}},
	})
	wantTask := compose.ObservedTask{ID: "t1", Slot: 2, NodeID: "n1", State: "failed", DesiredState: "shutdown",
		Message: "started", Err: "task: non-zero exit (3)", ExitCode: 3, CreatedAt: created, Image: "web:v1@sha256:x"}
	if task != wantTask {
		t.Fatalf("observedTask = %+v, want %+v", task, wantTask)
	}
	if got := observedTask(swarmapi.Task{ID: "t2"}); got.Image != "" || got.ExitCode != 0 {
		t.Fatalf("a task without container spec or status = %+v", got)
	}
	prev := &swarmapi.ServiceSpec{Annotations: swarmapi.Annotations{Name: "st_web"}}
	svc := observedService(swarmapi.Service{
		ID: "s1", Meta: swarmapi.Meta{Version: swarmapi.Version{Index: 7}, UpdatedAt: created},
		Spec: swarmapi.ServiceSpec{Annotations: swarmapi.Annotations{Name: "st_web", Labels: map[string]string{"a": "b"}}}, PreviousSpec: prev,
		UpdateStatus: &swarmapi.UpdateStatus{State: swarmapi.UpdateStateRollbackCompleted, Message: "rollback completed"},
	}, []compose.ObservedTask{task})
	if svc.ID != "s1" || svc.Name != "st_web" || svc.Version != 7 || svc.PreviousSpec != prev || svc.UpdateState != "rollback_completed" ||
		svc.UpdateMessage != "rollback completed" || !svc.UpdatedAt.Equal(created) || svc.Labels()["a"] != "b" || len(svc.Tasks) != 1 {
		t.Fatalf("observedService = %+v", svc)
	}
	if got := observedService(swarmapi.Service{ID: "s2"}, nil); got.UpdateState != "" {
		t.Fatalf("a service never updated has update state %q", got.UpdateState)
	}
}

func TestOutOfSequence(t *testing.T) {
	if !isOutOfSequence(errors.New("Error response from daemon: rpc error: code = Unknown desc = update out of sequence")) {
		t.Error("the swarm's word for a stale version is not recognised")
	}
	if isOutOfSequence(errors.New("Error response from daemon: service x not found")) {
		t.Error("another error is taken for a stale version")
	}
}

func TestResolveFailed(t *testing.T) {
	ref, reg := "127.0.0.1:5000/web:v9", "127.0.0.1:5000"
	for _, c := range []struct {
		err      error
		notFound bool
		denied   bool
		want     string
	}{
		{errors.New("manifest unknown: manifest unknown"), true, false, "image " + ref + " not found in registry " + reg},
		{errors.New(`Head "http://127.0.0.1:5000/v2/web/manifests/v9": no basic auth credentials`), false, true, "resolve the digest of " + ref + ": registry " + reg + " denied access"},
		{errors.New("received unexpected HTTP status: 502 Bad Gateway"), false, false, "resolve the digest of " + ref + " from registry " + reg + ": received unexpected HTTP status: 502"},
		{context.DeadlineExceeded, false, false, "resolve the digest of image " + ref + ": context deadline exceeded"},
	} {
		err := resolveFailed(ref, reg, c.err)
		if errors.Is(err, cerrdefs.ErrNotFound) != c.notFound || errors.Is(err, cerrdefs.ErrUnauthenticated) != c.denied || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("resolveFailed(%v) = %v (not found %v, denied %v), want %q...", c.err, err, errors.Is(err, cerrdefs.ErrNotFound), errors.Is(err, cerrdefs.ErrUnauthenticated), c.want)
		}
	}
}
