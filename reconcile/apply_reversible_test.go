package reconcile

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// webRecreate is a plan that recreates web (stop-first: it publishes
// ports) with a new image, on a stateful fake holding the converged world.
func webRecreate(t *testing.T) (*fake.Engine, *compose.Project, compose.Observed, *Plan, string) {
	t.Helper()
	observed := fake.Converged(fake.Project())
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("web", func(s *compose.Service) {
			s.Image = fake.ImgWebB
			s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
		}),
	)
	observed.Images[fake.ImgWebB] = fake.IDWebB
	plan := BuildPlan(desired, observed)
	if got := briefs(plan); len(got) != 1 || !strings.HasPrefix(got[0], "recreate prod-web-1") {
		t.Fatalf("plan = %q", got)
	}
	f := fake.NewEngine()
	f.UseWorld(observed)
	return f, desired, observed, plan, fake.ObservedContainer(&observed, "web", 1).ID
}

// webContainers is what the fake world holds for web, as "id name state".
func webContainers(f *fake.Engine) []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []string
	for id, c := range f.World {
		if c.Service == "web" {
			out = append(out, id+" "+c.Name+" "+c.State)
		}
	}
	return out
}

func TestApplyStopFirstPutsOldBackWhenNewWillNotStart(t *testing.T) {
	f, desired, observed, plan, webID := webRecreate(t)
	f.Fail["start new1"] = errors.New("driver failed programming external connectivity: listen tcp4 127.0.0.1:8443: bind: address already in use")

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	var re *RecreateError
	if !errors.As(err, &re) || !re.Restored || re.RestoreErr != nil || re.Service != "web" {
		t.Fatalf("err = %#v, want a RecreateError, restored", err)
	}
	for _, want := range []string{
		"recreate web (prod-web-1): new container could not start: start container new1:",
		"127.0.0.1:8443: bind: address already in use",
		"; the previous container is running again",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if calls := fake.Mutating(f.Calls()); !reflect.DeepEqual(calls, []string{
		"create web#1 " + webID[:12] + "_prod-web-1 inherit=" + webID,
		"stop " + webID + " timeout=nil",
		"rename " + webID + " " + webID[:12] + "_previous_prod-web-1",
		"rename new1 prod-web-1",
		"start new1", // fails
		"stop new1 timeout=nil",
		"remove new1",
		"rename " + webID + " prod-web-1",
		"start " + webID,
	}) {
		t.Errorf("engine calls:\n%s", strings.Join(calls, "\n"))
	}
	if got, want := webContainers(f), []string{webID + " prod-web-1 running"}; !reflect.DeepEqual(got, want) {
		t.Errorf("web after the failed recreate: %q, want %q", got, want)
	}
	if len(res.Done) != 0 || res.Recreated != 0 || !reflect.DeepEqual(res.Restored, []string{"prod-web-1"}) {
		t.Errorf("result = %+v, want nothing done and prod-web-1 restored", res)
	}
}

func TestApplyStopFirstSaysWhatCouldNotBeRestored(t *testing.T) {
	tests := []struct {
		name      string
		fail      []string // calls that fail besides "start new1"
		restored  bool
		wantErr   []string
		wantWorld func(webID string) []string
	}{
		{
			name:      "old will not start again",
			fail:      []string{"start web1"},
			wantErr:   []string{"could NOT be restored (it is web100000000 stopped, named prod-web-1)", "start the previous container:", "no space left"},
			wantWorld: func(id string) []string { return []string{id + " prod-web-1 exited"} },
		},
		{
			name: "new will not go away: the old one runs under its aside name",
			fail: []string{"remove new1"},
			wantErr: []string{"could NOT be restored (it is web100000000 running, named web100000000_previous_prod-web-1)", "remove the new container:",
				"give the previous container its name back: rename container web100000000 to prod-web-1: conflict"},
			wantWorld: func(id string) []string {
				return []string{id + " " + id[:12] + "_previous_prod-web-1 running", "new1 prod-web-1 exited"}
			},
		},
		{
			name:      "old will not get its name back",
			fail:      []string{"rename web1" + strings.Repeat("0", 60) + " prod-web-1"},
			wantErr:   []string{"named web100000000_previous_prod-web-1", "give the previous container its name back:"},
			wantWorld: func(id string) []string { return []string{id + " " + id[:12] + "_previous_prod-web-1 running"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, desired, observed, plan, webID := webRecreate(t)
			f.Fail["start new1"] = errors.New("port is already allocated")
			for _, c := range tt.fail {
				f.Fail[c] = errors.New("no space left on device")
			}
			res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
			var re *RecreateError
			if !errors.As(err, &re) || re.Restored || re.RestoreErr == nil {
				t.Fatalf("err = %#v, want a RecreateError, not restored", err)
			}
			for _, want := range append(tt.wantErr, "new container could not start: start container new1: port is already allocated") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "is running again") {
				t.Errorf("error %q claims a restore that did not happen", err)
			}
			got, want := webContainers(f), tt.wantWorld(webID)
			sortStrings(got)
			sortStrings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("web after the failed restore: %q, want %q", got, want)
			}
			if len(res.Restored) != 0 {
				t.Errorf("restored = %q", res.Restored)
			}
		})
	}
}

