package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Exit codes. Scripts branch on them; README.md and `lockstep help` list
// them too.
const (
	exitOK      = 0
	exitFailure = 1  // a pass failed, or the engine or git could not be reached
	exitChanges = 2  // plan --exit-code: changes are pending
	exitUsage   = 64 // bad command line (EX_USAGE)
	exitConfig  = 78 // the config file is missing or invalid (EX_CONFIG)
)

// runner is what the CLI needs to run a pass: resolve the pin, materialize
// the release, load the compose files, observe the engine, plan and,
// for Apply, apply. A pass result may come back together with an error (an
// apply that stopped halfway says what it did).
type runner interface {
	Plan(ctx context.Context, env reconcile.Environment) (*reconcile.PassResult, error)
	Apply(ctx context.Context, env reconcile.Environment) (*reconcile.PassResult, error)
	// Validate checks the config, pin and compose files of env at the
	// branch head, or at commit when it is not empty, touching nothing.
	Validate(ctx context.Context, env reconcile.Environment, commit string) (*reconcile.PassResult, error)
}

// newRunnerFunc builds the runner for a loaded config. The io.Closer
// releases what the runner holds (engine client, repository lock).
type newRunnerFunc func(cfg *config.Config, log zerolog.Logger) (runner, io.Closer, error)

// cli is one invocation's view of the world: where to write, what the
// environment is, and how to get a runner. Nothing in it is global, so
// tests run many invocations side by side.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	newRunner      newRunnerFunc
	// hangups delivers SIGHUP to the agent command (config reload).
	hangups func() (<-chan os.Signal, func())
}

// Run runs the lockstep command line args (without the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, newRunner: newPassRunner, hangups: hangupSignals}
	return c.run(ctx, args)
}

// globalFlags are accepted before the command and after it.
type globalFlags struct {
	config    string
	logLevel  string
	logFormat string
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", "", "config file (default $"+config.PathEnv+", else "+config.DefaultPath+")")
	fs.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error (overrides [log].level)")
	fs.StringVar(&g.logFormat, "log-format", "", "json or console (overrides [log].format)")
}

func (c *cli) run(ctx context.Context, args []string) int {
	var g globalFlags
	fs := newFlagSet("lockstep")
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, mainUsage)
			return exitOK
		}
		return c.usageError("%v", err)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(c.stderr, mainUsage)
		return exitUsage
	}
	name, rest := fs.Arg(0), fs.Args()[1:]

	switch name {
	case "plan", "apply", "validate":
		return c.pass(ctx, name, &g, rest)
	case "demo":
		return c.demo(ctx, rest)
	case "demo-serve": // hidden: the web server inside the demo's images
		return c.demoServe(ctx, rest)
	case "agent":
		return c.agent(ctx, &g, rest)
	case "status":
		return c.status(ctx, &g, rest)
	case "history":
		return c.history(ctx, &g, rest)
	case "sync":
		return c.sync(ctx, &g, rest)
	case "retry":
		return c.retry(ctx, &g, rest)
	case "rollback":
		return c.rollback(ctx, &g, rest)
	case "version":
		return c.version(rest)
	case "help":
		return c.help(rest)
	}
	return c.usageError("unknown command %q", name)
}

// usageError reports a bad command line.
func (c *cli) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "lockstep: "+format+"\nRun 'lockstep help' for usage.\n", args...)
	return exitUsage
}

// newFlagSet returns a flag set that reports errors through its caller
// instead of printing the flag package's own usage.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses flags anywhere among the positional arguments
// (`lockstep plan production --json`), which the flag package alone stops
// at. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func (c *cli) version(args []string) int {
	if len(args) > 0 {
		return c.usageError("version takes no arguments")
	}
	fmt.Fprintln(c.stdout, versionString())
	return exitOK
}

// versionString describes the binary from what the Go toolchain recorded
// in it: the module version (a tag when installed with go install
// module@version) and the VCS revision when built from a checkout.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "lockstep (unknown version)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	out := "lockstep " + v
	if rev != "" {
		out += " commit " + short(rev) + modified
	}
	return out + " " + info.GoVersion
}

// short is the 12-hex form of a commit, as LOCKSTEP_COMMIT_SHORT has it.
func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, mainUsage)
		return exitOK
	}
	if len(args) > 1 {
		return c.usageError("help takes one command name")
	}
	text, ok := commandHelp(args[0])
	if !ok {
		return c.usageError("unknown command %q", args[0])
	}
	fmt.Fprint(c.stdout, text)
	return exitOK
}

const exitCodesHelp = `Exit codes:
  0   success
  1   failure: a pass failed, or git or the engine could not be reached
  2   plan --exit-code only: changes are pending
  64  usage error: unknown command, flag or environment
  78  config error: the config file is missing or invalid
`

const globalFlagsHelp = `Global flags (before or after the command):
  --config FILE        config file; default $LOCKSTEP_CONFIG, else /etc/lockstep/lockstep.toml
  --log-level LEVEL    debug, info, warn or error; overrides [log].level
  --log-format FORMAT  json or console; overrides [log].format
`

