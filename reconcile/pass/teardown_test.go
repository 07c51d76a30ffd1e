package pass

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

func reviewEnv(removeVolumes bool) Environment {
	return Environment{Name: "review-pr-1", Project: "prod", PinFile: "environments/review/pr-1.toml", Set: "review", RemoveVolumes: removeVolumes}
}

// TestTeardownRemovesTheProject: a teardown plans the removal of every
// container and network of the project (volumes only when the set says
// so), prints like any plan, applies it, records it and forgets what ran.
func TestTeardownRemovesTheProject(t *testing.T) {
	for _, removeVolumes := range []bool{false, true} {
		t.Run(map[bool]string{false: "volumes kept", true: "volumes removed"}[removeVolumes], func(t *testing.T) {
			o := fake.Converged(fake.Project())
			f := newRunnerFixture(t, &o, false)
			f.eng.UseWorld(o)
			env := reviewEnv(removeVolumes)
			if _, err := f.r.Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if err := f.st.SaveMember(env.Name, state.Member{Set: "review", Project: "prod", PinFile: env.PinFile}); err != nil {
				t.Fatal(err)
			}

			plan, err := f.r.Teardown(context.Background(), env, ReasonPinDeleted, false, Options{Mode: ModePlan})
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			if err := plan.Plan.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			want := []string{"- remove prod-db-1 (pin file deleted; its volumes are kept)", "- remove network prod_default (pin file deleted)"}
			if removeVolumes {
				want = append(want, "- remove volume prod_data (pin file deleted)")
			} else {
				want = append(want, "! volume prod_data is kept (the set's remove_volumes is false)")
			}
			for _, w := range want {
				if !strings.Contains(text.String(), w) {
					t.Errorf("plan does not say %q:\n%s", w, text.String())
				}
			}
			if calls := fake.Mutating(f.eng.Calls()); len(calls) != 0 && strings.HasPrefix(calls[len(calls)-1], "remove") {
				t.Fatalf("a planned teardown changed the engine: %q", calls)
			}

			before := len(f.eng.Calls())
			res, err := f.r.Teardown(context.Background(), env, ReasonPinDeleted, false, Options{Mode: ModeApply, Trigger: reconcile.TriggerPoll})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(fake.Mutating(f.eng.Calls()[before:]), "; ")
			for _, w := range []string{"stop db1", "remove db1", "remove web1", "remove-network prod_default"} {
				if !strings.Contains(got, w) {
					t.Errorf("teardown calls %q lack %q", got, w)
				}
			}
			if strings.Contains(got, "remove-volume") != removeVolumes {
				t.Errorf("remove_volumes %v, calls: %s", removeVolumes, got)
			}
			if res.Record == nil || res.Record.Result != reconcile.ResultRemoved || res.Record.Commit != fake.CommitA ||
				len(res.Events) != 1 || res.Events[0].Kind != reconcile.EventTeardown || res.Events[0].Reason != ReasonPinDeleted {
				t.Fatalf("record %+v events %+v", res.Record, res.Events)
			}
			if d, _ := f.st.Deployed(env.Name, "prod"); d != nil {
				t.Errorf("deployed record kept: %+v", d)
			}
			if h, _ := f.st.Healthy(env.Name); len(h) != 0 {
				t.Errorf("healthy revisions kept: %+v", h)
			}
			if m, _ := f.st.Member(env.Name); m != nil {
				t.Errorf("membership kept: %+v", m)
			}
			if recs, _ := f.st.History(env.Name, 0); len(recs) != 2 || recs[1].Result != reconcile.ResultRemoved {
				t.Errorf("history: %+v", recs)
			}

			// Again: nothing left to remove, nothing recorded.
			res, err = f.r.Teardown(context.Background(), env, ReasonPinDeleted, false, Options{Mode: ModeApply})
			if err != nil || res.Record != nil {
				t.Fatalf("a teardown of what is gone: %+v %v", res.Record, err)
			}
		})
	}
}

// TestSetEnvironmentRefusesFixedHostPorts: a review environment that
// publishes a fixed host port is refused at the policy step, before the
// engine is asked anything; an ephemeral port is fine; a fixed
// environment may publish one.
func TestSetEnvironmentRefusesFixedHostPorts(t *testing.T) {
	o := fake.Converged(fake.Project())
	f := newRunnerFixture(t, &o, false)
	port, _ := network.PortFrom(443, network.TCP)
	hostPort := "8443"
	f.r.Load = func(ctx context.Context, env Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		p := fake.Project(fake.ModService("web", func(s *compose.Service) {
			s.Host.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}}}
		}))
		p.ReleaseDir = "/r"
		p.ConfigFiles = []string{"/r/compose.yaml"}
		return p, nil
	}
	_, err := f.r.Apply(context.Background(), reviewEnv(false))
	var hp *HostPortError
	if !errors.As(err, &hp) || reconcile.Classify(err) != reconcile.ClassPermanent {
		t.Fatalf("apply of a review environment publishing 8443: %v", err)
	}
	for _, w := range []string{`service "web" publishes 127.0.0.1:8443/tcp`, "compose files compose.yaml", "reverse proxy", "LOCKSTEP_SLUG", "ephemeral host port"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q: %v", w, err)
		}
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Errorf("the engine was asked %q before the refusal", calls)
	}
	if _, err := f.r.Plan(context.Background(), Environment{Name: "production", Project: "prod"}); err != nil {
		t.Errorf("a fixed environment may publish a host port: %v", err)
	}
	hostPort = "" // published, the engine picks the host port
	if _, err := f.r.Plan(context.Background(), reviewEnv(false)); err != nil {
		t.Errorf("an ephemeral host port is refused: %v", err)
	}
}
