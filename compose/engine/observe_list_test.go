package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestSummaryHealth(t *testing.T) {
	for status, want := range map[string]string{
		"Up 3 seconds (health: starting)": "starting",
		"Up 2 minutes (healthy)":          "healthy",
		"Up About an hour (unhealthy)":    "unhealthy",
		"Up 5 minutes":                    "",
		"Up 5 minutes (Paused)":           "",
		"Exited (3) 2 seconds ago":        "",
	} {
		if got := summaryHealth(container.Summary{Status: status}); got != want {
			t.Errorf("health of status %q = %q, want %q", status, got, want)
		}
	}
	// Newer engines say it in a field of its own, which wins.
	s := container.Summary{Status: "Up 2 minutes (healthy)", Health: &container.HealthSummary{Status: container.Unhealthy}}
	if got := summaryHealth(s); got != "unhealthy" {
		t.Errorf("health with Summary.Health unhealthy = %q", got)
	}
	s.Health.Status = container.NoHealthcheck
	if got := summaryHealth(s); got != "" {
		t.Errorf("health with Summary.Health none = %q, want none", got)
	}
}

func summary(state container.ContainerState, endpoints map[string]string) container.Summary {
	s := container.Summary{
		ID: "c1", Names: []string{"/p-web-1"}, Image: "reg/web:1", ImageID: "sha256:img", State: state,
		Status: "Up 1 minute (healthy)",
		Labels: map[string]string{compose.LabelService: "web", compose.LabelContainerNumber: "1", compose.LabelHash: "h",
			compose.LabelConfigHash: "ch", compose.LabelCommit: "c0ffee", compose.LabelWorkingDir: "/rel/c0ffee"},
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}},
	}
	for n, ep := range endpoints {
		s.NetworkSettings.Networks[n] = &network.EndpointSettings{NetworkID: "id-" + n, EndpointID: ep}
	}
	return s
}

func TestFromSummary(t *testing.T) {
	c, facts := fromSummary(summary(container.StateRunning, map[string]string{"p_b": "e2", "p_a": "e1"}))
	want := compose.Container{
		ID: "c1", Name: "p-web-1", Service: "web", Number: 1, State: "running", Health: "healthy",
		Image: "reg/web:1", ImageID: "sha256:img", Hash: "h", ConfigHash: "ch", Commit: "c0ffee", WorkingDir: "/rel/c0ffee",
		Networks: map[string]compose.Endpoint{"p_a": {NetworkID: "id-p_a"}, "p_b": {NetworkID: "id-p_b"}},
	}
	c.Labels = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("fromSummary = %+v\nwant %+v", c, want)
	}
	if facts.key != "c1 p_a=e1 p_b=e2" || facts.imageUnknown {
		t.Errorf("facts = %+v, want the key of both endpoints, in name order", facts)
	}

	known := inspectFacts{Key: facts.key, RestartCount: 2, Aliases: map[string][]string{"p_a": {"web"}}}
	if needsInspect(c, facts, known) {
		t.Error("a running container whose endpoints are known needs an inspect")
	}
	got := withFacts(c, known)
	if got.RestartCount != 2 || !reflect.DeepEqual(got.Networks["p_a"].Aliases, []string{"web"}) || got.Networks["p_b"].Aliases != nil {
		t.Errorf("withFacts = %+v", got)
	}
	if f := factsOf(facts.key, got); !sameFacts(f, known) {
		t.Errorf("factsOf = %+v, want %+v", f, known)
	}

	for name, tc := range map[string]struct {
		s     container.Summary
		known inspectFacts
	}{
		"never seen":             {summary(container.StateRunning, map[string]string{"p_a": "e1"}), inspectFacts{}},
		"new endpoint":           {summary(container.StateRunning, map[string]string{"p_a": "e9"}), inspectFacts{Key: "c1 p_a=e1"}},
		"exited":                 {summary(container.StateExited, map[string]string{"p_a": ""}), inspectFacts{Key: "c1 p_a="}},
		"restarting":             {summary(container.StateRestarting, map[string]string{"p_a": "e1"}), inspectFacts{Key: "c1 p_a=e1"}},
		"no endpoint of its own": {summary(container.StateRunning, nil), inspectFacts{Key: "c1"}},
		"endpoint without id":    {summary(container.StateRunning, map[string]string{"p_a": ""}), inspectFacts{Key: "c1 p_a="}},
		"image shown by id": {func() container.Summary {
			s := summary(container.StateRunning, map[string]string{"p_a": "e1"})
			s.Image = s.ImageID
			return s
		}(), inspectFacts{Key: "c1 p_a=e1"}},
	} {
		c, facts := fromSummary(tc.s)
		if !needsInspect(c, facts, tc.known) {
			t.Errorf("%s: not inspected (facts %+v)", name, facts)
		}
	}
}

func TestFactCacheFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "facts")
	f := newFactCache()
	f.dir = dir
	if got := f.load("proj"); len(got) != 0 {
		t.Fatalf("empty cache loaded %v", got)
	}
	m := map[string]inspectFacts{"c1": {Key: "c1 n=e1", RestartCount: 1, Aliases: map[string][]string{"n": {"web"}}}}
	f.store("proj", m)
	again := newFactCache()
	again.dir = dir
	if got := again.load("proj"); !reflect.DeepEqual(got, m) {
		t.Errorf("a new process reads %v, want %v", got, m)
	}
	// A corrupt file costs inspects, not an error.
	if err := os.WriteFile(filepath.Join(dir, "proj.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := newFactCache()
	third.dir = dir
	if got := third.load("proj"); len(got) != 0 {
		t.Errorf("corrupt file loaded %v", got)
	}
	// A name that could leave the directory is kept in memory only.
	f.store("../evil", m)
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil.json")); !os.IsNotExist(err) {
		t.Errorf("a project name with a path wrote a file (%v)", err)
	}
}