const mainUsage = `lockstep keeps Docker Compose hosts in lockstep with git.

Usage:
  lockstep [global flags] COMMAND [flags] [ENV...]

Commands:
  plan [ENV...]       show what apply would change (--json, --exit-code)
  apply [ENV...]      run one pass now: make the host match the pinned commit (--json)
  validate [ENV...]   check config, pins and compose files at the branch head
                      (or --commit SHA), touching nothing
  agent               the daemon: follow the branch, apply every environment,
                      serve the local API (run it under systemd)
  status              what the running agent knows of each environment (--json)
  history ENV         the agent's recent passes of ENV (--json, --limit N)
  sync [ENV]          ask the running agent for a pass now (--json)
  retry ENV           clear ENV's quarantined commits and try the pinned one again (--json)
  rollback ENV        apply ENV's last healthy revision again now and hold the pinned
                      commit until the pin changes; works while git is down (--json)
  demo                the whole story offline: deploy, release, roll back, clean up
                      (--keep leaves it running)
  version             print the version
  help [COMMAND]      show help

With no ENV, a command acts on every environment in the config.
Logs go to stderr; plans and results to stdout.

` + globalFlagsHelp + `
` + exitCodesHelp

// commandHelp returns the help text of one command.
func commandHelp(name string) (string, bool) {
	switch name {
	case "plan":
		return `Usage: lockstep plan [--json] [--exit-code] [ENV...]

Shows what apply would do for each environment: the actions that would make
the host match the pinned commit, each with its reason. Changes nothing.

  --json        print one JSON array, one object per environment
  --exit-code   exit 2 when any environment has changes pending

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "apply":
		return `Usage: lockstep apply [--json] [ENV...]

Runs one pass for each environment now, with the same engine as the agent:
prints the plan, carries it out, and prints what was done.

  --json   print one JSON array, one object per environment

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "validate":
		return `Usage: lockstep validate [--commit SHA] [--json] [ENV...]

Checks the config, then for each environment its pin file and compose files
at the branch head (or at SHA), touching no container.

  --commit SHA   validate the tree at SHA instead of the pinned revision
  --json         print one JSON array, one object per environment

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "agent":
		return `Usage: lockstep agent [--config FILE]

The daemon. One pass at a time per environment, driven by the poll timer (the
cheap "did the branch move?" check first), webhooks, 'lockstep sync' and a
periodic drift check against the engine. Serves the local API ([api].socket):
status, history, sync, /healthz (503 until the first pass) and /metrics.

Under systemd (systemd/lockstep.service, Type=notify): READY once the config is
valid and the API listens; watchdog pings from the loop itself; STATUS= shows
the last result per environment. SIGTERM starts nothing new and lets the step
in flight finish (within [agent].shutdown_grace), then exits 0. SIGHUP reloads
the config only if the new one validates; otherwise the agent keeps running
on the old one and logs why.

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "status":
		return `Usage: lockstep status [--json]

Asks the running agent, over its local API, for each environment: the pinned
commit, what runs, the last healthy commit, the last pass and its result, the
commits held in quarantine, and the last error (with the next retry) or what
it is waiting for; then the last health gate failure of each environment.

  --json   print {"environments": [...]}

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "history":
		return `Usage: lockstep history [--json] [--limit N] ENV

The running agent's recent passes of ENV, newest last: when, trigger, commit,
result, the service that failed its health gate, duration, plan summary and
error; then the last log lines of the newest failing service.

  --json      print a JSON array of passes
  --limit N   how many passes (default 20)

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "sync":
		return `Usage: lockstep sync [--json] [ENV]

Asks the running agent for a pass now, of ENV or of every environment. A
nudge: the pass looks at git and the engine as any pass does, and a burst of
nudges coalesces into one pass.

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "retry":
		return `Usage: lockstep retry [--json] ENV

A release that fails its health gate is rolled back and its commit
quarantined: the agent does not apply it again until the pin names another
commit. retry clears ENV's quarantine and asks the running agent for a pass
now, so the pinned commit is tried again (health gate and rollback included).

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "rollback":
		return `Usage: lockstep rollback [--json] ENV

The emergency brake. Asks the running agent to apply ENV's last healthy
revision again now, from its release directory on disk (no git needed), and
to hold the pinned commit back until the pin names another commit (or
'lockstep retry ENV'). Fails (HTTP 409) when ENV has no healthy revision
other than the pinned one.

` + globalFlagsHelp + "\n" + exitCodesHelp, true
	case "demo":
		return demoHelp, true
	case "version":
		return "Usage: lockstep version\n\nPrints the version, the commit it was built from and the Go version.\n", true
	case "help":
		return "Usage: lockstep help [COMMAND]\n\nShows help for lockstep, or for one command.\n", true
	}
	return "", false
}

// joinNames lists names for messages.
func joinNames(names []string) string { return strings.Join(names, ", ") }
