package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// envResult is one environment's entry in --json output. The keys are
// always present except error (only on failure) and applied (apply only),
// so scripts can index them without checking.
type envResult struct {
	Environment string                 `json:"environment"`
	Project     string                 `json:"project"`
	Head        string                 `json:"head,omitempty"`
	Commit      string                 `json:"commit"`
	Paused      bool                   `json:"paused,omitempty"`
	Plan        *reconcile.Plan        `json:"plan"`
	Applied     *reconcile.ApplyResult `json:"applied,omitempty"`
	// Policy holds the deploy policy violations of the release (warnings
	// in warn mode, why it was refused in enforce mode); absent when none.
	Policy []string `json:"policy,omitempty"`
	// Signatures says who signed the commits [repo.verify] checked.
	Signatures []string `json:"signatures,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// pass runs plan, apply or validate for the selected environments, one
// after the other: environments share the engine, and one pass at a time
// keeps the output and the logs readable.
func (c *cli) pass(ctx context.Context, cmd string, g *globalFlags, args []string) int {
	fs := newFlagSet(cmd)
	// Register the global flags again, defaulting to what was given before
	// the command, so they may also come after it.
	fs.StringVar(&g.config, "config", g.config, "")
	fs.StringVar(&g.logLevel, "log-level", g.logLevel, "")
	fs.StringVar(&g.logFormat, "log-format", g.logFormat, "")
	var jsonOut, exitCode bool
	var commit string
	fs.BoolVar(&jsonOut, "json", false, "")
	if cmd == "plan" {
		fs.BoolVar(&exitCode, "exit-code", false, "")
	}
	if cmd == "validate" {
		fs.StringVar(&commit, "commit", "", "")
	}
	names, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			text, _ := commandHelp(cmd)
			fmt.Fprint(c.stdout, text)
			return exitOK
		}
		return c.usageError("%s: %v", cmd, err)
	}
	if g.logLevel != "" && !config.IsLogLevel(g.logLevel) {
		return c.usageError("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	if g.logFormat != "" && !config.IsLogFormat(g.logFormat) {
		return c.usageError("--log-format %q: use json or console", g.logFormat)
	}
	commitSet := false
	fs.Visit(func(f *flag.Flag) { commitSet = commitSet || f.Name == "commit" })
	if commitSet && strings.TrimSpace(commit) == "" {
		return c.usageError("validate: --commit needs a commit SHA")
	}

	path := config.PathFrom(g.config, c.getenv)
	cfg, err := config.Load(path)
	if err != nil {
		c.configError(err)
		return exitConfig
	}
	log := newLogger(c.stderr, cfg.Log, g.logLevel, g.logFormat)

	envs, err := selectEnvironments(cfg, names)
	if err != nil {
		return c.usageError("%v", err)
	}

	r, closer, err := c.newRunner(cfg, log)
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
		return exitFailure
	}
	if closer != nil {
		defer func() {
			if err := closer.Close(); err != nil {
				log.Warn().Err(err).Msg("release runner")
			}
		}()
	}

	results := make([]envResult, 0, len(envs))
	failed, pending := false, false
	for _, env := range envs {
		res := envResult{Environment: env.Name, Project: env.Project}
		var pr *reconcile.PassResult
		if err = ctx.Err(); err != nil {
			// Interrupted: do not start another pass; say which ones did
			// not run.
			err = fmt.Errorf("not run: %w", err)
		} else {
			start := time.Now()
			pr, err = c.runOne(ctx, r, cmd, env, commit)
			log.Debug().Str("env", env.Name).Str("command", cmd).Dur("took", time.Since(start)).Err(err).Msg("pass finished")
		}
		if pr != nil {
			res.Head, res.Commit, res.Paused = pr.Head, pr.Commit, pr.Paused
			res.Plan, res.Applied, res.Policy, res.Signatures = pr.Plan, pr.Applied, pr.Policy, pr.Signatures
			if pr.Project != "" {
				res.Project = pr.Project
			}
		}
		if err != nil {
			failed = true
			res.Error = err.Error()
		}
		if res.Plan != nil && !res.Plan.Empty() && cmd == "plan" {
			pending = true
		}
		if !jsonOut {
			c.writeText(cmd, res, commit, cfg.Policy.Mode, policyChecked(err))
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "lockstep: %s: %v\n", env.Name, err)
		}
		results = append(results, res)
	}

	if jsonOut {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // reasons hold "->"; keep them readable
		if err := enc.Encode(results); err != nil {
			fmt.Fprintf(c.stderr, "lockstep: write output: %v\n", err)
			return exitFailure
		}
	}
	switch {
	case failed:
		return exitFailure
	case exitCode && pending:
		return exitChanges
	}
	return exitOK
}

func (c *cli) runOne(ctx context.Context, r runner, cmd string, env config.Environment, commit string) (*reconcile.PassResult, error) {
	re := environment(env)
	switch cmd {
	case "plan":
		return r.Plan(ctx, re)
	case "apply":
		return r.Apply(ctx, re)
	case "validate":
		return r.Validate(ctx, re, commit)
	}
	return nil, fmt.Errorf("internal error: no pass named %q", cmd)
}

// policyChecked reports whether a pass that ended with err got as far as
// the policy step: it succeeded, or failed at or after it.
func policyChecked(err error) bool {
	var se *reconcile.StepError
	if err == nil || !errors.As(err, &se) {
		return err == nil
	}
	return se.Step != reconcile.StepSource && se.Step != reconcile.StepLoad
}

// writeText prints one environment's outcome for people. Errors are not
// printed here: they go to stderr. checked says whether the release got
// as far as the policy check; validate reports its outcome either way.
func (c *cli) writeText(cmd string, res envResult, commit, policyMode string, checked bool) {
	w := c.stdout
	switch cmd {
	case "plan":
		if res.Plan != nil {
			c.writePlan(res.Plan)
		} else if checked && len(res.Policy) > 0 {
			fmt.Fprintf(w, "%s: refused by the deploy policy at %s\n", res.Environment, short(res.Commit))
		}
		c.writePolicy(res, policyMode, false)
		if res.Paused {
			fmt.Fprintf(w, "  paused: the pin file says paused = true; apply changes nothing\n")
		}
	case "apply":
		if res.Plan != nil {
			c.writePlan(res.Plan)
		} else if checked && len(res.Policy) > 0 {
			fmt.Fprintf(w, "%s: refused by the deploy policy at %s, nothing touched\n", res.Environment, short(res.Commit))
		}
		c.writePolicy(res, policyMode, false)
		switch {
		case res.Paused:
			fmt.Fprintf(w, "%s: paused, nothing applied\n", res.Environment)
		case res.Applied != nil:
			fmt.Fprintf(w, "%s: %s\n", res.Environment, appliedLine(res.Plan, res.Applied, res.Error != ""))
		case res.Error == "" && res.Plan != nil && res.Plan.Empty():
			fmt.Fprintf(w, "%s: up to date at %s\n", res.Environment, short(res.Commit))
		}
	case "validate":
		at := short(res.Commit)
		if at == "" {
			at = commit
		}
		switch {
		case res.Error == "":
			fmt.Fprintf(w, "%s: valid at %s", res.Environment, at)
		case checked && len(res.Policy) > 0:
			fmt.Fprintf(w, "%s: refused by the deploy policy at %s", res.Environment, at)
		default:
			return
		}
		if res.Head != "" && res.Head != res.Commit && commit == "" {
			fmt.Fprintf(w, " (pin read at %s)", short(res.Head))
		}
		fmt.Fprintln(w)
		for _, sig := range res.Signatures {
			fmt.Fprintf(w, "  signature: %s\n", sig)
		}
		c.writePolicy(res, policyMode, true)
	}
}

// writePolicy prints the policy section: each violation, and what the mode
// makes of them. Without violations it prints only when always is set
// (validate reports the policy in every case).
//
//	policy: 1 violation (mode warn: the release deploys anyway)
//	  service "web": privileged: true is not allowed ([policy].allow_privileged = false)
func (c *cli) writePolicy(res envResult, mode string, always bool) {
	w := c.stdout
	if len(res.Policy) == 0 {
		if always {
			fmt.Fprintf(w, "  policy: no violations (mode %s)\n", mode)
		}
		return
	}
	outcome := "the release deploys anyway"
	if mode == config.PolicyEnforce {
		outcome = "the release is refused"
	}
	fmt.Fprintf(w, "  policy: %d %s (mode %s: %s)\n", len(res.Policy), plural(len(res.Policy), "violation", "violations"), mode, outcome)
	for _, v := range res.Policy {
		fmt.Fprintf(w, "    %s\n", v)
	}
}

func (c *cli) writePlan(p *reconcile.Plan) {
	if err := p.WriteText(c.stdout); err != nil {
		fmt.Fprintf(c.stderr, "lockstep: write plan: %v\n", err)
	}
}

// appliedLine sums up an apply: "applied 3 changes at 9fceb02d0ae5: 1
// pulled, 2 recreated", or, when it stopped, how far it got.
func appliedLine(p *reconcile.Plan, a *reconcile.ApplyResult, failed bool) string {
	var parts []string
	for _, n := range []struct {
		count int
		verb  string
	}{
		{a.Pulled, "pulled"}, {a.Created, "created"}, {a.Recreated, "recreated"},
		{a.Started, "started"}, {a.Restarted, "restarted"}, {a.Removed, "removed"},
	} {
		if n.count > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n.count, n.verb))
		}
	}
	counts := strings.Join(parts, ", ")
	total := len(a.Done)
	if p != nil {
		total = len(p.Actions)
	}
	commit := ""
	if p != nil && p.Commit != "" {
		commit = " at " + short(p.Commit)
	}
	if failed {
		line := fmt.Sprintf("failed after %d of %d changes%s", len(a.Done), total, commit)
		if counts != "" {
			line += " (" + counts + ")"
		}
		return line
	}
	if len(a.Done) == 0 {
		return "nothing to apply" + commit
	}
	line := fmt.Sprintf("applied %d %s%s", len(a.Done), plural(len(a.Done), "change", "changes"), commit)
	if counts != "" {
		line += ": " + counts
	}
	return line
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// selectEnvironments returns the environments named, in the order given
// (each once), or all of them when none is named.
func selectEnvironments(cfg *config.Config, names []string) ([]config.Environment, error) {
	if len(names) == 0 {
		return cfg.Environments, nil
	}
	var envs []config.Environment
	var unknown []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		e, ok := cfg.Environment(n)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", n))
			continue
		}
		envs = append(envs, e)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown environment %s in %s; known: %s",
			strings.Join(unknown, ", "), cfg.Path, joinNames(cfg.EnvironmentNames()))
	}
	return envs, nil
}

// configError prints why the config cannot be used, one problem per line,
// and what to do when there is no file at all.
func (c *cli) configError(err error) {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(c.stderr, "lockstep: %s\n", line)
	}
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stderr, "lockstep: create it from config.example.toml, or name another file with --config FILE or $%s\n", config.PathEnv)
	}
}

// newLogger builds the logger passes log through: flags override the
// config's [log] table. Logs go to stderr so stdout stays parseable.
func newLogger(w io.Writer, l config.Log, levelFlag, formatFlag string) zerolog.Logger {
	level, format := l.Level, l.Format
	if levelFlag != "" {
		level = levelFlag
	}
	if formatFlag != "" {
		format = formatFlag
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		// Both sources are validated before this point.
		lvl = zerolog.InfoLevel
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
