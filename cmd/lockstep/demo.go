package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

const demoHelp = `Usage: lockstep demo [--keep] [--log-level LEVEL]

Tells the whole story on this host, offline, in well under a minute: makes a
throw-away infrastructure repository and images packed from this lockstep
binary, starts the agent against it (in-process, polling every second), and
tells what the agent does: it deploys v1; a merged release of v2 converges
(only the service that changed is recreated); reverting the release rolls
back. Then it stops the agent and removes everything it created.

Needs a Docker engine (DOCKER_HOST or the default socket) and git on PATH.

  --keep              leave the stack, its images and files in place, and print
                      how to look at them, run the agent on them, and remove them
  --log-level LEVEL   log level of the agent (stderr); default warn
`

// demoTimeout bounds the whole story: it finishes in seconds, so a run
// that takes this long is stuck, and cleanup still gets its own time.
const demoTimeout = 5 * time.Minute

// demo runs `lockstep demo`.
func (c *cli) demo(ctx context.Context, args []string) int {
	fs := newFlagSet("demo")
	keep := fs.Bool("keep", false, "")
	logLevel := fs.String("log-level", "warn", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, demoHelp)
			return exitOK
		}
		return c.usageError("demo: %v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("demo takes no arguments, got %q", fs.Arg(0))
	}
	if !config.IsLogLevel(*logLevel) {
		return c.usageError("--log-level %q: use debug, info, warn or error", *logLevel)
	}
	// gitsource reads a repository on a local path through go-git's file
	// transport, which runs git-upload-pack; the demo's merges push to it
	// through git-receive-pack.
	if _, err := exec.LookPath("git"); err != nil {
		fmt.Fprintf(c.stderr, "lockstep: demo needs git on this host: the demo pushes to its local repository through git-receive-pack and lockstep reads it through git-upload-pack, and git is not on PATH (%v); install git and run it again\n", err)
		return exitFailure
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: demo: find this lockstep binary to pack into the demo images: %v\n", err)
		return exitFailure
	}

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	docker, err := engine.Connect(cctx, "")
	cancel()
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: demo needs a Docker engine: %v\n", err)
		return exitFailure
	}
	defer docker.Close()

	project := "lockstep-demo-" + randomHex(4)
	dir, err := os.MkdirTemp(c.getenv("TMPDIR"), project+"-")
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: demo: create its working directory: %v\n", err)
		return exitFailure
	}
	s := &demoStory{
		c: c, out: c.stdout, docker: docker, bin: bin,
		project: project, dir: dir, logLevel: *logLevel,
	}
	start := time.Now()
	fmt.Fprintf(s.out, "lockstep demo: a release, an upgrade and a rollback on this host, offline.\n")
	fmt.Fprintf(s.out, "Everything it creates is named %s", project)
	if *keep {
		fmt.Fprintf(s.out, " and left running (--keep).\n")
	} else {
		fmt.Fprintf(s.out, " and removed at the end.\n")
	}

	rctx, cancel := context.WithTimeout(ctx, demoTimeout)
	err = s.tell(rctx)
	cancel()
	code := exitOK
	if err != nil {
		code = exitFailure
		if ctx.Err() != nil {
			fmt.Fprintf(c.stderr, "lockstep: demo interrupted: %v\n", err)
		} else {
			fmt.Fprintf(c.stderr, "lockstep: demo: %v\n", err)
		}
	}
	if *keep {
		s.printKeep()
	} else {
		// Cleanup runs even when the story failed or was interrupted
		// (Ctrl-C cancels ctx), so it gets a context of its own.
		s.step("Clean up")
		t0 := time.Now()
		cleanCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		errs := s.cleanup(cleanCtx)
		cancel()
		s.timed("cleanup", t0)
		for _, e := range errs {
			fmt.Fprintf(c.stderr, "lockstep: demo cleanup: %v\n", e)
		}
		if len(errs) > 0 {
			code = exitFailure
			fmt.Fprintf(c.stderr, "lockstep: demo: remove what is left with: %s\n", s.removeHint())
		}
	}
	s.printTimings(time.Since(start))
	return code
}

