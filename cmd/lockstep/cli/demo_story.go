package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/agent"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// tell runs the story: images, repository, the agent deploying v1, a
// release of v2 and its revert noticed by the agent's poll, and a sync
// that finds nothing to do. It stops at the first error; the agent is
// stopped before it returns, whatever happened.
func (s *demoStory) tell(ctx context.Context) error {
	if err := s.loadImages(ctx); err != nil {
		return err
	}
	repo, base, cfg, env, err := s.createRepo()
	if err != nil {
		return err
	}

	t0 := time.Now()
	s.step("Start the agent: its first pass deploys the pinned commit")
	ag, stop, err := s.startAgent(ctx, cfg, env)
	if err != nil {
		return err
	}
	defer stop()
	if err := s.converge(ctx, ag, base, "v1"); err != nil {
		return err
	}
	s.timed("deploy v1", t0)

	rel2Msg, err := s.releaseV2(ctx, ag, repo)
	if err != nil {
		return err
	}
	if err := s.rollBack(ctx, ag, repo, base, rel2Msg); err != nil {
		return err
	}
	return s.syncFindsNothing(ctx, ag, env)
}

// loadImages is the first step: the images are packed from this binary and
// loaded straight into the engine, so the demo needs no registry and runs
// offline.
func (s *demoStory) loadImages(ctx context.Context) error {
	t0 := time.Now()
	s.step("Pack this lockstep binary into the demo images and load them into the engine (no registry)")
	imgs, err := demo.BuildImages(s.bin, s.project)
	if err != nil {
		return err
	}
	// Record the names before loading: a load that fails halfway may have
	// tagged some of them.
	s.images = imgs.Refs
	lctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = imgs.Load(lctx, s.docker)
	cancel()
	if err != nil {
		return err
	}
	s.say("%s", strings.Join(imgs.Refs, "  "))
	if imgs.Interpreter == "" {
		s.say("(a static binary: the image holds it alone)")
	} else {
		s.say("(a dynamically linked binary: packed with its loader %s and %d shared %s)",
			imgs.Interpreter, len(imgs.Libraries), plural(len(imgs.Libraries), "library", "libraries"))
	}
	s.timed("images", t0)
	return nil
}

// createRepo is the second step: the infrastructure repository with its
// first release (pinning base, web v1), pushed to the origin the agent
// watches, and the host side an operator would write (setUp).
func (s *demoStory) createRepo() (repo *demo.Repo, base string, cfg *config.Config, env config.Environment, err error) {
	t0 := time.Now()
	s.step("Create the infrastructure repository and the agent config")
	repo, base, err = demo.InitRepo(filepath.Join(s.dir, "repo"))
	if err != nil {
		return nil, "", nil, env, err
	}
	s.say("%s  web v1 and a worker", short(base))
	rel1Msg := "release: demo runs " + short(base)
	rel1, err := repo.Release(rel1Msg, base)
	if err != nil {
		return nil, "", nil, env, err
	}
	s.say("%s  %s  (%s)", short(rel1), rel1Msg, demo.PinPath)
	if err := repo.AddOrigin(s.originPath()); err != nil {
		return nil, "", nil, env, err
	}
	cfg, env, err = s.setUp()
	if err != nil {
		return nil, "", nil, env, err
	}
	s.say("repository %s (pushed to %s, which the agent watches)", repo.Dir, repo.Origin)
	s.say("config %s: poll the branch every %s", s.configPath(), cfg.Repo.PollInterval)
	s.timed("repository", t0)
	return repo, base, cfg, env, nil
}

// releaseV2 merges a change and then the release that pins it, the two
// commits a team makes, and waits for the agent's poll to deploy it. It
// returns the release's message, which the rollback reverts.
func (s *demoStory) releaseV2(ctx context.Context, ag *agent.Agent, repo *demo.Repo) (string, error) {
	t0 := time.Now()
	s.step("Merge a change (web v2), then the release PR that pins it")
	v2, err := repo.SetWebTag("v2")
	if err != nil {
		return "", err
	}
	s.say("%s  web v2  (compose.yaml: web's image :v1 -> :v2)", short(v2))
	rel2Msg := "release: demo runs " + short(v2)
	rel2, err := repo.Release(rel2Msg, v2)
	if err != nil {
		return "", err
	}
	s.say("%s  %s", short(rel2), rel2Msg)
	s.say("the agent's next poll sees the branch move; only web changed, so only web is recreated")
	if err := s.converge(ctx, ag, v2, "v2"); err != nil {
		return "", err
	}
	s.timed("release v2", t0)
	return rel2Msg, nil
}

