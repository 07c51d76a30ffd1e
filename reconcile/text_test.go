package reconcile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenPlans are representative plans, rendered as text and as JSON.
func goldenPlans() map[string]*Plan {
	release := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("web", func(s *compose.Service) {
			s.Image = fake.ImgWebB
			s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
			s.Files[0].Digest = "sha256:conf2"
			s.UpdateOrder = compose.StartFirst
		}),
		func(p *compose.Project) {
			p.Networks = append(p.Networks, compose.Network{
				Key: "backend", Name: "prod_backend", Hash: "nethash-backend",
				Labels: map[string]string{compose.LabelProject: "prod", compose.LabelNetwork: "backend"},
			})
		},
	)
	releaseObserved := fake.Converged(fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 2 })))
	fake.ObservedContainer(&releaseObserved, "web", 1).PriorFiles = map[string]string{"web/app.conf": "sha256:conf1"}
	releaseObserved.Containers = append(releaseObserved.Containers,
		compose.Container{ID: "01d1d1d1d1d1d1d1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"})
	db := fake.ObservedContainer(&releaseObserved, "db", 1)
	db.State, db.Health, db.ExitCode = "exited", "", 137

	netDrift := fake.Converged(netProject())
	netDrift.Networks = netDrift.Networks[:1] // prod_backend removed by hand
	delete(fake.ObservedContainer(&netDrift, "db", 1).Networks, "prod_backend")
	web := fake.ObservedContainer(&netDrift, "web", 1)
	web.Networks["prod_backend"] = compose.Endpoint{NetworkID: "net-old", Aliases: []string{"web"}}

	return map[string]*Plan{
		"fresh":    BuildPlan(fake.Project(), compose.Observed{Project: "prod"}),
		"release":  BuildPlan(release, releaseObserved),
		"nochange": BuildPlan(fake.Project(), fake.Converged(fake.Project())),
		"netdrift": BuildPlan(netProject(), netDrift),
		"stack":    stackPlan(),
	}
}

// stackPlan is a Docker Swarm stack's plan (reconcile/swarm builds them;
// it imports this package, so the plan is written out here).
func stackPlan() *Plan {
	return &Plan{Environment: "production", Project: "prod", Commit: fake.CommitB, Actions: []Action{
		{Kind: ActCreateNetwork, Network: "prod_backend", Reasons: []string{"network does not exist"}},
		{Kind: ActCreateConfig, Config: "prod_app_conf_def456789012", Reasons: []string{"config app_conf (worker/app.conf) content changed (abc123456789 -> def456789012)"}},
		{Kind: ActCreateSecret, Secret: "prod_db_pw_0123456789ab", Reasons: []string{"secret missing (removed outside lockstep)"}, Drift: true},
		{Kind: ActCreate, Service: "cache", SwarmService: "prod_cache", Image: "redis:7", Reasons: []string{"new service"}},
		{Kind: ActUpdate, Service: "web", SwarmService: "prod_web", ObjectID: "svcweb", Image: "10.237.0.1:5000/web:v2", Order: "start-first",
			Reasons: []string{"image 10.237.0.1:5000/web:v1 -> :v2"}},
		{Kind: ActUpdate, Service: "worker", SwarmService: "prod_worker", ObjectID: "svcworker", Reasons: []string{"replicas 1, want 3 (changed outside lockstep)"}, Drift: true},
		{Kind: ActRemove, Service: "old", SwarmService: "prod_old", ObjectID: "svcold", Reasons: []string{"service old removed from the compose files"}},
		{Kind: ActRemoveConfig, Config: "prod_app_conf_abc123456789", ObjectID: "cfgold", Reasons: []string{"replaced by prod_app_conf_def456789012"}},
	}, Gate: []string{"cache 1/1 running for 15s", "web 3/3 running and healthy for 15s"}}
}

func TestGolden(t *testing.T) {
	for name, plan := range goldenPlans() {
		t.Run(name, func(t *testing.T) {
			var text bytes.Buffer
			if err := plan.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			var jsBuf bytes.Buffer
			enc := json.NewEncoder(&jsBuf)
			enc.SetEscapeHTML(false) // "->" in reasons stays readable
			enc.SetIndent("", "  ")
			if err := enc.Encode(plan); err != nil {
				t.Fatal(err)
			}
			js := jsBuf.Bytes()
			golden(t, filepath.Join("testdata", name+".txt.golden"), text.Bytes())
			golden(t, filepath.Join("testdata", name+".json.golden"), js)

			// The JSON form is the plan: reading it back gives the same plan.
			var back Plan
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			if err := back.WriteText(&again); err != nil {
				t.Fatal(err)
			}
			if again.String() != text.String() {
				t.Errorf("plan read back from JSON prints differently:\n%s\nvs\n%s", again.String(), text.String())
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reconcile -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		kinds []ActionKind
		want  string
	}{
		{nil, "no changes"},
		{[]ActionKind{ActRemove, ActPull, ActCreateNetwork, ActCreate, ActRecreate}, "1 to pull, 2 to create, 1 to recreate, 1 to remove"},
		{[]ActionKind{ActStart, ActRestart, ActCreateVolume}, "1 to create, 1 to start, 1 to restart"},
		{[]ActionKind{"teleport", ActPull, "beam", "beam"}, "1 to pull, 2 to beam, 1 to teleport"},
		{[]ActionKind{ActCreateConfig, ActCreateSecret, ActUpdate, ActCreate, ActRemove, ActRemoveConfig, ActRemoveSecret}, "3 to create, 1 to update, 3 to remove"},
	}
	for _, tt := range tests {
		p := &Plan{}
		for _, k := range tt.kinds {
			p.Actions = append(p.Actions, Action{Kind: k})
		}
		if got := p.Summary(); got != tt.want {
			t.Errorf("Summary(%v) = %q, want %q", tt.kinds, got, tt.want)
		}
	}
}

func TestWriteTextSingularAndHeader(t *testing.T) {
	p := &Plan{Environment: "staging", Project: "staging", Actions: []Action{{Kind: ActPull, Image: "x:1", Reasons: []string{"not present locally"}}}}
	var b bytes.Buffer
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "staging\n  + pull x:1 (not present locally)\n  1 change: 1 to pull\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