func TestApplyStartFirstPutsOldBackWhenHandOverFails(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := startFirstProject()
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	f := fake.NewEngine()
	f.UseWorld(observed)
	f.Fail["rename new1"] = errors.New("name in use")

	res, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	var re *RecreateError
	if !errors.As(err, &re) || !re.Restored {
		t.Fatalf("err = %#v, want a RecreateError, restored", err)
	}
	if !strings.Contains(err.Error(), "could not hand the name over: rename container new1 to prod-db-1: name in use; the previous container is running again") {
		t.Errorf("error = %q", err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"inspect new1",
		"stop " + dbID + " timeout=nil",
		"rename " + dbID + " " + dbID[:12] + "_previous_prod-db-1",
		"rename new1 prod-db-1", // fails
		"stop new1 timeout=nil",
		"remove new1",
		"rename " + dbID + " prod-db-1",
		"start " + dbID,
	})
	if !reflect.DeepEqual(res.Restored, []string{"prod-db-1"}) {
		t.Errorf("restored = %q", res.Restored)
	}
}

func TestApplyStartFirstNewWillNotStartLeavesOld(t *testing.T) {
	observed := fake.Converged(fake.Project())
	desired := startFirstProject()
	plan := BuildPlan(desired, observed)
	dbID := fake.ObservedContainer(&observed, "db", 1).ID
	f := fake.NewEngine()
	f.Fail["start new1"] = errors.New("OCI runtime create failed")
	_, err := Apply(context.Background(), f, desired, observed, plan, testOptions())
	if err == nil || !strings.Contains(err.Error(), "new container could not start: start container new1: OCI runtime create failed; the old container keeps running") {
		t.Fatalf("err = %v", err)
	}
	checkCalls(t, f, []string{
		"create db#1 " + dbID[:12] + "_prod-db-1 inherit=" + dbID,
		"start new1",
		"stop new1 timeout=nil",
		"remove new1",
	})
}

func sortStrings(s []string) { sort.Strings(s) }

// A kill -9 during the restore can leave the old container alone under
// its aside name: the next plan gives it its name back, and says why.
func TestPlanNamesAnOldContainerLeftAside(t *testing.T) {
	desired := fake.Project()
	observed := fake.Converged(desired)
	web := fake.ObservedContainer(&observed, "web", 1)
	web.ID = strings.Repeat("ab", 32)
	web.Name = web.ID[:12] + "_previous_prod-web-1"
	web.State = "exited"
	got := briefs(BuildPlan(desired, observed))
	if len(got) != 1 || !strings.HasPrefix(got[0], "recreate prod-web-1") || !strings.Contains(got[0], "(left by an interrupted apply)") {
		t.Errorf("plan = %q", got)
	}
}

// A recreate that was undone is not retried by the agent (a retry would
// stop the service again for nothing); one that could not be undone is.
func TestUndoneRecreateIsNotRetried(t *testing.T) {
	undone := &StepError{Step: StepApply, Err: &RecreateError{Service: "web", What: "new container could not start", Err: errors.New("exec: no such file"), Restored: true}}
	if got := Classify(undone); got != ClassPermanent {
		t.Errorf("undone recreate: class %q, want %q", got, ClassPermanent)
	}
	broken := &StepError{Step: StepApply, Err: &RecreateError{Service: "web", What: "new container could not start", Err: errors.New("exec: no such file"), RestoreErr: errors.New("start: engine away")}}
	if got := Classify(broken); got != ClassEngine {
		t.Errorf("recreate that could not be undone: class %q, want %q", got, ClassEngine)
	}
}
