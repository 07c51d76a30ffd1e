package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

const (
	shaProd    = "9fceb02d0ae598e95dc970b74767f19372d61af8"
	shaStaging = "4d2e1aa0c3b2f1e0d9c8b7a6f5e4d3c2b1a09f8e"
)

const testConfig = `[repo]
url = "https://git.example.com/acme/infra.git"

[[environment]]
name = "production"
project = "prod"
env_files = ["/etc/lockstep/production.env"]

[[environment]]
name = "staging"
compose_files = ["compose.yaml", "compose.staging.yaml"]
`

// fakeRunner answers passes from canned results and records what it was
// asked, standing in for the git + engine runner behind the runner
// interface.
type fakeRunner struct {
	results map[string]*pass.Result // by environment
	errs    map[string]error        // by environment

	mu      sync.Mutex
	calls   []string // "plan production"
	envs    []pass.Environment
	opts    []pass.Options
	commits []string
	closed  bool
}

func (f *fakeRunner) pass(cmd string, env pass.Environment) (*pass.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, cmd+" "+env.Name)
	f.envs = append(f.envs, env)
	return f.results[env.Name], f.errs[env.Name]
}

// Run answers as the pipeline would for the pass's mode.
func (f *fakeRunner) Run(_ context.Context, env pass.Environment, opts pass.Options) (*pass.Result, error) {
	f.mu.Lock()
	f.opts = append(f.opts, opts)
	f.mu.Unlock()
	switch opts.Mode {
	case pass.ModePlan:
		return f.pass("plan", env)
	case pass.ModeApply:
		return f.pass("apply", env)
	}
	f.mu.Lock()
	f.commits = append(f.commits, opts.Commit)
	f.mu.Unlock()
	return f.pass("validate", env)
}

func (f *fakeRunner) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// changes is a plan with one recreate.
func changes(env, project, sha string) *reconcile.Plan {
	return &reconcile.Plan{
		Environment: env, Project: project, Commit: sha,
		Actions: []reconcile.Action{{
			Kind: reconcile.ActRecreate, Service: "web", Number: 1, Container: project + "-web-1",
			Image: "127.0.0.1:5000/web:" + sha[:7], Order: "stop-first",
			Reasons: []string{"image 127.0.0.1:5000/web:aaaaaaa -> :" + sha[:7]},
		}},
	}
}

func noChanges(env, project, sha string) *reconcile.Plan {
	return &reconcile.Plan{Environment: env, Project: project, Commit: sha, Actions: []reconcile.Action{}}
}

// upToDate answers every environment of testConfig with an empty plan.
func upToDate() *fakeRunner {
	return &fakeRunner{results: map[string]*pass.Result{
		"production": {Environment: "production", Project: "prod", Head: shaStaging, Commit: shaProd, Plan: noChanges("production", "prod", shaProd)},
		"staging":    {Environment: "staging", Project: "staging", Head: shaStaging, Commit: shaStaging, Plan: noChanges("staging", "staging", shaStaging)},
	}}
}

type invocation struct {
	code           int
	stdout, stderr string
}

// run runs the CLI in-process with fake as its runner. env is the whole
// process environment the CLI sees.
func run(t *testing.T, fake *fakeRunner, env map[string]string, args ...string) invocation {
	t.Helper()
	return runCtx(t, context.Background(), fake, env, args...)
}

