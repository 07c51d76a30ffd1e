package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/demo"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/config"
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
	s, err := c.newDemoStory(ctx, *logLevel)
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
		return exitFailure
	}
	defer s.docker.Close()

	start := time.Now()
	fmt.Fprintf(s.out, "lockstep demo: a release, an upgrade and a rollback on this host, offline.\n")
	fmt.Fprintf(s.out, "Everything it creates is named %s", s.project)
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
	} else if !s.cleanupStep() {
		code = exitFailure
	}
	s.printTimings(time.Since(start))
	return code
}

// newDemoStory checks what the demo needs before it makes anything (git,
// this binary, a Docker engine), so a host that lacks one is told so with
// nothing to clean up, then names the run and creates its directory. The
// caller closes the story's engine client.
func (c *cli) newDemoStory(ctx context.Context, logLevel string) (*demoStory, error) {
	// gitsource reads a repository on a local path through go-git's file
	// transport, which runs git-upload-pack; the demo's merges push to it
	// through git-receive-pack.
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("demo needs git on this host: the demo pushes to its local repository through git-receive-pack and lockstep reads it through git-upload-pack, and git is not on PATH (%w); install git and run it again", err)
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return nil, fmt.Errorf("demo: find this lockstep binary to pack into the demo images: %w", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	docker, err := engine.Connect(cctx, "")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("demo needs a Docker engine: %w", err)
	}

	project := "lockstep-demo-" + randomHex(4)
	dir, err := os.MkdirTemp(c.getenv("TMPDIR"), project+"-")
	if err != nil {
		docker.Close()
		return nil, fmt.Errorf("demo: create its working directory: %w", err)
	}
	return &demoStory{
		c: c, out: c.stdout, docker: docker, bin: bin,
		project: project, dir: dir, logLevel: logLevel,
	}, nil
}

// cleanupStep removes everything the demo made and reports what could not
// be removed, with the commands that remove it by hand. It runs even when
// the story failed or was interrupted (Ctrl-C cancels the demo's context),
// so it gets a context of its own. It says whether nothing was left.
func (s *demoStory) cleanupStep() bool {
	s.step("Clean up")
	t0 := time.Now()
	cleanCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	errs := s.cleanup(cleanCtx)
	cancel()
	s.timed("cleanup", t0)
	for _, e := range errs {
		fmt.Fprintf(s.c.stderr, "lockstep: demo cleanup: %v\n", e)
	}
	if len(errs) > 0 {
		fmt.Fprintf(s.c.stderr, "lockstep: demo: remove what is left with: %s\n", s.removeHint())
		return false
	}
	return true
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

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
