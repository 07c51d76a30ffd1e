package reconcile

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// publish8443 makes web publish 127.0.0.1:8443 -> 443/tcp.
func publish8443(s *compose.Service) {
	port, _ := network.PortFrom(443, network.TCP)
	s.Host.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "8443"}}}
}

func TestApplyRefusesATakenHostPortBeforeTouchingAnything(t *testing.T) {
	port8443 := compose.HostPort{IP: "127.0.0.1", Port: 8443, Proto: "tcp"}
	tests := []struct {
		name   string
		holder func(o *compose.Observed) compose.PortHolder
		orphan bool   // the holder is a container of a service gone from the project
		want   string // "" means no refusal
	}{
		{
			name:   "a process on the host",
			holder: func(*compose.Observed) compose.PortHolder { return compose.PortHolder{HostPort: port8443} },
			want:   "web: host port 127.0.0.1:8443/tcp is already in use by a process on this host (not a container): free the port or publish another one (ports: of service web); nothing was stopped",
		},
		{
			name: "a container of another project",
			holder: func(*compose.Observed) compose.PortHolder {
				return compose.PortHolder{HostPort: port8443, ContainerID: "ffff", ContainerName: "shop-proxy-1", Project: "shop", Service: "proxy"}
			},
			want: "already in use by container shop-proxy-1 of compose project shop",
		},
		{
			name: "a bare container",
			holder: func(*compose.Observed) compose.PortHolder {
				return compose.PortHolder{HostPort: compose.HostPort{Port: 8443, Proto: "tcp"}, ContainerID: "ffff", ContainerName: "hello"}
			},
			want: "already in use by container hello:",
		},
		{
			name: "a container of this project left running",
			holder: func(o *compose.Observed) compose.PortHolder {
				db := fake.ObservedContainer(o, "db", 1)
				return compose.PortHolder{HostPort: port8443, ContainerID: db.ID, ContainerName: db.Name, Project: "prod", Service: "db"}
			},
			want: "already in use by container prod-db-1 of service db, which keeps running",
		},
		{
			name: "the container being replaced",
			holder: func(o *compose.Observed) compose.PortHolder {
				web := fake.ObservedContainer(o, "web", 1)
				return compose.PortHolder{HostPort: port8443, ContainerID: web.ID, ContainerName: web.Name, Project: "prod", Service: "web"}
			},
		},
		{
			name:   "an orphan the plan removes first",
			orphan: true,
			holder: func(*compose.Observed) compose.PortHolder {
				return compose.PortHolder{HostPort: port8443, ContainerID: "old1", ContainerName: "prod-old-1", Project: "prod", Service: "old"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			observed := fake.Converged(fake.Project(fake.ModService("web", publish8443)))
			observed.Images[fake.ImgWebB] = fake.IDWebB
			if tt.orphan {
				observed.Containers = append(observed.Containers, compose.Container{ID: "old1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"})
			}
			observed.PortHolders = []compose.PortHolder{tt.holder(&observed)}
			desired := fake.Project(
				func(p *compose.Project) { p.Commit = fake.CommitB },
				fake.ModService("web", func(s *compose.Service) {
					publish8443(s)
					s.Image = fake.ImgWebB
					s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
				}),
			)
			plan := BuildPlan(desired, observed)
			f := fake.NewEngine()
			f.UseWorld(observed)
			res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if res.Recreated != 1 || len(plan.Warnings) != 0 {
					t.Errorf("result = %+v, warnings %q", res, plan.Warnings)
				}
				return
			}
			var pe *PortInUseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a PortInUseError saying %q", err, tt.want)
			}
			checkCalls(t, f, []string{})
			if len(res.Done) != 0 {
				t.Errorf("done = %v", res.Done)
			}
			// The plan says it too, and a retry is worth it: freeing the
			// port needs no new commit.
			if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], tt.want) {
				t.Errorf("plan warnings = %q", plan.Warnings)
			}
			if c := Classify(err); c != ClassEngine {
				t.Errorf("class = %q, want %q", c, ClassEngine)
			}
		})
	}
}

// A stopped container whose port was taken meanwhile is not started into
// the conflict either: starting it is refused up front like a recreate.
func TestApplyRefusesToStartIntoATakenPort(t *testing.T) {
	desired := fake.Project(fake.ModService("web", publish8443))
	observed := fake.Converged(desired)
	fake.ObservedContainer(&observed, "web", 1).State = "exited"
	observed.PortHolders = []compose.PortHolder{{HostPort: compose.HostPort{IP: "127.0.0.1", Port: 8443, Proto: "tcp"}}}
	plan := BuildPlan(desired, observed)
	if got := briefs(plan); len(got) != 1 || !strings.HasPrefix(got[0], "start prod-web-1") {
		t.Fatalf("plan = %q", got)
	}
	f := fake.NewEngine()
	_, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if !errors.As(err, new(*PortInUseError)) {
		t.Fatalf("err = %v", err)
	}
	checkCalls(t, f, []string{})
}
