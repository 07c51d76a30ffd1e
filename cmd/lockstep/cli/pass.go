package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/notify/forge"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// envResult is one environment's entry in --json output. The keys are
// always present except error (only on failure) and applied (apply only),
// so scripts can index them without checking.
type envResult struct {
	Environment string `json:"environment"`
	// RolledBackTo is the healthy commit an apply went back to after the
	// pinned one failed its health gate; Quarantined the pinned commit
	// when it is held back.
	RolledBackTo string `json:"rolled_back_to,omitempty"`
	Quarantined  string `json:"quarantined,omitempty"`
	// Unhealthy says why the release failed its health gate.
	Unhealthy string `json:"unhealthy,omitempty"`
	Project   string `json:"project"`
	Head      string `json:"head,omitempty"`
	Commit    string `json:"commit"`
	Paused    bool   `json:"paused,omitempty"`
	// Held is the release that is pending and not applied, and why
	// (paused in its pin file, or waiting for its deploy window); commit
	// and plan are then what runs.
	Held *pass.Held `json:"held,omitempty"`
	// ForceWindow: apply --force-window applied the release outside its
	// deploy window.
	ForceWindow bool                   `json:"force_window,omitempty"`
	Plan        *reconcile.Plan        `json:"plan"`
	Applied     *reconcile.ApplyResult `json:"applied,omitempty"`
	// Policy holds the deploy policy violations of the release (warnings
	// in warn mode, why it was refused in enforce mode); absent when none.
	Policy []string `json:"policy,omitempty"`
	// ComposeWarnings are the compose keys ignored as Docker Compose
	// ignores them on a single host, each with its file, line, service
	// and key; absent when none (always with [compose].strict, which
	// refuses them).
	ComposeWarnings []string `json:"compose_warnings,omitempty"`
	// Signatures says who signed the commits [repo.verify] checked.
	Signatures []string `json:"signatures,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// passFlags are the flags of plan, apply and validate.
type passFlags struct {
	json, exitCode, noRollback, forceWindow bool
	commit                                  string
}

// parsePassFlags parses cmd's flags; code is set when the command line is
// answered already (help, or a usage error).
func (c *cli) parsePassFlags(cmd string, g *globalFlags, args []string) (f passFlags, names []string, code int, done bool) {
	fs := c.commandFlags(cmd, g)
	fs.BoolVar(&f.json, "json", false, "")
	switch cmd {
	case "plan":
		fs.BoolVar(&f.exitCode, "exit-code", false, "")
	case "apply":
		fs.BoolVar(&f.noRollback, "no-rollback", false, "")
		fs.BoolVar(&f.forceWindow, "force-window", false, "")
	case "validate":
		fs.StringVar(&f.commit, "commit", "", "")
	}
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return f, nil, c.flagError(cmd, err), true
	}
	if code, ok := c.checkLogFlags(g); !ok {
		return f, nil, code, true
	}
	commitSet := false
	fs.Visit(func(fl *flag.Flag) { commitSet = commitSet || fl.Name == "commit" })
	if commitSet && strings.TrimSpace(f.commit) == "" {
		return f, nil, c.usageError("validate: --commit needs a commit SHA"), true
	}
	return f, names, 0, false
}

// pass runs plan, apply or validate for the selected environments, one
// after the other: environments share the engine, and one pass at a time
// keeps the output and the logs readable.
func (c *cli) pass(ctx context.Context, cmd string, g *globalFlags, args []string) int {
	f, names, code, done := c.parsePassFlags(cmd, g, args)
	if done {
		return code
	}
	cfg, err := config.Load(config.PathFrom(g.config, c.getenv))
	if err != nil {
		c.configError(err)
		return exitConfig
	}
	log := newLogger(c.stderr, cfg.Log, g.logLevel, g.logFormat)
	sel, err := selectEnvironments(cfg, names)
	if err != nil {
		return c.usageError("%v", err)
	}
	if cmd == "validate" && c.preflight != nil {
		// Every file the config names, as the agent will read them.
		if err := c.preflight(cfg); err != nil {
			c.configError(err)
			return exitConfig
		}
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
	envs, err := resolveEnvironments(ctx, r, cfg, sel)
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
		return exitFailure
	}
	var rep *forge.Reporter
	if cmd == "apply" {
		rep = newCLIForge(cfg, log, envs)
	}
	results, failed, pending := c.runPasses(ctx, r, cmd, f, cfg, envs, log, rep)
	if cmd == "validate" && !f.json {
		c.writeDiskUsage(ctx, cfg.StateDir)
	}
	if f.json && c.writeJSON(results) != exitOK {
		return exitFailure
	}
	switch {
	case failed:
		return exitFailure
	case f.exitCode && pending:
		return exitChanges
	}
	return exitOK
}

// runPasses runs cmd for each environment, printing each outcome as text
// unless f.json, and says whether any failed or (plan) has changes.
func (c *cli) runPasses(ctx context.Context, r runner, cmd string, f passFlags, cfg *config.Config, envs []pass.Environment, log zerolog.Logger, rep *forge.Reporter) (results []envResult, failed, pending bool) {
	results = make([]envResult, 0, len(envs))
	for _, env := range envs {
		res := envResult{Environment: env.Name, Project: env.Project}
		var pr *pass.Result
		err := ctx.Err()
		if err != nil {
			// Interrupted: do not start another pass; say which ones did
			// not run.
			err = fmt.Errorf("not run: %w", err)
		} else {
			start := time.Now()
			pr, err = r.Run(ctx, env, passOptions(cmd, f))
			log.Debug().Str("env", env.Name).Str("command", cmd).Dur("took", time.Since(start)).Err(err).Msg("pass finished")
			reportToForge(ctx, rep, pr, log)
		}
		res.fill(pr)
		if err != nil {
			failed = true
			res.Error = err.Error()
		}
		if res.Plan != nil && !res.Plan.Empty() && cmd == "plan" {
			pending = true
		}
		if !f.json {
			c.writeText(cmd, res, f.commit, cfg.Policy.Mode, policyChecked(err))
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "lockstep: %s: %v\n", env.Name, err)
		}
		results = append(results, res)
	}
	return results, failed, pending
}

// passOptions are the pass options of cmd: how far it goes, and what an
// apply records.
func passOptions(cmd string, f passFlags) pass.Options {
	switch cmd {
	case "plan":
		return pass.Options{Mode: pass.ModePlan}
	case "apply":
		return pass.Options{Mode: pass.ModeApply, Trigger: reconcile.TriggerCLI, NoRollback: f.noRollback, ForceWindow: f.forceWindow}
	}
	return pass.Options{Mode: pass.ModeValidate, Commit: f.commit}
}

// fill copies what a pass found into res.
func (res *envResult) fill(pr *pass.Result) {
	if pr == nil {
		return
	}
	res.Head, res.Commit, res.Paused = pr.Head, pr.Commit, pr.Paused
	res.Held, res.ForceWindow = pr.Held, pr.ForceWindow
	res.Plan, res.Applied, res.Policy, res.Signatures = pr.Plan, pr.Applied, pr.Policy, pr.Signatures
	res.ComposeWarnings = pr.ComposeWarnings
	res.RolledBackTo, res.Unhealthy = pr.RolledBackTo, pr.Unhealthy
	if pr.Quarantined != nil {
		res.Quarantined = pr.Quarantined.Commit
	}
	if pr.Project != "" {
		res.Project = pr.Project
	}
}

// heldOutcome says what a pass does while a release waits for its deploy
// window: it checks what runs, or, with nothing running, applies nothing.
func heldOutcome(res envResult) string {
	if res.Held.Commit == res.Commit {
		return "nothing runs yet, so apply applies nothing (--force-window applies it now)"
	}
	return fmt.Sprintf("the plan is of what runs (%s): apply repairs its drift and applies nothing new (--force-window applies the release now)", short(res.Commit))
}

// policyChecked reports whether a pass that ended with err got as far as
// the policy step: it succeeded, or failed at or after it.
func policyChecked(err error) bool {
	switch reconcile.FailedStep(err) {
	case "":
		return err == nil
	case reconcile.StepSource, reconcile.StepLoad:
		return false
	}
	return true
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
		c.writeComposeWarnings(res)
		c.writePolicy(res, policyMode, false)
		if res.Paused {
			fmt.Fprintf(w, "  paused: the pin file says paused = true; apply changes nothing\n")
		}
		if h := res.Held; h != nil && h.Kind == reconcile.HoldWindow {
			fmt.Fprintf(w, "  pending: release %s %s; %s\n", short(h.Commit), h.Reason, heldOutcome(res))
		}
		if h := res.Held; h != nil && h.Kind == reconcile.HoldFollower {
			fmt.Fprintf(w, "  held: %s; apply on this node changes nothing\n", h.Reason)
		}
		if res.Quarantined != "" {
			fmt.Fprintf(w, "  quarantined: %s failed its health gate; apply will not apply it until the pin names another commit (or `lockstep retry %s`)\n", short(res.Quarantined), res.Environment)
		}
	case "apply":
		c.writeApply(res, policyMode, checked)
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
		c.writeComposeWarnings(res)
		c.writePolicy(res, policyMode, true)
	}
}

// writeApply prints what an apply did: its plan, how far it got, and
// what became of a release that failed its health gate.
func (c *cli) writeApply(res envResult, policyMode string, checked bool) {
	w := c.stdout
	if res.Quarantined != "" && res.Plan == nil {
		fmt.Fprintf(w, "%s: commit %s is quarantined: not applied; pin another commit, or run `lockstep retry %s`\n", res.Environment, short(res.Quarantined), res.Environment)
		return
	}
	if res.Plan != nil {
		c.writePlan(res.Plan)
	} else if checked && len(res.Policy) > 0 {
		fmt.Fprintf(w, "%s: refused by the deploy policy at %s, nothing touched\n", res.Environment, short(res.Commit))
	}
	c.writeComposeWarnings(res)
	c.writePolicy(res, policyMode, false)
	if h := res.Held; h != nil && h.Kind == reconcile.HoldWindow {
		fmt.Fprintf(w, "%s: release %s held, %s; %s\n", res.Environment, short(h.Commit), h.Reason, heldOutcome(res))
	}
	if res.ForceWindow {
		fmt.Fprintf(w, "%s: applied outside its deploy window (--force-window), as recorded in its history\n", res.Environment)
	}
	switch {
	case res.Paused:
		fmt.Fprintf(w, "%s: paused, nothing applied\n", res.Environment)
	case res.Held != nil && res.Held.Kind == reconcile.HoldFollower && res.Applied == nil:
		// Only the JSON log said so: the plan printed above read as done.
		fmt.Fprintf(w, "%s: nothing applied: %s\n", res.Environment, res.Held.Reason)
	case res.Applied != nil:
		fmt.Fprintf(w, "%s: %s\n", res.Environment, appliedLine(res.Plan, res.Applied, res.Error != ""))
	case res.Error == "" && res.Plan != nil && res.Plan.Empty():
		fmt.Fprintf(w, "%s: up to date at %s\n", res.Environment, short(res.Commit))
	}
	switch {
	case res.Unhealthy == "":
	case res.RolledBackTo != "":
		fmt.Fprintf(w, "%s: %s failed its health gate (%s): rolled back to %s, %s quarantined\n", res.Environment, short(res.Commit), res.Unhealthy, short(res.RolledBackTo), short(res.Commit))
	default:
		fmt.Fprintf(w, "%s: %s failed its health gate (%s): left running, quarantined\n", res.Environment, short(res.Commit), res.Unhealthy)
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

// writeComposeWarnings prints the compose keys the release sets that
// lockstep ignored, as Docker Compose does on a single host; nothing when
// there are none.
//
//	compose: 1 key ignored, as Docker Compose ignores it on a single host ([compose].strict = true refuses it)
//	  compose.yaml:9: service "web": deploy.placement: ignored: placement is a Swarm setting ...
func (c *cli) writeComposeWarnings(res envResult) {
	n := len(res.ComposeWarnings)
	if n == 0 {
		return
	}
	w := c.stdout
	fmt.Fprintf(w, "  compose: %d %s ignored, as Docker Compose ignores %s on a single host ([compose].strict = true refuses %s)\n",
		n, plural(n, "key", "keys"), plural(n, "it", "them"), plural(n, "it", "them"))
	for _, warn := range res.ComposeWarnings {
		fmt.Fprintf(w, "    %s\n", warn)
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
		{a.Pulled, "pulled"}, {a.Adopted, "adopted"}, {a.Created, "created"}, {a.Recreated, "recreated"}, {a.Updated, "updated"},
		{a.Started, "started"}, {a.Restarted, "restarted"}, {a.Reconnected, "reconnected"}, {a.Removed, "removed"},
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
		if len(a.Restored) > 0 {
			line += "; put back and running again: " + strings.Join(a.Restored, ", ")
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
// (each once), or all the fixed ones when none is named. A name of a
// set's environment (review-pr-142) is found later, among the set's pin
// files (resolveEnvironments).
func selectEnvironments(cfg *config.Config, names []string) ([]selected, error) {
	if len(names) == 0 {
		out := make([]selected, len(cfg.Environments))
		for i := range cfg.Environments {
			out[i] = selected{name: cfg.Environments[i].Name, fixed: &cfg.Environments[i]}
		}
		return out, nil
	}
	var envs []selected
	var unknown []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		e, ok := cfg.Environment(n)
		if !ok {
			if _, inSet := setOf(cfg, n); inSet {
				envs = append(envs, selected{name: n})
				continue
			}
			unknown = append(unknown, fmt.Sprintf("%q", n))
			continue
		}
		envs = append(envs, selected{name: n, fixed: &e})
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

// forgeBound bounds how long `lockstep apply` spends posting one pass's
// result to the forge: the deploy is done, the status is a courtesy.
const forgeBound = 5 * time.Second

// newCLIForge is the [forge] reporter of `lockstep apply`, nil without
// [forge]. A token file that cannot be read costs a warning: the apply
// still runs.
func newCLIForge(cfg *config.Config, log zerolog.Logger, envs []pass.Environment) *forge.Reporter {
	info := func(name string) forge.EnvInfo {
		for _, e := range envs {
			if e.Name == name {
				return forge.EnvInfo{URL: e.URL, Review: e.Set != ""}
			}
		}
		return forge.EnvInfo{}
	}
	rep, err := wire.NewForge(cfg, log, info, forge.Options{Attempts: 2, Timeout: 3 * time.Second})
	if err != nil {
		log.Warn().Err(err).Msg("deploy statuses will not be posted to the forge")
	}
	return rep
}

// reportToForge posts what an apply did to the forge, synchronously and
// within forgeBound; a forge that is down or refuses is a warning, never a
// failed command.
func reportToForge(ctx context.Context, rep *forge.Reporter, pr *pass.Result, log zerolog.Logger) {
	if rep == nil || pr == nil || pr.Record == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forgeBound)
	defer cancel()
	for _, s := range rep.Statuses(*pr.Record) {
		if err := rep.Send(ctx, s); err != nil {
			log.Warn().Err(err).Str("env", s.Environment).Str("commit", s.Commit).Str("state", string(s.State)).
				Msg("deploy status not posted to the forge (the apply itself is unaffected)")
		}
	}
}
