package reconcile

import (
	"testing"
	"time"

	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestDeployedOfAStack(t *testing.T) {
	three, zero := uint64(3), uint64(0)
	p := &compose.Project{Name: "shop", Commit: "c", Stack: &compose.Stack{Namespace: "shop", Services: []compose.StackService{
		{Key: "web", Spec: swarmapi.ServiceSpec{Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &three}}}},
		{Key: "agent", Spec: swarmapi.ServiceSpec{Mode: swarmapi.ServiceMode{Global: &swarmapi.GlobalService{}}}},
		{Key: "off", Spec: swarmapi.ServiceSpec{Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &zero}}}},
		{Key: "migrate", Spec: swarmapi.ServiceSpec{Mode: swarmapi.ServiceMode{ReplicatedJob: &swarmapi.ReplicatedJob{}}}},
	}}}
	d := DeployedOf(p, time.Unix(0, 0))
	if len(d.Replicas) != 3 || d.Replicas["web"] != 3 || d.Replicas["agent"] != 1 || d.Replicas["migrate"] != 1 || d.Commit != "c" {
		t.Fatalf("%+v", d.Replicas)
	}
}