// rollBack reverts the release of v2 by pinning base again: a rollback is
// shown as what it is in lockstep, an ordinary release of an older commit.
func (s *demoStory) rollBack(ctx context.Context, ag *agent.Agent, repo *demo.Repo, base, rel2Msg string) error {
	t0 := time.Now()
	s.step("Roll back: revert the release PR")
	revert, err := repo.Release(fmt.Sprintf("Revert %q", rel2Msg), base)
	if err != nil {
		return err
	}
	s.say("%s  Revert %q  (the pin names %s again)", short(revert), rel2Msg, short(base))
	s.say("a rollback is an ordinary release of an older commit")
	if err := s.converge(ctx, ag, base, "v1"); err != nil {
		return err
	}
	s.timed("rollback", t0)
	return nil
}

// syncFindsNothing is the last step: a full pass asked for by hand must
// leave every container untouched, which the engine's own listing (not the
// agent's word) shows; anything else means the host drifted during the demo.
func (s *demoStory) syncFindsNothing(ctx context.Context, ag *agent.Agent, env config.Environment) error {
	t0 := time.Now()
	s.step("lockstep sync: a full pass now; the host matches git, so nothing is touched")
	before, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := ag.Sync(env.Name, reconcile.TriggerSync); err != nil {
		return fmt.Errorf("sync %s: %w", env.Name, err)
	}
	rec, err := s.await(ctx, ag, "run the pass lockstep sync asked for", func(r reconcile.PassRecord) bool {
		return r.Trigger == reconcile.TriggerSync
	})
	if err != nil {
		return err
	}
	if err := s.showChanges(ctx, before); err != nil {
		return err
	}
	if rec.Result != reconcile.ResultNoop {
		return fmt.Errorf("the sync pass %s at %s %s (%s), want nothing to do: the host had drifted from git during the demo", rec.ID, short(rec.Commit), rec.Result, rec.Plan)
	}
	s.timed("sync", t0)
	return nil
}

// setUp writes the host side of the demo, as an operator would: the agent
// config and the host-local env file. It returns the loaded config and its
// one environment.
func (s *demoStory) setUp() (*config.Config, config.Environment, error) {
	port, err := freePort()
	if err != nil {
		return nil, config.Environment{}, fmt.Errorf("find a free port on 127.0.0.1 for the web service: %w", err)
	}
	s.port = port
	hostEnv := filepath.Join(s.dir, "host.env")
	envText := "# Host-local values of the demo stack (env_files in lockstep.toml): they\n" +
		"# differ from host to host, so they are not in git.\n" +
		fmt.Sprintf("%s=%s\n%s=%d\n", demo.VarImages, s.project, demo.VarPort, port)
	if err := os.WriteFile(hostEnv, []byte(envText), 0o644); err != nil {
		return nil, config.Environment{}, fmt.Errorf("write the demo's host env file: %w", err)
	}
	// The poll interval is the minimum, so a merge is deployed within a
	// second or two without a webhook. A short shutdown grace lets Ctrl-C
	// stop the agent quickly; cleanup removes whatever a cut pass left.
	cfgText := "# The agent config of the demo host, written by lockstep demo.\n" +
		fmt.Sprintf("state_dir = %q\n\n", filepath.Join(s.dir, "state")) +
		fmt.Sprintf("[repo]\nurl = %q\nbranch = %q\npoll_interval = %q\n\n", s.originPath(), demo.Branch, demoPollInterval) +
		fmt.Sprintf("[agent]\nshutdown_grace = %q\n\n", demoShutdownGrace) +
		// Every deploy passes the health gate, as on a real host; the
		// worker has no healthcheck, so a short bake keeps the story brisk.
		"[health]\nbake = \"2s\"\n\n" +
		fmt.Sprintf("[api]\nsocket = %q\n\n", filepath.Join(s.dir, "lockstep.sock")) +
		fmt.Sprintf("[log]\nlevel = %q\nformat = \"console\"\n\n", s.logLevel) +
		fmt.Sprintf("[[environment]]\nname = %q\nproject = %q\nenv_files = [%q]\n", demo.Environment, s.project, hostEnv)
	if err := os.WriteFile(s.configPath(), []byte(cfgText), 0o644); err != nil {
		return nil, config.Environment{}, fmt.Errorf("write the demo's agent config: %w", err)
	}
	cfg, err := config.Load(s.configPath())
	if err != nil {
		return nil, config.Environment{}, fmt.Errorf("the demo's own config does not load (a bug in lockstep demo): %w", err)
	}
	env, ok := cfg.Environment(demo.Environment)
	if !ok {
		return nil, config.Environment{}, fmt.Errorf("the demo's config %s has no environment %q (a bug in lockstep demo)", s.configPath(), demo.Environment)
	}
	return cfg, env, nil
}