func runCtx(t *testing.T, ctx context.Context, fake *fakeRunner, env map[string]string, args ...string) invocation {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		newRunner: func(*config.Config, zerolog.Logger) (runner, io.Closer, error) {
			if fake == nil {
				t.Error("runner built when none was expected")
				return nil, nil, errors.New("no runner in this test")
			}
			return fake, fake, nil
		},
	}
	code := c.run(ctx, args)
	return invocation{code, stdout.String(), stderr.String()}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lockstep.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func planText(t *testing.T, p *reconcile.Plan) string {
	t.Helper()
	var b bytes.Buffer
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPlanExitCodes(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	pending := func() *fakeRunner {
		f := upToDate()
		f.results["staging"].Plan = changes("staging", "staging", shaStaging)
		return f
	}
	failing := func() *fakeRunner {
		f := pending()
		f.errs = map[string]error{"production": errors.New("fetch https://git.example.com/acme/infra.git: timeout")}
		f.results["production"] = nil
		return f
	}
	tests := []struct {
		name   string
		fake   *fakeRunner
		args   []string
		want   int
		stderr string // substring; "" means stderr must be empty
	}{
		{"no changes", upToDate(), []string{"plan"}, exitOK, ""},
		{"no changes with --exit-code", upToDate(), []string{"plan", "--exit-code"}, exitOK, ""},
		{"changes without --exit-code", pending(), []string{"plan"}, exitOK, ""},
		{"changes with --exit-code", pending(), []string{"plan", "--exit-code"}, exitChanges, ""},
		{"changes in another env than the one asked", pending(), []string{"plan", "--exit-code", "production"}, exitOK, ""},
		{"failure beats pending changes", failing(), []string{"plan", "--exit-code"}, exitFailure, "lockstep: production: fetch https://git.example.com/acme/infra.git: timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, tt.fake, nil, append([]string{"--config", cfg}, tt.args...)...)
			if got.code != tt.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.want, got.stdout, got.stderr)
			}
			if tt.stderr == "" && got.stderr != "" {
				t.Errorf("unexpected stderr:\n%s", got.stderr)
			}
			if !strings.Contains(got.stderr, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", got.stderr, tt.stderr)
			}
			// Every environment that produced a plan is printed with the
			// plan's own text form.
			for _, name := range []string{"production", "staging"} {
				if r := tt.fake.results[name]; r != nil && slicesContain(tt.fake.calls, "plan "+name) {
					if want := planText(t, r.Plan); !strings.Contains(got.stdout, want) {
						t.Errorf("stdout lacks the plan of %s:\n%s\nwant it to contain:\n%s", name, got.stdout, want)
					}
				}
			}
		})
	}
}

func slicesContain(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

func TestPassesAllEnvironmentsInConfigOrder(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	got := run(t, fake, nil, "--config", cfg, "plan")
	if got.code != exitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	want := []pass.Environment{
		{Name: "production", Project: "prod", PinFile: "environments/production.toml", EnvFiles: []string{"/etc/lockstep/production.env"},
			HealthTimeout: config.DefaultHealthTimeout, Bake: config.DefaultBake, Backend: pass.BackendCompose},
		{Name: "staging", Project: "staging", PinFile: "environments/staging.toml", ComposeFiles: []string{"compose.yaml", "compose.staging.yaml"},
			HealthTimeout: config.DefaultHealthTimeout, Bake: config.DefaultBake, Backend: pass.BackendCompose},
	}
	if !reflect.DeepEqual(fake.envs, want) {
		t.Errorf("runner got\n%+v\nwant\n%+v", fake.envs, want)
	}
	if !fake.closed {
		t.Error("runner not closed")
	}
}

func TestSelectedEnvironments(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	// Flags may follow the environment names; a name given twice runs once.
	got := run(t, fake, nil, "plan", "staging", "--config", cfg, "production", "staging")
	if got.code != exitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	if want := []string{"plan staging", "plan production"}; !reflect.DeepEqual(fake.calls, want) {
		t.Errorf("calls %q, want %q", fake.calls, want)
	}
}

func TestUnknownEnvironment(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	got := run(t, fake, nil, "--config", cfg, "apply", "production", "prodution")
	if got.code != exitUsage {
		t.Fatalf("exit %d, want %d", got.code, exitUsage)
	}
	want := `lockstep: unknown environment "prodution" in ` + cfg + `; known: production, staging`
	if !strings.Contains(got.stderr, want) {
		t.Errorf("stderr %q lacks %q", got.stderr, want)
	}
	if len(fake.calls) != 0 {
		t.Errorf("runner called for a bad command line: %q", fake.calls)
	}
}

func TestApply(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	plan := changes("production", "prod", shaProd)
	fake.results["production"].Plan = plan
	fake.results["production"].Applied = &reconcile.ApplyResult{Done: plan.Actions, Recreated: 1, Restarted: 2}
	fake.results["staging"].Plan = changes("staging", "staging", shaStaging)
	fake.results["staging"].Applied = &reconcile.ApplyResult{Done: []reconcile.Action{}}
	fake.errs = map[string]error{"staging": errors.New("recreate web: container exited with code 3")}

	got := run(t, fake, nil, "--config", cfg, "apply")
	if got.code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s", got.code, exitFailure, got.stderr)
	}
	for _, want := range []string{
		planText(t, plan),
		"production: applied 1 change at 9fceb02d0ae5: 1 recreated, 2 restarted\n",
		"staging: failed after 0 of 1 changes at 4d2e1aa0c3b2\n",
	} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, got.stdout)
		}
	}
	if want := "lockstep: staging: recreate web: container exited with code 3\n"; got.stderr != want {
		t.Errorf("stderr %q, want %q", got.stderr, want)
	}
	if want := []string{"apply production", "apply staging"}; !reflect.DeepEqual(fake.calls, want) {
		t.Errorf("calls %q, want %q", fake.calls, want)
	}
}

