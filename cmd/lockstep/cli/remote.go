package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// commandFlags is a flag set for cmd that also accepts the global flags
// after the command, defaulting to what came before it.
func (c *cli) commandFlags(cmd string, g *globalFlags) *flag.FlagSet {
	fs := newFlagSet(cmd)
	fs.StringVar(&g.config, "config", g.config, "")
	fs.StringVar(&g.logLevel, "log-level", g.logLevel, "")
	fs.StringVar(&g.logFormat, "log-format", g.logFormat, "")
	return fs
}

// flagError answers -h with the command's help and anything else as a
// usage error.
func (c *cli) flagError(cmd string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		text, _ := commandHelp(cmd)
		fmt.Fprint(c.stdout, text)
		return exitOK
	}
	return c.usageError("%s: %v", cmd, err)
}

// checkLogFlags validates --log-level and --log-format.
func (c *cli) checkLogFlags(g *globalFlags) (int, bool) {
	if g.logLevel != "" && !config.IsLogLevel(g.logLevel) {
		return c.usageError("--log-level %q: use debug, info, warn or error", g.logLevel), false
	}
	if g.logFormat != "" && !config.IsLogFormat(g.logFormat) {
		return c.usageError("--log-format %q: use json or console", g.logFormat), false
	}
	return 0, true
}

// apiClient reads the config to find the agent's API. The config is
// needed: it names the socket.
func (c *cli) apiClient(g *globalFlags) (*api.Client, *config.Config, int) {
	cfg, err := config.Load(config.PathFrom(g.config, c.getenv))
	if err != nil {
		c.configError(err)
		return nil, nil, exitConfig
	}
	return api.NewClient(cfg.API.Socket, cfg.API.Listen), cfg, exitOK
}

// remoteError prints an error from the agent's API; "no agent" errors say
// how to start one. The agent's "no such environment" (404) is a usage
// error, as an environment the config does not name is.
func (c *cli) remoteError(err error) int {
	fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
	var se *api.ServerError
	if errors.As(err, &se) && se.NotFound() {
		return exitUsage
	}
	return exitFailure
}

// unknownEnvironment answers, as a usage error, an environment cfg does
// not name, before the agent is asked (whose answer would be a 404) or
// the state dir touched.
func (c *cli) unknownEnvironment(cfg *config.Config, env string) (int, bool) {
	if _, ok := cfg.Environment(env); ok {
		return 0, false
	}
	if _, ok := setOf(cfg, env); ok {
		return 0, false // a set's: the agent knows whether it runs
	}
	return c.usageError("unknown environment %q in %s; known: %s", env, cfg.Path, joinNames(cfg.EnvironmentNames())), true
}

// status prints what the running agent knows of each environment.
func (c *cli) status(ctx context.Context, g *globalFlags, args []string) int {
	fs := c.commandFlags("status", g)
	var jsonOut bool
	fs.BoolVar(&jsonOut, "json", false, "")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return c.flagError("status", err)
	}
	if len(rest) > 0 {
		return c.usageError("status takes no arguments")
	}
	cl, _, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	resp, err := cl.StatusResponse(ctx)
	if err != nil {
		return c.remoteError(err)
	}
	if resp.Environments == nil {
		resp.Environments = []reconcile.EnvStatus{}
	}
	if jsonOut {
		return c.writeJSON(resp)
	}
	writeStatus(c.stdout, resp.Environments, time.Now())
	if resp.ReloadError != "" {
		// "reload refused: ..." says the agent runs on its old config.
		fmt.Fprintf(c.stdout, "agent: %s (still running on the config it had)\n", oneLine(resp.ReloadError))
	}
	if resp.StateDir != nil {
		fmt.Fprintf(c.stdout, "state dir: %s\n", diskUsageText(*resp.StateDir))
	}
	return exitOK
}

