package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

func testOptions() ApplyOptions {
	return ApplyOptions{Log: zerolog.Nop(), PollInterval: time.Millisecond, DependencyTimeout: time.Hour}
}

func st(state, health string, exit int) compose.Container {
	return compose.Container{State: state, Health: health, ExitCode: exit}
}

func checkCalls(t *testing.T, f *fake.Engine, want []string) {
	t.Helper()
	got := f.Calls()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("engine calls:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

func TestApplyFreshProject(t *testing.T) {
	desired := fake.Project()
	observed := compose.Observed{Project: "prod"}
	plan := BuildPlan(desired, observed)
	f := fake.NewEngine()
	// db (new1) gets healthy after two polls; migrate (new2) runs, then exits 0.
	f.Script("new1", st("running", "starting", 0), st("running", "starting", 0), st("running", "healthy", 0))
	f.Script("new2", st("running", "", 0), st("exited", "", 0))

	var logs bytes.Buffer
	opts := testOptions()
	opts.Log = zerolog.New(&logs)
	res, err := Apply(context.Background(), f, desired, observed, plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"pull " + fake.ImgDB,
		"pull " + fake.ImgJob,
		"pull " + fake.ImgWebA,
		"create-network prod_default",
		"create-volume prod_data",
		"create db#1 prod-db-1",
		"start new1",
		"inspect new1", "inspect new1", "inspect new1", // migrate waits for db healthy
		"create migrate#1 prod-migrate-1",
		"start new2",
		"inspect new2", "inspect new2", // web waits for migrate to complete
		"create web#1 prod-web-1",
		"start new3",
	})
	want := ApplyResult{Done: plan.Actions, Pulled: 3, Created: 3}
	if !reflect.DeepEqual(*res, want) {
		t.Errorf("result = %+v, want %+v", *res, want)
	}

	// Every step is logged with structured fields.
	var sawWeb bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry["action"] == "create" && entry["service"] == "web" && entry["container"] == "prod-web-1" && entry["level"] == "info" {
			sawWeb = true
			if rs, _ := entry["reasons"].([]any); len(rs) != 1 || rs[0] != reasonNewService {
				t.Errorf("log reasons = %v", entry["reasons"])
			}
		}
	}
	if !sawWeb {
		t.Errorf("no info log for creating web:\n%s", logs.String())
	}
}

func TestApplyEmptyPlanMakesNoCalls(t *testing.T) {
	desired := fake.Project()
	observed := fake.Converged(desired)
	plan := BuildPlan(desired, observed)
	if !plan.Empty() {
		t.Fatalf("converged project has a plan: %q", briefs(plan))
	}
	f := fake.NewEngine()
	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{})
	if len(res.Done) != 0 || res.Created+res.Pulled+res.Recreated+res.Removed+res.Started+res.Restarted != 0 {
		t.Errorf("empty plan did something: %+v", res)
	}
	// Even a plan whose preconditions fail costs nothing when it is empty.
	desired.Networks = append(desired.Networks, compose.Network{Name: "missing", External: true})
	if _, err := Apply(context.Background(), f, desired, observed, &Plan{}, testOptions()); err != nil {
		t.Errorf("empty plan: %v", err)
	}
	checkCalls(t, f, []string{})
}

func TestApplyStopFirstRecreate(t *testing.T) {
	old := fake.Project()
	observed := fake.Converged(old)
	observed.Images[fake.ImgWebB] = fake.IDWebB
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("web", func(s *compose.Service) {
			s.Image = fake.ImgWebB
			s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
			grace := 7
			s.Config.StopTimeout = &grace
		}),
	)
	plan := BuildPlan(desired, observed)
	webID := fake.ObservedContainer(&observed, "web", 1).ID
	migrateID := fake.ObservedContainer(&observed, "migrate", 1).ID
	f := fake.NewEngine()
	f.Script(migrateID, st("exited", "", 0))

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"inspect " + migrateID, // web depends on migrate completing; it has
		"create web#1 " + webID[:12] + "_prod-web-1 inherit=" + webID,
		"stop " + webID + " timeout=7s",
		"rename " + webID + " " + webID[:12] + "_previous_prod-web-1", // kept until the new one runs
		"rename new1 prod-web-1",
		"start new1",
		"remove " + webID,
	})
	if res.Recreated != 1 || len(res.Done) != 1 {
		t.Errorf("result = %+v", res)
	}
}