func TestApplyUpToDate(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	got := run(t, upToDate(), nil, "--config", cfg, "apply", "production")
	if got.code != exitOK || !strings.Contains(got.stdout, "production: up to date at 9fceb02d0ae5\n") {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
}

func TestJSONOutput(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	fake.results["production"].Plan = changes("production", "prod", shaProd)
	fake.results["staging"] = nil
	fake.errs = map[string]error{"staging": errors.New("pin file environments/staging.toml: not found at " + shaStaging[:12])}

	got := run(t, fake, nil, "plan", "--json", "--config", cfg)
	if got.code != exitFailure {
		t.Fatalf("exit %d, want %d", got.code, exitFailure)
	}
	var doc []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(got.stdout), &doc); err != nil {
		t.Fatalf("stdout is not one JSON array: %v\n%s", err, got.stdout)
	}
	if len(doc) != 2 {
		t.Fatalf("want 2 entries, got %d", len(doc))
	}
	str := func(m map[string]json.RawMessage, k string) string {
		var s string
		if err := json.Unmarshal(m[k], &s); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		return s
	}
	prod, staging := doc[0], doc[1]
	if str(prod, "environment") != "production" || str(prod, "commit") != shaProd || str(prod, "project") != "prod" {
		t.Errorf("production entry: %s", got.stdout)
	}
	if _, ok := prod["error"]; ok {
		t.Errorf("production has an error key: %s", prod["error"])
	}
	var plan reconcile.Plan
	if err := json.Unmarshal(prod["plan"], &plan); err != nil || !reflect.DeepEqual(&plan, fake.results["production"].Plan) {
		t.Errorf("production plan does not round-trip: %v\n%s", err, prod["plan"])
	}
	if str(staging, "environment") != "staging" || !strings.Contains(str(staging, "error"), "pin file environments/staging.toml") {
		t.Errorf("staging entry: %s", got.stdout)
	}
	// Keys scripts rely on are there even when the pass failed.
	for _, k := range []string{"environment", "project", "commit", "plan"} {
		if _, ok := staging[k]; !ok {
			t.Errorf("staging entry lacks %q", k)
		}
	}
	if string(staging["plan"]) != "null" {
		t.Errorf("failed pass plan = %s, want null", staging["plan"])
	}
	// Errors still go to stderr for people; stdout stays pure JSON.
	if !strings.Contains(got.stderr, "lockstep: staging: pin file") {
		t.Errorf("stderr: %q", got.stderr)
	}
}

func TestValidate(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	fake := upToDate()
	got := run(t, fake, nil, "validate", "--config", cfg, "--commit", shaStaging, "staging")
	if got.code != exitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	if !reflect.DeepEqual(fake.commits, []string{shaStaging}) || !reflect.DeepEqual(fake.calls, []string{"validate staging"}) {
		t.Errorf("calls %q commits %q", fake.calls, fake.commits)
	}
	if !strings.Contains(got.stdout, "staging: valid at 4d2e1aa0c3b2\n") {
		t.Errorf("stdout: %q", got.stdout)
	}

	got = run(t, nil, nil, "validate", "--config", cfg, "--commit", "")
	if got.code != exitUsage {
		t.Errorf("empty --commit: exit %d, want %d", got.code, exitUsage)
	}
}