// demoStory is one run of the demo: what it made and how long each part
// took.
type demoStory struct {
	c        *cli
	out      io.Writer
	docker   *client.Client
	bin      string // the lockstep binary packed into the images
	project  string // compose project, and prefix of every image name
	dir      string // everything on disk lives under it
	logLevel string

	port     int
	images   []string // references loaded into the engine
	env      string   // the environment the agent runs
	lastPass string   // ID of the last agent pass narrated
	steps    int
	timings  []demoTiming
}

type demoTiming struct {
	what string
	took time.Duration
}

func (s *demoStory) step(title string) {
	s.steps++
	fmt.Fprintf(s.out, "\n%d. %s\n", s.steps, title)
}

func (s *demoStory) say(format string, args ...any) {
	fmt.Fprintf(s.out, "   "+format+"\n", args...)
}

func (s *demoStory) timed(what string, since time.Time) {
	s.timings = append(s.timings, demoTiming{what, time.Since(since)})
}

// tell runs the story: images, repository, the agent deploying v1, a
// release of v2 and its revert noticed by the agent's poll, and a sync
// that finds nothing to do. It stops at the first error; the agent is
// stopped before it returns, whatever happened.
func (s *demoStory) tell(ctx context.Context) error {
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

	t0 = time.Now()
	s.step("Create the infrastructure repository and the agent config")
	repo, base, err := demo.InitRepo(filepath.Join(s.dir, "repo"))
	if err != nil {
		return err
	}
	s.say("%s  web v1 and a worker", short(base))
	rel1Msg := "release: demo runs " + short(base)
	rel1, err := repo.Release(rel1Msg, base)
	if err != nil {
		return err
	}
	s.say("%s  %s  (%s)", short(rel1), rel1Msg, demo.PinPath)
	if err := repo.AddOrigin(s.originPath()); err != nil {
		return err
	}
	cfg, env, err := s.setUp()
	if err != nil {
		return err
	}
	s.say("repository %s (pushed to %s, which the agent watches)", repo.Dir, repo.Origin)
	s.say("config %s: poll the branch every %s", s.configPath(), cfg.Repo.PollInterval)
	s.timed("repository", t0)

	t0 = time.Now()
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

	t0 = time.Now()
	s.step("Merge a change (web v2), then the release PR that pins it")
	v2, err := repo.SetWebTag("v2")
	if err != nil {
		return err
	}
	s.say("%s  web v2  (compose.yaml: web's image :v1 -> :v2)", short(v2))
	rel2Msg := "release: demo runs " + short(v2)
	rel2, err := repo.Release(rel2Msg, v2)
	if err != nil {
		return err
	}
	s.say("%s  %s", short(rel2), rel2Msg)
	s.say("the agent's next poll sees the branch move; only web changed, so only web is recreated")
	if err := s.converge(ctx, ag, v2, "v2"); err != nil {
		return err
	}
	s.timed("release v2", t0)

	t0 = time.Now()
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

	t0 = time.Now()
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
// agent` wires it (buildRunner), without its API listeners: the demo reads
// the agent's status and history directly. stop cancels it and waits until
// it has stopped and released the engine client, so cleanup never races a
// pass.
func (s *demoStory) startAgent(ctx context.Context, cfg *config.Config, env config.Environment) (*reconcile.Agent, func(), error) {
	log := newLogger(s.c.stderr, cfg.Log, "", "")
	r, src, closer, err := buildRunner(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ag, err := reconcile.NewAgent(r, src, reconcile.AgentOptions{
		Environments:  []reconcile.Environment{environment(env)},
		PollInterval:  cfg.Repo.PollInterval,
		DriftInterval: cfg.Agent.DriftInterval,
		ShutdownGrace: cfg.Agent.ShutdownGrace,
		StateDir:      cfg.StateDir,
		Log:           log,
	})
	if err != nil {
		return nil, nil, errors.Join(err, closer.Close())
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
		if err := closer.Close(); err != nil {
			fmt.Fprintf(s.c.stderr, "lockstep: demo: release the agent's engine client: %v\n", err)
		}
	}
	return ag, stop, nil
}

// converge waits until the agent runs commit, narrating its passes and
// what they did to the containers, then asks web what it serves.
func (s *demoStory) converge(ctx context.Context, ag *reconcile.Agent, commit, version string) error {
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
func (s *demoStory) status(ag *reconcile.Agent) (reconcile.EnvStatus, bool) {
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
func (s *demoStory) await(ctx context.Context, ag *reconcile.Agent, what string, done func(reconcile.PassRecord) bool) (reconcile.PassRecord, error) {
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

// demoState is what the engine holds of the project: containers by name,
// networks by name, each with its ID.
type demoState struct {
	containers map[string]demoContainer
	networks   map[string]string
}

type demoContainer struct{ id, image string }

// snapshot reads the project's containers and networks from the engine by
// their compose label: what the narration compares, rather than trusting
// what the agent says it did.
func (s *demoStory) snapshot(ctx context.Context) (demoState, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := demoState{containers: map[string]demoContainer{}, networks: map[string]string{}}
	filter := make(client.Filters).Add("label", compose.LabelProject+"="+s.project)
	ctrs, err := s.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return st, fmt.Errorf("list the containers of project %s: %w", s.project, err)
	}
	for _, ct := range ctrs.Items {
		name := ct.ID
		if len(ct.Names) > 0 {
			name = strings.TrimPrefix(ct.Names[0], "/")
		}
		st.containers[name] = demoContainer{id: ct.ID, image: ct.Image}
	}
	nets, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return st, fmt.Errorf("list the networks of project %s: %w", s.project, err)
	}
	for _, n := range nets.Items {
		st.networks[n.Name] = n.ID
	}
	return st, nil
}

// showChanges prints what changed on the engine since before.
func (s *demoStory) showChanges(ctx context.Context, before demoState) error {
	after, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	for _, line := range engineChanges(before, after) {
		s.say("%s", line)
	}
	return nil
}

// engineChanges lists, sorted by name, what differs between two snapshots:
// networks created or removed, and every container created, recreated
// (a new ID under the same name), removed or untouched.
func engineChanges(before, after demoState) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(after.networks)) {
		if _, ok := before.networks[name]; !ok {
			lines = append(lines, "+ network "+name+" created")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before.networks)) {
		if _, ok := after.networks[name]; !ok {
			lines = append(lines, "- network "+name+" removed")
		}
	}
	names := slices.Sorted(maps.Keys(after.containers))
	for name := range before.containers {
		if _, ok := after.containers[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		b, had := before.containers[name]
		a, has := after.containers[name]
		switch {
		case !had:
			lines = append(lines, fmt.Sprintf("+ %s created (image %s)", name, a.image))
		case !has:
			lines = append(lines, fmt.Sprintf("- %s removed", name))
		case a.id != b.id && a.image != b.image:
			lines = append(lines, fmt.Sprintf("~ %s recreated (image %s -> %s)", name, b.image, a.image))
		case a.id != b.id:
			lines = append(lines, fmt.Sprintf("~ %s recreated (same image %s)", name, a.image))
		default:
			lines = append(lines, fmt.Sprintf("= %s untouched (container %s)", name, shortID(a.id)))
		}
	}
	return lines
}

// shortID is a container ID as `docker ps` shows it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
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

// cleanup removes everything the demo created: the project's containers,
// networks and volumes (found by its compose label, so a half-finished
// apply leaves nothing behind either), its image tags and its directory.
func (s *demoStory) cleanup(ctx context.Context) []error {
	var errs []error
	filter := make(client.Filters).Add("label", compose.LabelProject+"="+s.project)
	var nCtr, nNet, nVol, nImg int
	ctrs, err := s.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the containers of project %s: %w", s.project, err))
	}
	for _, ct := range ctrs.Items {
		_, err := s.docker.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", ct.ID, err))
			continue
		}
		nCtr++
	}
	nets, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the networks of project %s: %w", s.project, err))
	}
	for _, n := range nets.Items {
		if _, err := s.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			continue
		}
		nNet++
	}
	// The demo's stack declares no volume; this removes any a future
	// version of its compose file adds. They hold nothing but demo data.
	vols, err := s.docker.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list the volumes of project %s: %w", s.project, err))
	}
	for _, v := range vols.Items {
		if _, err := s.docker.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			continue
		}
		nVol++
	}
	// By reference, never by ID: an identical image somebody tagged
	// otherwise stays theirs.
	for _, ref := range s.images {
		_, err := s.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			continue
		}
		nImg++
	}
	if err := gitsource.RemoveReadOnlyTree(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove the demo directory %s: %w", s.dir, err))
	}
	var removed []string
	for _, n := range []struct {
		count     int
		one, many string
	}{
		{nCtr, "container", "containers"}, {nNet, "network", "networks"},
		{nVol, "volume", "volumes"}, {nImg, "image tag", "image tags"},
	} {
		if n.count > 0 {
			removed = append(removed, fmt.Sprintf("%d %s", n.count, plural(n.count, n.one, n.many)))
		}
	}
	removed = append(removed, s.dir)
	s.say("removed %s", strings.Join(removed, ", "))
	return errs
}