func startFirstProject() *compose.Project {
	return fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("db", func(s *compose.Service) {
			s.UpdateOrder = compose.StartFirst
			s.ConfigHash = "f00dcafe0000111122223333"
		}),
	)
}

func TestApplyStartFirstRecreate(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := startFirstProject()
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	f := fake.NewEngine()
	f.Script("new1", st("running", "starting", 0), st("running", "healthy", 0))

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"inspect new1", "inspect new1", // healthy before the old one stops
		"stop " + dbID + " timeout=nil",
		"rename " + dbID + " " + dbID[:12] + "_previous_prod-db-1",
		"rename new1 prod-db-1",
		"remove " + dbID,
	})
	if res.Recreated != 1 {
		t.Errorf("result = %+v", res)
	}
}

func TestApplyStartFirstUnhealthyKeepsOld(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := startFirstProject()
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	f := fake.NewEngine()
	f.Script("new1", st("running", "starting", 0), st("running", "unhealthy", 0))

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil {
		t.Fatal("apply succeeded with an unhealthy new container")
	}
	for _, want := range []string{"recreate db (prod-db-1)", "unhealthy", "the old container keeps running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"inspect new1", "inspect new1",
		"stop new1 timeout=nil", // the new one goes, the old one is never touched
		"remove new1",
	})
	if res.Recreated != 0 || len(res.Done) != 0 {
		t.Errorf("result = %+v", res)
	}
}

func TestApplyRemovesOrphansBeforeCreating(t *testing.T) {
	observed := fake.Converged(fake.Project())
	observed.Containers = append(observed.Containers, compose.Container{ID: "old1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"})
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		func(p *compose.Project) { p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA)) },
	)
	plan := BuildPlan(desired, observed)
	f := fake.NewEngine()
	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"stop old1 timeout=nil",
		"remove old1",
		"create worker#1 prod-worker-1",
		"start new1",
	})
	if res.Removed != 1 || res.Created != 1 {
		t.Errorf("result = %+v", res)
	}
}

func TestApplyScaleDownAndRestart(t *testing.T) {
	api := func(s *compose.Service) {
		s.DependsOn = []compose.Dependency{{Service: "db", Condition: compose.ConditionStarted, Restart: true, Required: true}}
		s.Replicas = 2
	}
	before := fake.Project(func(p *compose.Project) { p.Services = append(p.Services, fake.Service("api", fake.ImgWebA, api)) })
	before.Service("api").Replicas = 3
	observed := fake.Converged(before)
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00dcafe0000111122223333" }),
		func(p *compose.Project) { p.Services = append(p.Services, fake.Service("api", fake.ImgWebA, api)) },
	)
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	api1, api2, api3 := fake.ObservedContainer(&observed, "api", 1).ID, fake.ObservedContainer(&observed, "api", 2).ID, fake.ObservedContainer(&observed, "api", 3).ID
	f := fake.NewEngine()
	f.Script("new1", st("running", "starting", 0))

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"stop " + dbID + " timeout=nil",
		"rename " + dbID + " " + dbID[:12] + "_previous_prod-db-1",
		"rename new1 prod-db-1",
		"start new1",
		"remove " + dbID,
		"inspect new1", // api waits for the new db to have started
		"stop " + api1 + " timeout=nil",
		"start " + api1,
		"stop " + api2 + " timeout=nil",
		"start " + api2,
		"stop " + api3 + " timeout=nil",
		"remove " + api3,
	})
	if res.Recreated != 1 || res.Restarted != 2 || res.Removed != 1 {
		t.Errorf("result = %+v", res)
	}
}