func writeStatus(w io.Writer, envs []reconcile.EnvStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tPINNED\tRUNNING\tLAST HEALTHY\tLAST PASS\tRESULT\tQUARANTINED\tERROR")
	for _, e := range envs {
		if e.NotDeployed != "" {
			continue // listed under the table
		}
		last, result := "-", "-"
		if p := e.LastPass; p != nil {
			last = ago(now, p.Start) + " (" + string(p.Trigger) + ")"
			result = string(p.Result)
		}
		errText := "-"
		switch {
		case e.Waiting != "":
			errText = e.Waiting
		case e.LastError != "":
			errText = oneLine(e.LastError)
			if !e.NextRetry.IsZero() {
				errText += "; retry in " + e.NextRetry.Sub(now).Round(time.Second).String()
			}
		}
		quarantined := "-"
		if len(e.Quarantined) > 0 {
			shorts := make([]string, len(e.Quarantined))
			for i, q := range e.Quarantined {
				shorts[i] = short12(q)
			}
			quarantined = strings.Join(shorts, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, short12(e.Pinned), short12(e.Running), short12(e.LastHealthy), last, result, quarantined, errText)
	}
	tw.Flush()
	// The last health gate failure is long (service, reason, rollback):
	// one line per environment under the table rather than a column.
	for _, e := range envs {
		if e.LastFailure != "" {
			fmt.Fprintf(w, "%s: last failure: %s\n", e.Name, oneLine(e.LastFailure))
		}
		if e.Held != "" {
			fmt.Fprintf(w, "%s: held: release %s %s\n", e.Name, short12(e.Pending), e.Held)
		}
		if e.Swarm != nil {
			fmt.Fprintf(w, "%s: swarm: %s\n", e.Name, e.Swarm.Summary())
		}
	}
	writeSets(w, envs)
}

// writeSets lists, under the status table, each review environment's set,
// pin file and URL, and the pin files of sets that do not run, with why.
func writeSets(w io.Writer, envs []reconcile.EnvStatus) {
	for _, e := range envs {
		switch {
		case e.NotDeployed != "" && e.Name != "":
			fmt.Fprintf(w, "set %s: %s (%s): %s\n", e.Set, e.PinFile, e.Name, oneLine(e.NotDeployed))
		case e.NotDeployed != "":
			fmt.Fprintf(w, "set %s: %s: %s\n", e.Set, e.PinFile, oneLine(e.NotDeployed))
		case e.Set != "":
			line := fmt.Sprintf("%s: set %s, pin file %s", e.Name, e.Set, e.PinFile)
			if e.URL != "" {
				line += ", " + e.URL
			}
			fmt.Fprintln(w, line)
		}
	}
}

// history prints the recent passes of one environment, newest last.
func (c *cli) history(ctx context.Context, g *globalFlags, args []string) int {
	fs := c.commandFlags("history", g)
	var jsonOut bool
	var limit int
	fs.BoolVar(&jsonOut, "json", false, "")
	fs.IntVar(&limit, "limit", 20, "")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return c.flagError("history", err)
	}
	if len(rest) != 1 {
		return c.usageError("history takes exactly one environment")
	}
	if limit < 1 {
		return c.usageError("history: --limit must be at least 1")
	}
	cl, cfg, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	if code, unknown := c.unknownEnvironment(cfg, rest[0]); unknown {
		return code
	}
	passes, err := cl.History(ctx, rest[0], limit)
	if err != nil {
		return c.remoteError(err)
	}
	if jsonOut {
		return c.writeJSON(passes)
	}
	writeHistory(c.stdout, passes)
	return exitOK
}

// writeHistory prints passes as a table, then the last log lines of the
// newest pass whose service failed its health gate.
func writeHistory(w io.Writer, passes []reconcile.PassRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tPASS\tTRIGGER\tCOMMIT\tRESULT\tSERVICE\tTOOK\tPLAN\tERROR")
	for _, p := range passes {
		errText := "-"
		if p.Error != "" {
			errText = oneLine(p.Error)
		}
		plan := p.Plan
		if plan == "" {
			plan = "-"
		}
		result := string(p.Result)
		if p.RolledBackTo != "" {
			result += " to " + short12(p.RolledBackTo)
		}
		switch {
		case p.Held != nil:
			result += " (" + short12(p.Held.Commit) + " held: " + string(p.Held.Kind) + ")"
		case p.ForceWindow:
			result += " (--force-window)"
		}
		service := p.Service
		if service == "" {
			service = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Start.Local().Format(time.DateTime), p.ID, p.Trigger,
			short12(p.Commit), result, service, p.Duration.Round(time.Millisecond), plan, errText)
	}
	tw.Flush()
	for i := len(passes) - 1; i >= 0; i-- {
		p := passes[i]
		if p.Service == "" || len(p.Logs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nlast log lines of %s (pass %s, commit %s):\n", p.Service, p.ID, short12(p.Commit))
		for _, line := range p.Logs {
			fmt.Fprintf(w, "  | %s\n", line)
		}
		break
	}
}

// sync asks the running agent for a pass now (all environments by default).
func (c *cli) sync(ctx context.Context, g *globalFlags, args []string) int {
	fs := c.commandFlags("sync", g)
	var jsonOut bool
	fs.BoolVar(&jsonOut, "json", false, "")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return c.flagError("sync", err)
	}
	if len(rest) > 1 {
		return c.usageError("sync takes at most one environment")
	}
	cl, cfg, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	env := ""
	if len(rest) == 1 {
		env = rest[0]
		if code, unknown := c.unknownEnvironment(cfg, env); unknown {
			return code
		}
	}
	queued, err := cl.Sync(ctx, env)
	if err != nil {
		return c.remoteError(err)
	}
	if jsonOut {
		return c.writeJSON(api.SyncResponse{Queued: queued})
	}
	fmt.Fprintf(c.stdout, "pass queued for %s\n", strings.Join(queued, ", "))
	return exitOK
}

