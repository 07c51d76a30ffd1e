package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// pinList stands in for gitsource's ListPins: the set's files at the
// head agentGit reports.
type pinList struct {
	git   *agentGit
	mu    sync.Mutex
	files []string
	calls int
}

func (p *pinList) ListPins(ctx context.Context, glob string) (string, []string, error) {
	head, err := p.git.Head(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return head, append([]string(nil), p.files...), err
}

func (p *pinList) set(files ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = files
}

func pin(stem string) string { return "environments/review/" + stem + ".toml" }

// newSetFixture is the agent fixture with a fixed environment prod and a
// set "review" of at most max environments. The fake engine runs one
// project, which every environment loads: their passes are no-ops.
func newSetFixture(t *testing.T, max int, ttl time.Duration) (*agentFixture, *pinList) {
	f := newAgentFixture(t, "prod")
	pins := &pinList{git: f.git}
	f.opts.Pins = pins
	f.opts.Sets = []envset.Set{{Name: "review", Pins: "environments/review/*.toml", Max: max, TTL: ttl, URL: "https://${LOCKSTEP_SLUG}.review.example.com"}}
	return f, pins
}

func (f *agentFixture) statusOf(name string) (reconcile.EnvStatus, bool) {
	for _, s := range f.a.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return reconcile.EnvStatus{}, false
}

// deployed says whether name runs and has finished a pass.
func (f *agentFixture) deployed(name string) bool {
	s, ok := f.statusOf(name)
	return ok && s.NotDeployed == "" && s.LastPass != nil
}

func (f *agentFixture) envEvents(env string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		if e.Environment == env {
			out = append(out, string(e.Kind))
		}
	}
	return out
}

func TestAgentSetStartsCapsAndTearsDown(t *testing.T) {
	f, pins := newSetFixture(t, 2, 0)
	pins.set(pin("pr-3"), pin("pr-1"), pin("pr-2"))
	f.start()
	fake.Eventually(t, "review-pr-1 and review-pr-2 to deploy", func() bool { return f.deployed("review-pr-1") && f.deployed("review-pr-2") })
	fake.Eventually(t, "the agent to be ready", f.a.Ready)
	s, _ := f.statusOf("review-pr-1")
	if s.Set != "review" || s.URL != "https://pr-1.review.example.com" || s.PinFile != pin("pr-1") || s.Project != "review-pr-1" {
		t.Errorf("status of a set's environment: %+v", s)
	}
	capped, ok := f.statusOf("review-pr-3")
	if !ok || capped.NotDeployed != "not deployed: set review already runs its max of 2" || capped.LastPass != nil {
		t.Fatalf("pin file over the cap: %+v", capped)
	}

	// CI closes pr-1: the branch moves, its file is gone.
	pins.set(pin("pr-3"), pin("pr-2"))
	f.git.set(func(g *agentGit) { g.head = head2 })
	f.clock.Advance(pollTick)
	fake.Eventually(t, "review-pr-1 to be torn down and review-pr-3 to take its room", func() bool {
		_, running := f.statusOf("review-pr-1")
		return !running && f.deployed("review-pr-3")
	})
	recs, err := f.a.History("review-pr-1", 0)
	if err != nil || len(recs) == 0 {
		t.Fatalf("history of the torn down environment: %v %v", recs, err)
	}
	if last := recs[len(recs)-1]; last.Result != reconcile.ResultRemoved || last.Trigger != reconcile.TriggerPoll || !strings.Contains(last.Plan, "to remove") {
		t.Errorf("teardown record: %+v", last)
	}
	if got := strings.Join(f.envEvents("review-pr-1"), ","); !strings.HasSuffix(got, "teardown") {
		t.Errorf("events of review-pr-1: %s", got)
	}
	if m, _ := f.runner.State.Member("review-pr-1"); m != nil {
		t.Errorf("membership kept after the teardown: %+v", m)
	}
	if err := f.a.Sync("review-pr-1", reconcile.TriggerSync); err == nil {
		t.Error("a torn down environment still takes nudges")
	}
}

