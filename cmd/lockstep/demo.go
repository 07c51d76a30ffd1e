package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/config"
)

const demoHelp = `Usage: lockstep demo [--keep] [--log-level LEVEL]

Tells the whole story on this host, offline, in well under a minute: makes a
throw-away infrastructure repository and images packed from this lockstep
binary, deploys v1, merges a release of v2 (only the service that changed is
recreated), reverts the release (rolled back), then removes everything it
created. It runs the same pass runner as 'lockstep apply' and the agent.

Needs a Docker engine (DOCKER_HOST or the default socket) and git on PATH.

  --keep              leave the stack, its images and files in place, and print
                      how to look at them and how to remove them
  --log-level LEVEL   log level of the passes (stderr); default warn
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
	// transport, which runs git-upload-pack.
	if _, err := exec.LookPath("git"); err != nil {
		fmt.Fprintf(c.stderr, "lockstep: demo needs git on this host: lockstep reads the demo's local repository through git-upload-pack, and git is not on PATH (%v); install git and run it again\n", err)
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

	port    int
	images  []string // references loaded into the engine
	steps   int
	timings []demoTiming
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

// tell runs the story: images, repository, deploy v1, release v2, roll
// back, and a pass that finds nothing to do. It stops at the first error.
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
	run, env, closer, err := s.setUp()
	if err != nil {
		return err
	}
	defer func() {
		if err := closer.Close(); err != nil {
			fmt.Fprintf(s.c.stderr, "lockstep: demo: release the pass runner: %v\n", err)
		}
	}()
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
	s.say("repository %s, config %s", repo.Dir, s.configPath())
	s.timed("repository", t0)

	t0 = time.Now()
	s.step("lockstep apply demo: deploy the pinned commit")
	if err := s.apply(ctx, run, env); err != nil {
		return err
	}
	if err := s.get(ctx, "v1"); err != nil {
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
	s.say("lockstep apply demo: only web changed, so only web is recreated")
	if err := s.apply(ctx, run, env); err != nil {
		return err
	}
	if err := s.get(ctx, "v2"); err != nil {
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
	s.say("lockstep apply demo: a rollback is an ordinary release of an older commit")
	if err := s.apply(ctx, run, env); err != nil {
		return err
	}
	if err := s.get(ctx, "v1"); err != nil {
		return err
	}
	s.timed("rollback", t0)

	t0 = time.Now()
	s.step("Apply once more: the host matches git, so nothing is touched")
	if err := s.apply(ctx, run, env); err != nil {
		return err
	}
	s.timed("no-op pass", t0)
	return nil
}

// setUp writes the host side of the demo, as an operator would: the agent
// config and the host-local env file, and builds the pass runner from them
// exactly as `lockstep apply` does.
func (s *demoStory) setUp() (runner, config.Environment, io.Closer, error) {
	port, err := freePort()
	if err != nil {
		return nil, config.Environment{}, nil, fmt.Errorf("find a free port on 127.0.0.1 for the web service: %w", err)
	}
	s.port = port
	hostEnv := filepath.Join(s.dir, "host.env")
	envText := "# Host-local values of the demo stack (env_files in lockstep.toml): they\n" +
		"# differ from host to host, so they are not in git.\n" +
		fmt.Sprintf("%s=%s\n%s=%d\n", demo.VarImages, s.project, demo.VarPort, port)
	if err := os.WriteFile(hostEnv, []byte(envText), 0o644); err != nil {
		return nil, config.Environment{}, nil, fmt.Errorf("write the demo's host env file: %w", err)
	}
	cfgText := "# The agent config of the demo host, written by lockstep demo.\n" +
		fmt.Sprintf("state_dir = %q\n\n", filepath.Join(s.dir, "state")) +
		fmt.Sprintf("[repo]\nurl = %q\nbranch = %q\n\n", filepath.Join(s.dir, "repo"), demo.Branch) +
		fmt.Sprintf("[log]\nlevel = %q\nformat = \"console\"\n\n", s.logLevel) +
		fmt.Sprintf("[[environment]]\nname = %q\nproject = %q\nenv_files = [%q]\n", demo.Environment, s.project, hostEnv)
	if err := os.WriteFile(s.configPath(), []byte(cfgText), 0o644); err != nil {
		return nil, config.Environment{}, nil, fmt.Errorf("write the demo's agent config: %w", err)
	}
	cfg, err := config.Load(s.configPath())
	if err != nil {
		return nil, config.Environment{}, nil, fmt.Errorf("the demo's own config does not load (a bug in lockstep demo): %w", err)
	}
	env, ok := cfg.Environment(demo.Environment)
	if !ok {
		return nil, config.Environment{}, nil, fmt.Errorf("the demo's config %s has no environment %q (a bug in lockstep demo)", s.configPath(), demo.Environment)
	}
	log := newLogger(s.c.stderr, cfg.Log, "", "")
	run, closer, err := s.c.newRunner(cfg, log)
	if err != nil {
		return nil, config.Environment{}, nil, err
	}
	if closer == nil {
		closer = io.NopCloser(nil)
	}
	return run, env, closer, nil
}

func (s *demoStory) configPath() string { return filepath.Join(s.dir, "lockstep.toml") }

// apply runs one apply pass, the same one `lockstep apply demo` runs, and
// prints its plan and outcome.
func (s *demoStory) apply(ctx context.Context, run runner, env config.Environment) error {
	pr, err := s.c.runOne(ctx, run, "apply", env, "")
	if pr != nil && pr.Plan != nil {
		var buf bytes.Buffer
		if werr := pr.Plan.WriteText(&buf); werr == nil {
			s.indent(buf.String())
		}
		switch {
		case pr.Applied != nil:
			s.say("%s", appliedLine(pr.Plan, pr.Applied, err != nil))
		case err == nil && pr.Plan.Empty():
			s.say("up to date at %s: no container touched", short(pr.Commit))
		}
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", env.Name, err)
	}
	if pr == nil || pr.Plan == nil {
		return fmt.Errorf("apply %s: the pass returned no plan", env.Name)
	}
	return nil
}

// indent prints text under the current step.
func (s *demoStory) indent(text string) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		s.say("%s", sc.Text())
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
	if err := removeTree(s.dir); err != nil {
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

// removeTree removes dir, whose release directories gitsource made
// read-only: directories get write permission back first (files need none
// to be unlinked).
func removeTree(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
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