func TestApplyFailingPullTouchesNothing(t *testing.T) {
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("web", func(s *compose.Service) {
			s.Image = fake.ImgWebB
			s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
		}),
		fake.ModService("db", func(s *compose.Service) { s.PullPolicy = compose.PullAlways; s.ConfigHash = "f00d" }),
	)
	observed := fake.Converged(fake.Project())
	observed.Containers = append(observed.Containers, compose.Container{ID: "old1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"})
	plan := BuildPlan(desired, observed)
	// Put a pull last: Apply must still pull before anything else.
	plan.Actions = append(plan.Actions[1:], plan.Actions[0])

	f := fake.NewEngine()
	f.Fail["pull "+fake.ImgWebB] = errors.New("manifest unknown")
	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil {
		t.Fatal("apply succeeded with a failing pull")
	}
	if !strings.Contains(err.Error(), "pull "+fake.ImgWebB) || !strings.Contains(err.Error(), "manifest unknown") {
		t.Errorf("error %q does not name the image and the cause", err)
	}
	checkCalls(t, f, []string{"pull " + fake.ImgWebB})
	if len(res.Done) != 0 {
		t.Errorf("done = %v", res.Done)
	}
	// With the first pull fine and the second failing, still nothing else.
	f = fake.NewEngine()
	f.Fail["pull "+fake.ImgDB] = errors.New("unauthorized")
	if _, err := Apply(context.Background(), f, desired, observed, plan, testOptions()); err == nil {
		t.Fatal("apply succeeded with a failing pull")
	}
	checkCalls(t, f, []string{"pull " + fake.ImgWebB, "pull " + fake.ImgDB})
}

func TestApplyPreconditions(t *testing.T) {
	tests := []struct {
		name    string
		desired *compose.Project
		want    string
	}{
		{
			name: "external network missing",
			desired: fake.Project(func(p *compose.Project) {
				p.Networks = append(p.Networks, compose.Network{Key: "edge", Name: "traefik", External: true})
				p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA))
			}),
			want: `external network "traefik" (networks.edge) does not exist`,
		},
		{
			name: "external volume missing",
			desired: fake.Project(func(p *compose.Project) {
				p.Volumes = append(p.Volumes, compose.Volume{Key: "certs", Name: "certs", External: true})
				p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA))
			}),
			want: `external volume "certs" (volumes.certs) does not exist`,
		},
		{
			name: "image missing with pull_policy never",
			desired: fake.Project(func(p *compose.Project) {
				p.Services = append(p.Services, fake.Service("worker", fake.ImgWebB, func(s *compose.Service) { s.PullPolicy = compose.PullNever }))
			}),
			want: "image 127.0.0.1:5000/web:bbb is not present and pull_policy is never",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			observed := fake.Converged(fake.Project())
			delete(observed.Images, fake.ImgJob) // a pull is planned too, and must not happen
			plan := BuildPlan(tt.desired, observed)
			if plan.Empty() {
				t.Fatal("test needs a non-empty plan")
			}
			f := fake.NewEngine()
			_, err := Apply(context.Background(), f, tt.desired, observed, plan, testOptions())
			var pe *PreconditionError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a PreconditionError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			checkCalls(t, f, []string{})
		})
	}
}

// depProject is a project where web depends on db with the given
// condition; db's container is observed and web is missing, so applying
// the plan waits on db before creating web.
func depProject(condition string, required, healthcheck bool) (*compose.Project, compose.Observed, string) {
	p := fake.Project(func(p *compose.Project) {
		p.Services = []compose.Service{
			fake.Service("db", fake.ImgDB, func(s *compose.Service) { s.Healthcheck = healthcheck }),
			fake.Service("web", fake.ImgWebA, func(s *compose.Service) {
				s.DependsOn = []compose.Dependency{{Service: "db", Condition: condition, Required: required}}
			}),
		}
	})
	observed := fake.Converged(p)
	observed.Containers = observed.Containers[:1]
	return p, observed, observed.Containers[0].ID
}

