package main

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

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
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
// how to start one.
func (c *cli) remoteError(err error) int {
	fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
	return exitFailure
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
	envs, err := cl.Status(ctx)
	if err != nil {
		return c.remoteError(err)
	}
	if jsonOut {
		return c.writeJSON(api.StatusResponse{Environments: envs})
	}
	writeStatus(c.stdout, envs, time.Now())
	return exitOK
}

func writeStatus(w io.Writer, envs []reconcile.EnvStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tPINNED\tRUNNING\tLAST HEALTHY\tLAST PASS\tRESULT\tERROR")
	for _, e := range envs {
		last, result := "-", "-"
		if p := e.LastPass; p != nil {
			last = ago(now, p.Start) + " (" + p.Trigger + ")"
			result = p.Result
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, short12(e.Pinned), short12(e.Running), short12(e.LastHealthy), last, result, errText)
	}
	tw.Flush()
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
	cl, _, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	passes, err := cl.History(ctx, rest[0], limit)
	if err != nil {
		return c.remoteError(err)
	}
	if jsonOut {
		return c.writeJSON(passes)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tPASS\tTRIGGER\tCOMMIT\tRESULT\tTOOK\tPLAN\tERROR")
	for _, p := range passes {
		errText := "-"
		if p.Error != "" {
			errText = oneLine(p.Error)
		}
		plan := p.Plan
		if plan == "" {
			plan = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Start.Local().Format(time.DateTime), p.ID, p.Trigger,
			short12(p.Commit), p.Result, p.Duration.Round(time.Millisecond), plan, errText)
	}
	tw.Flush()
	return exitOK
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
	cl, _, code := c.apiClient(g)
	if cl == nil {
		return code
	}
	env := ""
	if len(rest) == 1 {
		env = rest[0]
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