// Agent settings of the demo config (see setUp).
const (
	demoPollInterval  = "1s"
	demoShutdownGrace = "2s"
)

func (s *demoStory) configPath() string { return filepath.Join(s.dir, "lockstep.toml") }
func (s *demoStory) originPath() string { return filepath.Join(s.dir, "origin.git") }

// startAgent runs the real agent in-process, wired exactly as `lockstep
// agent` wires it (cmd/lockstep/wire), without its API listeners: the demo reads
// the agent's status and history directly. stop cancels it and waits until
// it has stopped and released the engine client, so cleanup never races a
// pass.
func (s *demoStory) startAgent(ctx context.Context, cfg *config.Config, env config.Environment) (*agent.Agent, func(), error) {
	log := newLogger(s.c.stderr, cfg.Log, "", "")
	parts, err := wire.Build(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ag, err := agent.New(parts.Pipeline, parts.Releases, agent.Options{
		Environments:  []pass.Environment{wire.Environment(env)},
		PollInterval:  cfg.Repo.PollInterval,
		DriftInterval: cfg.Agent.DriftInterval,
		ShutdownGrace: cfg.Agent.ShutdownGrace,
		Log:           log,
	})
	if err != nil {
		return nil, nil, errors.Join(err, parts.Close())
	}
	s.env = env.Name
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ag.Run(actx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintf(s.c.stderr, "lockstep: demo: the agent stopped with: %v\n", err)
		}
		if err := parts.Close(); err != nil {
			fmt.Fprintf(s.c.stderr, "lockstep: demo: release the agent's engine client: %v\n", err)
		}
	}
	return ag, stop, nil
}

// converge waits until the agent runs commit, narrating its passes and
// what they did to the containers, then asks web what it serves.
func (s *demoStory) converge(ctx context.Context, ag *agent.Agent, commit, version string) error {
	before, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	_, err = s.await(ctx, ag, "run "+short(commit), func(r reconcile.PassRecord) bool {
		return r.Commit == commit && (r.Result == reconcile.ResultApplied || r.Result == reconcile.ResultNoop)
	})
	if err != nil {
		return err
	}
	st, ok := s.status(ag)
	if !ok || st.Running != commit {
		return fmt.Errorf("the agent's last pass deployed %s, but its status says it runs %q (a bug in lockstep)", short(commit), st.Running)
	}
	if err := s.showChanges(ctx, before); err != nil {
		return err
	}
	s.say("agent status: running %s, pinned %s, last healthy %s", short(st.Running), short(st.Pinned), short(st.LastHealthy))
	return s.get(ctx, version)
}

// status is the agent's status of the demo environment.
func (s *demoStory) status(ag *agent.Agent) (reconcile.EnvStatus, bool) {
	for _, st := range ag.Status() {
		if st.Name == s.env {
			return st, true
		}
	}
	return reconcile.EnvStatus{}, false
}

// demoStepTimeout bounds how long one step waits for the agent: a pass of
// the demo takes seconds, a poll one second.
const demoStepTimeout = time.Minute