func TestUsageErrors(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"deploy"}, `unknown command "deploy"`},
		{"unknown global flag", []string{"--verbose", "plan"}, "flag provided but not defined: -verbose"},
		{"unknown command flag", []string{"--config", cfg, "apply", "--exit-code"}, "apply: flag provided but not defined: -exit-code"},
		{"bad log level", []string{"--config", cfg, "--log-level", "loud", "plan"}, `--log-level "loud"`},
		{"bad log format", []string{"--config", cfg, "plan", "--log-format", "xml"}, `--log-format "xml"`},
		{"version with args", []string{"version", "x"}, "version takes no arguments"},
		{"help for unknown command", []string{"help", "deploy"}, `unknown command "deploy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, nil, nil, tt.args...)
			if got.code != exitUsage {
				t.Errorf("exit %d, want %d", got.code, exitUsage)
			}
			if !strings.Contains(got.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", got.stderr, tt.stderr)
			}
			if got.stdout != "" {
				t.Errorf("stdout not empty: %q", got.stdout)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	bad := writeConfig(t, `[repo]
url = "https://git.example.com/x.git"
poll_interval = "500ms"
brnach = "dev"
`)
	got := run(t, nil, nil, "--config", bad, "plan")
	if got.code != exitConfig {
		t.Fatalf("exit %d, want %d", got.code, exitConfig)
	}
	for _, want := range []string{
		"lockstep: " + bad + `:3: [repo].poll_interval: must be at least 1s, got "500ms"` + "\n",
		"lockstep: " + bad + ":4: [repo].brnach: unknown key `brnach`; did you mean `branch`?\n",
		"lockstep: " + bad + ": [[environment]]: at least one environment is required",
	} {
		if !strings.Contains(got.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, got.stderr)
		}
	}

	missing := filepath.Join(t.TempDir(), "nope.toml")
	got = run(t, nil, nil, "validate", "--config", missing)
	if got.code != exitConfig || !strings.Contains(got.stderr, missing) || !strings.Contains(got.stderr, "config.example.toml") {
		t.Errorf("missing config: exit %d, stderr %q", got.code, got.stderr)
	}
}

func TestConfigPathPrecedence(t *testing.T) {
	good := writeConfig(t, testConfig)
	missing := filepath.Join(t.TempDir(), "missing.toml")
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantPath string // path the error names, when the code is exitConfig
	}{
		{"flag beats env", map[string]string{"LOCKSTEP_CONFIG": missing}, []string{"--config", good, "plan"}, exitOK, ""},
		{"flag after the command beats env", map[string]string{"LOCKSTEP_CONFIG": missing}, []string{"plan", "--config", good}, exitOK, ""},
		{"env used without flag", map[string]string{"LOCKSTEP_CONFIG": good}, []string{"plan"}, exitOK, ""},
		{"env that is missing is reported", map[string]string{"LOCKSTEP_CONFIG": missing}, []string{"plan"}, exitConfig, missing},
		{"default without flag or env", nil, []string{"plan"}, exitConfig, "/etc/lockstep/lockstep.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantPath == config.DefaultPath {
				if _, err := os.Stat(config.DefaultPath); err == nil {
					t.Skipf("%s exists on this machine; the default-path case needs it absent", config.DefaultPath)
				}
			}
			fake := upToDate()
			if tt.wantCode != exitOK {
				fake = nil
			}
			got := run(t, fake, tt.env, tt.args...)
			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got.code, tt.wantCode, got.stderr)
			}
			if tt.wantPath != "" && !strings.Contains(got.stderr, tt.wantPath) {
				t.Errorf("stderr does not name %s:\n%s", tt.wantPath, got.stderr)
			}
		})
	}
}

func TestRunnerCannotStart(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" },
		newRunner: func(*config.Config, zerolog.Logger) (runner, io.Closer, error) {
			return nil, nil, errors.New("connect to docker engine at unix:///run/docker.sock: permission denied")
		}}
	if code := c.run(context.Background(), []string{"--config", cfg, "apply"}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := "lockstep: connect to docker engine at unix:///run/docker.sock: permission denied\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func TestInterruptedRunsNoPass(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fake := upToDate()
	got := runCtx(t, ctx, fake, nil, "--config", cfg, "apply", "--json")
	if got.code != exitFailure {
		t.Errorf("exit %d, want %d", got.code, exitFailure)
	}
	if len(fake.calls) != 0 {
		t.Errorf("passes started after cancel: %q", fake.calls)
	}
	if !strings.Contains(got.stdout, `"error": "not run: context canceled"`) {
		t.Errorf("stdout: %s", got.stdout)
	}
}

func TestLogging(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	// At the default level (info) a quiet plan logs nothing.
	if got := run(t, upToDate(), nil, "--config", cfg, "plan"); got.stderr != "" {
		t.Errorf("info level logged: %q", got.stderr)
	}
	// --log-level debug overrides [log].level; JSON by default.
	got := run(t, upToDate(), nil, "--config", cfg, "--log-level", "debug", "plan", "staging")
	var line struct {
		Level, Env, Command, Message string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(got.stderr)), &line); err != nil {
		t.Fatalf("debug log is not one JSON line: %v\n%s", err, got.stderr)
	}
	if line.Level != "debug" || line.Env != "staging" || line.Command != "plan" || line.Message != "pass finished" {
		t.Errorf("log line: %+v", line)
	}
	// --log-format console overrides [log].format.
	got = run(t, upToDate(), nil, "--config", cfg, "plan", "--log-level=debug", "--log-format=console", "staging")
	if !strings.Contains(got.stderr, "DBG pass finished") || strings.HasPrefix(got.stderr, "{") {
		t.Errorf("console log: %q", got.stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		got := run(t, nil, nil, args...)
		if got.code != exitOK {
			t.Errorf("%q: exit %d", args, got.code)
		}
		for _, want := range []string{"plan [ENV...]", "apply [ENV...]", "validate [ENV...]", "--config FILE", "$LOCKSTEP_CONFIG",
			"0   success", "1   failure", "2   plan --exit-code", "64  usage error", "78  config error"} {
			if !strings.Contains(got.stdout, want) {
				t.Errorf("%q: help lacks %q", args, want)
			}
		}
	}
	for _, args := range [][]string{{"help", "plan"}, {"plan", "-h"}, {"plan", "--help"}} {
		got := run(t, nil, nil, args...)
		if got.code != exitOK || !strings.Contains(got.stdout, "--exit-code   exit 2 when") {
			t.Errorf("%q: exit %d, stdout:\n%s", args, got.code, got.stdout)
		}
	}
	got := run(t, nil, nil, "help", "validate")
	if !strings.Contains(got.stdout, "--commit SHA") {
		t.Errorf("validate help:\n%s", got.stdout)
	}
}

func TestVersion(t *testing.T) {
	got := run(t, nil, nil, "version")
	if got.code != exitOK || !strings.HasPrefix(got.stdout, "lockstep ") || !strings.Contains(got.stdout, "go1.") {
		t.Errorf("exit %d, stdout %q", got.code, got.stdout)
	}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		json bool
	}{
		{[]string{"a", "--json", "b"}, []string{"a", "b"}, true},
		{[]string{"--json", "a"}, []string{"a"}, true},
		{[]string{"a", "--", "--json"}, []string{"a", "--json"}, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		fs := newFlagSet("t")
		j := fs.Bool("json", false, "")
		pos, err := parseInterleaved(fs, tt.args)
		if err != nil || !reflect.DeepEqual(pos, tt.pos) || *j != tt.json {
			t.Errorf("%q: pos %q json %v err %v; want %q %v", tt.args, pos, *j, err, tt.pos, tt.json)
		}
	}
}

// TestRunEntryPoint runs the exported entry point main uses, with the
// production runner seam, on commands that need no runner.
func TestRunEntryPoint(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cfg := writeConfig(t, "[repo]\nurl = \"/srv/git/infra.git\"\n")
	code := Run(context.Background(), []string{"validate", "--config", cfg}, &stdout, &stderr, func(string) string { return "" })
	if code != exitConfig || !strings.Contains(stderr.String(), "at least one environment is required") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := Run(context.Background(), []string{"help"}, &stdout, &stderr, nil); code != exitOK || !strings.Contains(stdout.String(), "Exit codes:") {
		t.Errorf("help: exit %d", code)
	}
}
