package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
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

// runner is what the CLI needs to run a pass: the same pipeline the agent
// runs (reconcile/pass), as far as opts.Mode says. A pass result may come
// back together with an error (an apply that stopped halfway says what it
// did).
type runner interface {
	Run(ctx context.Context, env pass.Environment, opts pass.Options) (*pass.Result, error)
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
	// preflight opens every file a config names (wire.Preflight) before
	// validate checks the environments; nil skips it (tests of the
	// output, whose runner is a fake).
	preflight func(*config.Config) error
	// hangups delivers SIGHUP to the agent command (config reload).
	hangups func() (<-chan os.Signal, func())
}

// Run runs the lockstep command line args (without the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, newRunner: newPassRunner, preflight: wire.Preflight, hangups: hangupSignals}
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

func versionString() string { return wire.Version() }

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

// joinNames lists names for messages.
func joinNames(names []string) string { return strings.Join(names, ", ") }