// await prints every pass the agent records from now on until one
// satisfies done, and returns it. A failure the agent will not retry
// (permanent: it waits for the branch to move, and nothing will move it)
// ends the wait at once; one it retries is shown and waited out.
func (s *demoStory) await(ctx context.Context, ag *agent.Agent, what string, done func(reconcile.PassRecord) bool) (reconcile.PassRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, demoStepTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastFailed *reconcile.PassRecord
	for {
		recs, err := ag.History(s.env, 0)
		if err != nil {
			return reconcile.PassRecord{}, err
		}
		for _, rec := range newPasses(recs, s.lastPass) {
			s.lastPass = rec.ID
			s.say("%s", passLine(rec))
			if done(rec) {
				return rec, nil
			}
			if rec.Result == reconcile.ResultFailed {
				if rec.Class == reconcile.ClassPermanent {
					return rec, fmt.Errorf("the agent's pass %s failed and it will not retry until the branch moves: %s", rec.ID, rec.Error)
				}
				lastFailed = &rec
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("the agent did not %s within %s", what, demoStepTimeout)
			if errors.Is(ctx.Err(), context.Canceled) {
				msg = "stopped while waiting for the agent to " + what
			}
			if lastFailed != nil {
				return reconcile.PassRecord{}, fmt.Errorf("%s; its last failed pass: %s: %w", msg, lastFailed.Error, ctx.Err())
			}
			if st, ok := s.status(ag); ok && st.LastError != "" {
				return reconcile.PassRecord{}, fmt.Errorf("%s; its last error: %s: %w", msg, st.LastError, ctx.Err())
			}
			return reconcile.PassRecord{}, fmt.Errorf("%s: %w", msg, ctx.Err())
		case <-tick.C:
		}
	}
}

// newPasses returns the records after the one with ID last (all of them
// when last is "" or no longer kept).
func newPasses(recs []reconcile.PassRecord, last string) []reconcile.PassRecord {
	if last == "" {
		return recs
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].ID == last {
			return recs[i+1:]
		}
	}
	return recs
}

// passLine tells one pass of the agent from its history record.
func passLine(rec reconcile.PassRecord) string {
	took := rec.Duration.Round(10 * time.Millisecond)
	at := "at " + short(rec.Commit)
	if rec.Commit == "" {
		at = "before resolving the pin"
	}
	switch rec.Result {
	case reconcile.ResultFailed:
		return fmt.Sprintf("agent pass %s (%s) %s: failed (%s error): %s (%s)", rec.ID, rec.Trigger, at, rec.Class, rec.Error, took)
	case reconcile.ResultNoop:
		why := "nothing to do"
		if rec.Trigger == reconcile.TriggerPoll || rec.Trigger == reconcile.TriggerWebhook {
			why = "the branch moved, the pin did not: nothing to do"
		}
		return fmt.Sprintf("agent pass %s (%s) %s: %s (%s)", rec.ID, rec.Trigger, at, why, took)
	default:
		return fmt.Sprintf("agent pass %s (%s) %s: %s: %s (%s)", rec.ID, rec.Trigger, at, rec.Result, rec.Plan, took)
	}
}

// get asks the web service what it runs, the way `curl` would, and checks
// it is the version the pin names. Connection failures are retried while
// the new container starts; an answer with the wrong version is not.
func (s *demoStory) get(ctx context.Context, want string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/", s.port)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second}
	var lastErr error
	for {
		line, err := getFirstLine(ctx, hc, url)
		if err == nil {
			s.say("GET %s -> %s", url, line)
			if line != demo.Greeting(want) {
				return fmt.Errorf("web at %s answered %q, want %q: the deployed stack is not the one the pin names", url, line, demo.Greeting(want))
			}
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("web did not answer at %s: %w (last: %v); see `docker logs %s-web-1`", url, ctx.Err(), lastErr, s.project)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getFirstLine(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	line, _, _ := strings.Cut(string(body), "\n")
	return line, nil
}

// freePort asks the kernel for a port nobody on 127.0.0.1 uses. Another
// program could take it before the container binds it; the apply would
// then fail and say so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