// removeHint says how to remove by hand what the demo made: with Docker
// Compose v2, which reads the project from its labels, and the rest with
// plain docker.
func (s *demoStory) removeHint() string {
	hint := fmt.Sprintf("docker compose -p %s down", s.project)
	if len(s.images) > 0 {
		hint += " && docker image rm " + strings.Join(s.images, " ")
	}
	return hint + fmt.Sprintf(" && chmod -R u+w %s && rm -rf %s", s.dir, s.dir)
}

// removeHintNoCompose is removeHint's first part for hosts without Docker
// Compose v2 (the v1 `docker-compose` insists on a compose file).
func (s *demoStory) removeHintNoCompose() string {
	return fmt.Sprintf("docker rm -f $(docker ps -aq --filter label=%s=%s) && docker network rm %s_default",
		compose.LabelProject, s.project, s.project)
}

func (s *demoStory) printKeep() {
	fmt.Fprintf(s.out, "\nLeft running (--keep). Look around:\n")
	fmt.Fprintf(s.out, "   docker compose -p %s ps\n", s.project)
	if s.port != 0 {
		fmt.Fprintf(s.out, "   curl http://127.0.0.1:%d/\n", s.port)
	}
	fmt.Fprintf(s.out, "   git -C %s log --oneline\n", filepath.Join(s.dir, "repo"))
	fmt.Fprintf(s.out, "   lockstep plan --config %s\n", s.configPath())
	fmt.Fprintf(s.out, "The agent stopped with the demo; to keep the stack following the repository:\n")
	fmt.Fprintf(s.out, "   lockstep agent --config %s\n", s.configPath())
	fmt.Fprintf(s.out, "Remove it all with:\n   %s\n", s.removeHint())
	fmt.Fprintf(s.out, "(without Docker Compose v2, instead of its `down`: %s)\n", s.removeHintNoCompose())
}

func (s *demoStory) printTimings(total time.Duration) {
	parts := make([]string, len(s.timings))
	for i, t := range s.timings {
		parts[i] = fmt.Sprintf("%s %s", t.what, t.took.Round(10*time.Millisecond))
	}
	fmt.Fprintf(s.out, "\nTook %s", total.Round(10*time.Millisecond))
	if len(parts) > 0 {
		fmt.Fprintf(s.out, ": %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(s.out)
}

// demoServe runs the web server inside the demo images (hidden command):
// it answers with the version baked into its image and the config file its
// service mounts.
func (c *cli) demoServe(ctx context.Context, args []string) int {
	fs := newFlagSet("demo-serve")
	listen := fs.String("listen", fmt.Sprintf(":%d", demo.ContainerPort), "")
	if err := fs.Parse(args); err != nil {
		return c.usageError("demo-serve: %v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("demo-serve takes no arguments, got %q", fs.Arg(0))
	}
	if err := demo.Serve(ctx, *listen, c.getenv); err != nil {
		fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
		return exitFailure
	}
	return exitOK
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

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
