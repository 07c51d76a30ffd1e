package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// A network the project does not declare external, found on the engine
// under its name without the com.docker.compose.network label naming the
// project's key for it, is refused as Docker Compose refuses it ("network
// X was found but has incorrect label com.docker.compose.network set to
// ..."): before anything is touched, never adopted. A network that has the
// right network label but another project's label is used with a warning,
// as compose does.
func TestForeignNetworkIsAPrecondition(t *testing.T) {
	edge := func(p *compose.Project) {
		p.Networks = append(p.Networks, compose.Network{Key: "edge", Name: "prod_edge",
			Labels: map[string]string{compose.LabelProject: "prod", compose.LabelNetwork: "edge"}})
		p.Services = append(p.Services, fake.Service("proxy", fake.ImgWebA))
	}
	tests := []struct {
		name    string
		labels  map[string]string // of the network prod_edge found on the engine
		problem string            // "" when the network is used (with a warning)
		warning string
	}{
		{
			name:    "plain network, no labels",
			labels:  nil,
			problem: `network "prod_edge" (networks.edge) was found but has incorrect label com.docker.compose.network set to "" (expected "edge")`,
		},
		{
			name:    "only a project label",
			labels:  map[string]string{compose.LabelProject: "prod"},
			problem: `network "prod_edge" (networks.edge) was found but has incorrect label com.docker.compose.network set to "" (expected "edge")`,
		},
		{
			name:    "another network of the project under this name",
			labels:  map[string]string{compose.LabelProject: "prod", compose.LabelNetwork: "front"},
			problem: `incorrect label com.docker.compose.network set to "front" (expected "edge")`,
		},
		{
			name:    "created by compose for another project",
			labels:  map[string]string{compose.LabelProject: "other", compose.LabelNetwork: "edge"},
			warning: `network "prod_edge" (networks.edge) exists but was not created for project "prod" (label com.docker.compose.project="other")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desired := fake.Project(edge)
			observed := fake.Converged(fake.Project())
			observed.Networks = append(observed.Networks, compose.ObservedNetwork{ID: "n-edge", Name: "prod_edge", Labels: tt.labels})
			plan := BuildPlan(desired, observed)
			for _, a := range plan.Actions {
				if a.Kind == ActCreateNetwork {
					t.Errorf("plan creates network %s, which exists", a.Network)
				}
			}
			want := tt.problem + tt.warning
			if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], want) {
				t.Fatalf("plan warnings %q, want one saying %q", plan.Warnings, want)
			}
			f := fake.NewEngine()
			_, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
			var pe *PreconditionError
			if tt.problem == "" {
				if errors.As(err, &pe) {
					t.Fatalf("apply refused a network compose uses: %v", err)
				}
				return
			}
			if !errors.As(err, &pe) {
				t.Fatalf("apply: err = %v, want a PreconditionError", err)
			}
			for _, w := range []string{tt.problem, "external: true", "docker network rm prod_edge"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			checkCalls(t, f, []string{})
		})
	}
}

// External networks and volumes are used as the engine has them, labels or
// not; only their absence is refused (as compose: "network X declared as
// external, but could not be found", "external volume X not found").
func TestExternalResourcesNeedNoLabels(t *testing.T) {
	desired := fake.Project(func(p *compose.Project) {
		p.Networks = append(p.Networks, compose.Network{Key: "edge", Name: "traefik", External: true})
		p.Volumes = append(p.Volumes, compose.Volume{Key: "certs", Name: "certs", External: true})
		p.Services = append(p.Services, fake.Service("proxy", fake.ImgWebA))
	})
	observed := fake.Converged(fake.Project())
	observed.Networks = append(observed.Networks, compose.ObservedNetwork{ID: "n2", Name: "traefik", Labels: map[string]string{"owner": "ops"}})
	observed.Volumes = append(observed.Volumes, compose.ObservedVolume{Name: "certs"})
	plan := BuildPlan(desired, observed)
	if len(plan.Warnings) != 0 {
		t.Fatalf("warnings for present external resources: %q", plan.Warnings)
	}
	f := fake.NewEngine()
	if _, err := Apply(context.Background(), f, desired, observed, plan, testOptions()); err != nil {
		t.Fatalf("apply: %v", err)
	}
}