// retry asks the running agent to clear an environment's quarantined
// commits and try the pinned one again. With no agent running, it clears
// the quarantine in the state dir itself (its one owner) and says to run
// `lockstep apply`, so a commit quarantined by `lockstep apply` can be
// retried on a host without the agent too.
func (c *cli) retry(ctx context.Context, g *globalFlags, args []string) int {
	return c.envAction(ctx, g, "retry", args, func(cl *api.Client, env string) error {
		err := cl.Retry(ctx, env)
		var nr *api.NotRunningError
		if !errors.As(err, &nr) {
			return err
		}
		return c.retryOffline(g, env, err)
	}, "retry queued for %s: the quarantine is cleared and the pinned commit is tried again (watch: lockstep history %s)\n")
}

// retryOffline clears env's quarantine on disk when no agent answers.
func (c *cli) retryOffline(g *globalFlags, env string, notRunning error) error {
	cfg, err := config.Load(config.PathFrom(g.config, c.getenv))
	if err != nil {
		return err
	}
	if _, ok := cfg.Environment(env); !ok {
		if _, inSet := setOf(cfg, env); !inSet {
			return fmt.Errorf("unknown environment %q in %s; known: %s", env, cfg.Path, joinNames(cfg.EnvironmentNames()))
		}
	}
	store := state.New(cfg.StateDir, 0, zerolog.Nop())
	released, err := store.ClearQuarantine(env)
	if err != nil {
		return fmt.Errorf("%v; clearing the quarantine in %s instead failed: %w", notRunning, cfg.StateDir, err)
	}
	fmt.Fprintf(c.stderr, "lockstep: no agent is running: cleared %d quarantined commit(s) of %s in %s; run `lockstep apply %s` to try the pinned commit again\n", len(released), env, cfg.StateDir, env)
	return errOffline
}

// errOffline ends a retry that was done on disk, without an agent: the
// message is printed already and nothing was queued.
var errOffline = errors.New("retried without an agent")

// rollback asks the running agent to apply an environment's last healthy
// revision again now, and hold the pinned commit back until the pin
// changes. It works while git is unreachable.
func (c *cli) rollback(ctx context.Context, g *globalFlags, args []string) int {
	return c.envAction(ctx, g, "rollback", args, func(cl *api.Client, env string) error { return cl.Rollback(ctx, env) },
		"rollback queued for %s: the last healthy revision is applied again and the pinned commit held until the pin changes (watch: lockstep history %s)\n")
}

func (c *cli) envAction(ctx context.Context, g *globalFlags, name string, args []string, act func(*api.Client, string) error, done string) int {
	fs := c.commandFlags(name, g)
	var jsonOut bool
	fs.BoolVar(&jsonOut, "json", false, "")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return c.flagError(name, err)
	}
	if len(rest) != 1 {
		return c.usageError("%s takes exactly one environment", name)
	}
	cl, cfg, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	env := rest[0]
	if code, unknown := c.unknownEnvironment(cfg, env); unknown {
		return code
	}
	if err := act(cl, env); errors.Is(err, errOffline) {
		return exitOK
	} else if err != nil {
		return c.remoteError(err)
	}
	if jsonOut {
		return c.writeJSON(api.QueuedResponse{Environment: env, Queued: name})
	}
	fmt.Fprintf(c.stdout, done, env, env)
	return exitOK
}

func (c *cli) writeJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "lockstep: write output: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func short12(sha string) string {
	switch {
	case sha == "":
		return "-"
	case len(sha) > 12:
		return sha[:12]
	}
	return sha
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// ago says how long before now t was, for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return strconv.Itoa(int(d.Seconds())) + "s ago"
}
