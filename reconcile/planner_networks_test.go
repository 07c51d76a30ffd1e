package reconcile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// netProject is the fixture project with a second network, backend: db on
// backend only (alias "database" besides its name), web on default and
// backend; migrate keeps no endpoints of its own.
func netProject(mods ...func(*compose.Project)) *compose.Project {
	all := append([]func(*compose.Project){
		func(p *compose.Project) {
			p.Networks = append(p.Networks, compose.Network{
				Key: "backend", Name: "prod_backend", Hash: "nethash-backend",
				Labels: map[string]string{compose.LabelProject: "prod", compose.LabelNetwork: "backend"},
			})
		},
		fake.ModService("db", fake.OnNetworks([]string{"backend"}, "database")),
		fake.ModService("web", fake.OnNetworks([]string{"default", "backend"})),
	}, mods...)
	return fake.Project(all...)
}

// wiring is an action in one line with the networks it rewires.
func wiring(a Action) string {
	s := brief(a)
	if len(a.Disconnect) > 0 {
		s += " -" + strings.Join(a.Disconnect, ",")
	}
	if len(a.Connect) > 0 {
		s += " +" + strings.Join(a.Connect, ",")
	}
	return s
}

func TestBuildPlanNetworkDrift(t *testing.T) {
	withoutNetwork := func(o *compose.Observed, name string) {
		for i, n := range o.Networks {
			if n.Name == name {
				o.Networks = append(o.Networks[:i:i], o.Networks[i+1:]...)
				return
			}
		}
	}
	tests := []struct {
		name    string
		desired *compose.Project
		world   func(o *compose.Observed)
		want    []string
	}{
		{
			name:    "converged, short IDs among the aliases: no changes",
			desired: netProject(),
			world:   func(o *compose.Observed) {},
			want:    []string{},
		},
		{
			name:    "disconnected by hand from one network",
			desired: netProject(),
			world: func(o *compose.Observed) {
				delete(fake.ObservedContainer(o, "web", 1).Networks, "prod_backend")
			},
			want: []string{"reconnect prod-web-1: not on network prod_backend [drift] +prod_backend"},
		},
		{
			name:    "network removed by hand: created, then every container on it reconnected",
			desired: netProject(),
			world: func(o *compose.Observed) {
				withoutNetwork(o, "prod_backend")
				delete(fake.ObservedContainer(o, "db", 1).Networks, "prod_backend")
				delete(fake.ObservedContainer(o, "web", 1).Networks, "prod_backend")
			},
			want: []string{
				"create-network prod_backend: network does not exist",
				"reconnect prod-db-1: not on network prod_backend [drift] +prod_backend",
				"reconnect prod-web-1: not on network prod_backend [drift] +prod_backend",
			},
		},
		{
			name:    "network removed while db was stopped: its endpoint is stale, rewired before the start",
			desired: netProject(),
			world: func(o *compose.Observed) {
				for i := range o.Networks {
					if o.Networks[i].Name == "prod_backend" {
						o.Networks[i].ID = "net-backend-recreated"
					}
				}
				delete(fake.ObservedContainer(o, "web", 1).Networks, "prod_backend")
				db := fake.ObservedContainer(o, "db", 1)
				db.State, db.Health, db.ExitCode = "exited", "", 0
			},
			want: []string{
				"reconnect prod-db-1: on a network prod_backend that was removed (id net-backend) [drift] -prod_backend +prod_backend",
				"start prod-db-1: container stopped (exited 0) [drift]",
				"reconnect prod-web-1: not on network prod_backend [drift] +prod_backend",
			},
		},
		{
			name:    "reconnected by hand with other aliases",
			desired: netProject(),
			world: func(o *compose.Observed) {
				db := fake.ObservedContainer(o, "db", 1)
				db.Networks["prod_backend"] = compose.Endpoint{NetworkID: fake.NetworkID("backend"), Aliases: []string{"db", "old"}}
			},
			want: []string{"reconnect prod-db-1: network prod_backend: aliases db, old, want database, db [drift] -prod_backend +prod_backend"},
		},
		{
			name:    "an alias the engine adds is ignored, unless the compose file asks for it",
			desired: netProject(fake.ModService("db", fake.OnNetworks([]string{"backend"}, "prod-db-1"))),
			world: func(o *compose.Observed) {
				db := fake.ObservedContainer(o, "db", 1)
				db.Networks["prod_backend"] = compose.Endpoint{NetworkID: fake.NetworkID("backend"), Aliases: []string{"db", "prod-db-1", db.ID[:12]}}
				web := fake.ObservedContainer(o, "web", 1)
				web.Networks["prod_backend"] = compose.Endpoint{NetworkID: fake.NetworkID("backend"), Aliases: []string{"web", "prod-web-1"}}
			},
			want: []string{},
		},
		{
			name:    "an alias the compose file asks for is missing",
			desired: netProject(fake.ModService("db", fake.OnNetworks([]string{"backend"}, "prod-db-1"))),
			world: func(o *compose.Observed) {
				db := fake.ObservedContainer(o, "db", 1)
				db.Networks["prod_backend"] = compose.Endpoint{NetworkID: fake.NetworkID("backend"), Aliases: []string{"db", db.ID[:12]}}
			},
			want: []string{"reconnect prod-db-1: network prod_backend: aliases db, want db, prod-db-1 [drift] -prod_backend +prod_backend"},
		},
		{
			name:    "on a project network the service does not use; a foreign network is left alone",
			desired: netProject(),
			world: func(o *compose.Observed) {
				o.Networks = append(o.Networks, compose.ObservedNetwork{ID: "mon", Name: "monitoring"})
				db := fake.ObservedContainer(o, "db", 1)
				db.Networks["prod_default"] = compose.Endpoint{NetworkID: fake.NetworkID("default"), Aliases: []string{"db"}}
				db.Networks["monitoring"] = compose.Endpoint{NetworkID: "mon"}
			},
			want: []string{"reconnect prod-db-1: on network prod_default, which service db does not use [drift] -prod_default"},
		},
		{
			name: "a container that is recreated anyway gets its networks from the create",
			desired: netProject(func(p *compose.Project) { p.Commit = fake.CommitB }, fake.ModService("web", func(s *compose.Service) {
				s.ConfigHash = fake.SHA("config", "web", "changed")
			})),
			world: func(o *compose.Observed) {
				o.Networks = o.Networks[:1] // prod_backend gone
				delete(fake.ObservedContainer(o, "web", 1).Networks, "prod_backend")
				delete(fake.ObservedContainer(o, "db", 1).Networks, "prod_backend")
			},
			want: []string{
				"create-network prod_backend: network does not exist",
				"reconnect prod-db-1: not on network prod_backend [drift] +prod_backend",
				fmt.Sprintf("recreate prod-web-1: configuration changed (config-hash %s -> %s) [stop-first]",
					short(fake.SHA("config", "web", fake.ImgWebA)), short(fake.SHA("config", "web", "changed"))),
			},
		},
		{
			name: "a service sharing another's network stack has no endpoints to check",
			desired: netProject(fake.ModService("web", func(s *compose.Service) {
				s.Networking = nil
				s.Host.NetworkMode = container.NetworkMode("service:db")
			})),
			world: func(o *compose.Observed) {
				web := fake.ObservedContainer(o, "web", 1)
				web.Networks = nil
			},
			want: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := fake.Converged(netProject())
			tt.world(&o)
			plan := BuildPlan(tt.desired, o)
			got := make([]string, len(plan.Actions))
			for i, a := range plan.Actions {
				got[i] = wiring(a)
				if a.Kind == ActReconnect && a.ContainerID == "" {
					t.Errorf("%s has no container ID", got[i])
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}