// TestAgentSetConvergesAfterARestart: an environment the state dir knows
// of a set whose pin file is gone (the agent was killed before or during
// its teardown) is torn down when the agent starts.
func TestAgentSetConvergesAfterARestart(t *testing.T) {
	f, pins := newSetFixture(t, 10, 0)
	pins.set(pin("pr-1"), pin("pr-2"))
	f.start()
	fake.Eventually(t, "both to deploy", func() bool { return f.deployed("review-pr-1") && f.deployed("review-pr-2") })
	f.stop()

	pins.set(pin("pr-2"))
	f.git.set(func(g *agentGit) { g.head = head2 })
	f.start()
	fake.Eventually(t, "review-pr-1 to be torn down at start", func() bool {
		recs, _ := f.runner.State.History("review-pr-1", 0)
		return len(recs) > 0 && recs[len(recs)-1].Result == reconcile.ResultRemoved
	})
	recs, _ := f.runner.State.History("review-pr-1", 0)
	if tr := recs[len(recs)-1].Trigger; tr != reconcile.TriggerStart {
		t.Errorf("teardown trigger %s, want start", tr)
	}
	fake.Eventually(t, "review-pr-2 to run after the restart", func() bool { return f.deployed("review-pr-2") })
}

// TestAgentSetTTL: an environment whose commit has not changed for the
// ttl is torn down, stays down while its pin names that commit, and comes
// back when the pin moves.
func TestAgentSetTTL(t *testing.T) {
	f, pins := newSetFixture(t, 10, time.Hour)
	// The set's environment alone, its project loaded under its name and
	// converged: what was deployed is recorded for it, and when.
	f.opts.Environments = nil
	load := f.runner.Load
	f.runner.Load = func(ctx context.Context, env pass.Environment, rel gitsource.Release, need func(string) error) (*compose.Project, error) {
		p, err := load(ctx, env, rel, need)
		if p != nil {
			p.Name = env.Project
		}
		return p, err
	}
	o := fake.Converged(fake.Project(func(p *compose.Project) { p.Name = "review-pr-1" }))
	f.eng.Observed = &o
	pins.set(pin("pr-1"))
	f.start()
	fake.Eventually(t, "review-pr-1 to deploy", func() bool { return f.deployed("review-pr-1") })

	f.clock.Advance(61 * time.Minute)
	fake.Eventually(t, "the ttl to tear it down", func() bool {
		s, ok := f.statusOf("review-pr-1")
		return ok && strings.Contains(s.NotDeployed, "ttl of 1h0m0s expired at commit "+reconcile.Short(fake.CommitA))
	})
	recs, _ := f.runner.State.History("review-pr-1", 0)
	if len(recs) == 0 || recs[len(recs)-1].Result != reconcile.ResultRemoved {
		t.Fatalf("history: %+v", recs)
	}

	// The branch moves (another file), the pin still names the commit.
	calls := func() int { pins.mu.Lock(); defer pins.mu.Unlock(); return pins.calls }
	n := calls()
	f.git.set(func(g *agentGit) { g.head = head2 })
	f.clock.Advance(pollTick)
	fake.Eventually(t, "the set to list again", func() bool { return calls() > n })
	f.git.set(func(g *agentGit) { g.head = "4444444444444444444444444444444444444444" })
	// The set lists one pass at a time: once it lists again, the
	// listing before is fully handled.
	f.clock.Advance(pollTick)
	fake.Eventually(t, "the set to list again", func() bool { return calls() > n+1 })
	if f.deployed("review-pr-1") {
		t.Fatal("deployed again while its pin names the expired commit")
	}

	// The pin names another commit: it comes back.
	f.git.set(func(g *agentGit) { g.commit, g.head = fake.CommitB, "3333333333333333333333333333333333333333" })
	f.clock.Advance(pollTick)
	fake.Eventually(t, "review-pr-1 back at the new commit", func() bool {
		s, ok := f.statusOf("review-pr-1")
		return ok && s.NotDeployed == "" && s.LastPass != nil && s.Pinned == fake.CommitB
	})
}

// TestAgentSetTearsDownWhatOnlyTheEngineKnows: a set's environment with
// containers on the engine, but neither a record in the state dir (it was
// deleted) nor a pin file, is torn down when the agent starts.
func TestAgentSetTearsDownWhatOnlyTheEngineKnows(t *testing.T) {
	f, pins := newSetFixture(t, 10, 0)
	for i := range f.eng.Observed.Containers {
		f.eng.Observed.Containers[i].Labels = map[string]string{compose.LabelEnvironment: "review-pr-9", compose.LabelProject: "prod"}
	}
	pins.set(pin("pr-1"))
	f.start()
	fake.Eventually(t, "review-pr-9 to be torn down", func() bool {
		recs, _ := f.runner.State.History("review-pr-9", 0)
		return len(recs) == 1 && recs[0].Result == reconcile.ResultRemoved && recs[0].Trigger == reconcile.TriggerStart
	})
	fake.Eventually(t, "review-pr-1 to run", func() bool { return f.deployed("review-pr-1") })
	if _, listed := f.statusOf("review-pr-9"); listed {
		t.Error("the torn down environment is in the status")
	}
}