func TestApplyDependencyConditions(t *testing.T) {
	tests := []struct {
		name        string
		condition   string
		required    bool
		healthcheck bool
		states      []compose.Container
		timeout     time.Duration
		wantErr     []string // substrings; nil means success
		wantCalls   int      // inspects of db
	}{
		{name: "started", condition: compose.ConditionStarted, required: true, states: []compose.Container{st("created", "", 0), st("running", "", 0)}, wantCalls: 2},
		{name: "started one-shot already exited", condition: compose.ConditionStarted, required: true, states: []compose.Container{st("exited", "", 3)}, wantCalls: 1},
		{name: "healthy after polls", condition: compose.ConditionHealthy, required: true, healthcheck: true,
			states: []compose.Container{st("running", "starting", 0), st("running", "starting", 0), st("running", "starting", 0), st("running", "healthy", 0)}, wantCalls: 4},
		{name: "unhealthy", condition: compose.ConditionHealthy, required: true, healthcheck: true,
			states: []compose.Container{st("running", "starting", 0), st("running", "unhealthy", 0)}, wantCalls: 2,
			wantErr: []string{"service web: dependency db (prod-db-1)", "service_healthy", "unhealthy"}},
		{name: "exited before healthy", condition: compose.ConditionHealthy, required: true, healthcheck: true,
			states: []compose.Container{st("exited", "unhealthy", 2)}, wantCalls: 1, wantErr: []string{"unhealthy"}},
		{name: "no healthcheck fails before polling", condition: compose.ConditionHealthy, required: true, healthcheck: false,
			states: []compose.Container{st("running", "", 0)}, wantCalls: 0, wantErr: []string{"service db defines no healthcheck"}},
		{name: "completed", condition: compose.ConditionCompleted, required: true,
			states: []compose.Container{st("running", "", 0), st("exited", "", 0)}, wantCalls: 2},
		{name: "completed with exit 1", condition: compose.ConditionCompleted, required: true,
			states: []compose.Container{st("running", "", 0), st("exited", "", 1)}, wantCalls: 2,
			wantErr: []string{"service web: dependency db (prod-db-1)", "exited with code 1"}},
		{name: "timeout", condition: compose.ConditionHealthy, required: true, healthcheck: true,
			states: []compose.Container{st("running", "starting", 0)}, timeout: 20 * time.Millisecond, wantCalls: -1,
			wantErr: []string{"timed out after 20ms", "last state running, health starting"}},
		{name: "optional dependency failing is only a warning", condition: compose.ConditionCompleted, required: false,
			states: []compose.Container{st("exited", "", 1)}, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desired, observed, dbID := depProject(tt.condition, tt.required, tt.healthcheck)
			plan := BuildPlan(desired, observed)
			if got := briefs(plan); len(got) != 1 || !strings.HasPrefix(got[0], "create prod-web-1") {
				t.Fatalf("plan = %q", got)
			}
			f := fake.NewEngine()
			for i := range tt.states {
				tt.states[i].Name = "prod-db-1"
			}
			f.Script(dbID, tt.states...)
			opts := testOptions()
			if tt.timeout > 0 {
				opts.DependencyTimeout = tt.timeout
			}
			res, err := Apply(context.Background(), f, desired, observed, plan, opts)
			inspects := 0
			for _, c := range f.Calls() {
				if c == "inspect "+dbID {
					inspects++
				}
			}
			if tt.wantCalls >= 0 && inspects != tt.wantCalls {
				t.Errorf("inspected db %d times, want %d", inspects, tt.wantCalls)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Created != 1 {
					t.Errorf("result = %+v", res)
				}
				return
			}
			if err == nil {
				t.Fatal("apply succeeded")
			}
			var de *DependencyError
			if !errors.As(err, &de) || de.Service != "web" || de.Dependency != "db" {
				t.Errorf("err = %#v, want a DependencyError for web -> db", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, c := range f.Calls() {
				if strings.HasPrefix(c, "create ") {
					t.Errorf("web was created although its dependency failed: %q", f.Calls())
				}
			}
		})
	}
}

func TestApplyMissingDependency(t *testing.T) {
	for _, required := range []bool{true, false} {
		desired, observed, _ := depProject(compose.ConditionStarted, required, false)
		observed.Containers = nil // db container is gone as well
		plan := BuildPlan(desired, observed)
		// Apply only web's create, as if db's were left out: db has no container.
		var webOnly Plan = *plan
		webOnly.Actions = nil
		for _, a := range plan.Actions {
			if a.Service == "web" {
				webOnly.Actions = append(webOnly.Actions, a)
			}
		}
		f := fake.NewEngine()
		_, err := Apply(context.Background(), f, desired, observed, &webOnly, testOptions())
		if required {
			if err == nil || !strings.Contains(err.Error(), "dependency db") || !strings.Contains(err.Error(), "has no container") {
				t.Errorf("required: err = %v", err)
			}
			checkCalls(t, f, []string{})
		} else {
			if err != nil {
				t.Errorf("optional: %v", err)
			}
			checkCalls(t, f, []string{"create web#1 prod-web-1", "start new1"})
		}
	}
}

func TestApplyCancelStopsWaiting(t *testing.T) {
	desired, observed, dbID := depProject(compose.ConditionHealthy, true, true)
	plan := BuildPlan(desired, observed)
	f := fake.NewEngine()
	f.Script(dbID, st("running", "starting", 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inspects := 0
	f.OnInspect = func(string) {
		inspects++
		if inspects == 3 {
			cancel()
		}
	}
	_, err := Apply(ctx, f, desired, observed, plan, testOptions()) // DependencyTimeout is an hour
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, "create ") {
			t.Errorf("created after cancel: %q", f.Calls())
		}
	}
}

func TestApplyStopsAtFirstError(t *testing.T) {
	desired := fake.Project()
	observed := compose.Observed{Project: "prod", Images: map[string]string{fake.ImgDB: fake.IDDB, fake.ImgJob: fake.IDJob, fake.ImgWebA: fake.IDWebA}}
	plan := BuildPlan(desired, observed)
	f := fake.NewEngine()
	f.Fail["create-volume"] = errors.New("disk full")
	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil || !strings.Contains(err.Error(), "create volume prod_data: disk full") {
		t.Fatalf("err = %v", err)
	}
	checkCalls(t, f, []string{"create-network prod_default", "create-volume prod_data"})
	if len(res.Done) != 1 || res.Done[0].Kind != ActCreateNetwork || res.Created != 0 {
		t.Errorf("partial result = %+v", res)
	}
}

func TestApplyStopFirstCleansUpWhenOldWillNotStop(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := fake.Project(func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00d" }))
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	f := fake.NewEngine()
	f.Fail["stop "+dbID] = errors.New("permission denied")
	_, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil || !strings.Contains(err.Error(), "recreate db (prod-db-1): stop container "+dbID[:12]) {
		t.Fatalf("err = %v", err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"stop " + dbID + " timeout=nil",
		"stop new1 timeout=nil",
		"remove new1",
	})
}

func TestApplyStartFirstWithoutHealthcheck(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := startFirstProject()
	desired.Service("db").Healthcheck = false
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID

	// Running is enough without a healthcheck.
	f := fake.NewEngine()
	f.Script("new1", st("created", "", 0), st("running", "", 0))
	if _, err := Apply(context.Background(), f, desired, observed, plan, testOptions()); err != nil {
		t.Fatal(err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"inspect new1", "inspect new1",
		"stop " + dbID + " timeout=nil",
		"rename " + dbID + " " + dbID[:12] + "_previous_prod-db-1",
		"rename new1 prod-db-1",
		"remove " + dbID,
	})

	// A new container that exits at once never replaces the old one.
	f = fake.NewEngine()
	f.Script("new1", st("exited", "", 3))
	_, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil || !strings.Contains(err.Error(), "exited with code 3") {
		t.Fatalf("err = %v", err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"inspect new1",
		"stop new1 timeout=nil",
		"remove new1",
	})
}
