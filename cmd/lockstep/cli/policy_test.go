package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// policyRepo makes a git repository (real git, in a temp dir) whose head
// pins production to itself and whose compose.yaml runs web with the given
// extra lines, and returns its path.
func policyRepo(t *testing.T, webExtra string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("SKIPPING: git is not installed; this test builds a real repository with it")
	}
	dir := filepath.Join(t.TempDir(), "infra")
	files := map[string]string{
		"compose.yaml":                 "services:\n  web:\n    image: 127.0.0.1:5000/web:1\n" + webExtra,
		"environments/production.toml": "commit = \"main\"\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "stack"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// policyConfig is a config for repo with an unreachable engine (validate
// must not need one) and the given [policy] lines.
func policyConfig(t *testing.T, repo, policy string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`state_dir = %q
[repo]
url = %q
[engine]
host = "unix:///nonexistent/docker.sock"
[policy]
%s
[[environment]]
name = "production"
`, t.TempDir(), repo, policy))
}

// runReal runs the CLI in-process with the production wiring (real git,
// real compose loading, the config's policy).
func runReal(t *testing.T, args ...string) invocation {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := map[string]string{"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
	code := Run(ctx, args, &stdout, &stderr, func(k string) string { return env[k] })
	return invocation{code, stdout.String(), stderr.String()}
}

const (
	violationPrivileged = `service "web": privileged: true is not allowed ([policy].allow_privileged = false)`
	violationEtc        = `service "web": volumes: bind of /etc at /host-etc is outside the release and every allowed root ([policy].allowed_bind_roots = ["/srv/data"])`
)

// TestValidatePolicyReport: lockstep validate prints the policy report in
// both modes, from the config's [policy] through the real runner: warn
// lists the violations and passes, enforce lists them and fails with an
// error naming the service, the setting and the rule.
func TestValidatePolicyReport(t *testing.T) {
	repo := policyRepo(t, "    privileged: true\n    volumes: [\"/etc:/host-etc:ro\", \"/srv/data/web:/data\"]\n")

	warn := policyConfig(t, repo, "mode = \"warn\"\nallowed_bind_roots = [\"/srv/data\"]")
	got := runReal(t, "validate", "--config", warn)
	if got.code != exitOK {
		t.Fatalf("warn mode: exit %d\nstdout %s\nstderr %s", got.code, got.stdout, got.stderr)
	}
	for _, want := range []string{
		"production: valid at ",
		"\n  policy: 2 violations (mode warn: the release deploys anyway)\n",
		"\n    " + violationPrivileged + "\n",
		"\n    " + violationEtc + "\n",
	} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("warn validate stdout lacks %q:\n%s", want, got.stdout)
		}
	}
	if !strings.Contains(got.stderr, `"level":"warn"`) || !strings.Contains(got.stderr, `"rule":"allow_privileged"`) {
		t.Errorf("warn mode logs no warning:\n%s", got.stderr)
	}

	enforce := policyConfig(t, repo, "mode = \"enforce\"\nallowed_bind_roots = [\"/srv/data\"]")
	got = runReal(t, "validate", "--config", enforce)
	if got.code != exitFailure {
		t.Fatalf("enforce mode: exit %d, want %d\nstdout %s\nstderr %s", got.code, exitFailure, got.stdout, got.stderr)
	}
	for _, want := range []string{
		"production: refused by the deploy policy at ",
		"\n  policy: 2 violations (mode enforce: the release is refused)\n",
		"\n    " + violationPrivileged + "\n",
	} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("enforce validate stdout lacks %q:\n%s", want, got.stdout)
		}
	}
	if !strings.Contains(got.stderr, "lockstep: production: policy production at ") || !strings.Contains(got.stderr, violationPrivileged) {
		t.Errorf("enforce stderr does not name the violation:\n%s", got.stderr)
	}

	// --json carries the same report.
	got = runReal(t, "validate", "--json", "--config", enforce)
	var out []envResult
	if err := json.Unmarshal([]byte(got.stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("validate --json: %v\n%s", err, got.stdout)
	}
	if !reflect.DeepEqual(out[0].Policy, []string{violationPrivileged, violationEtc}) || out[0].Error == "" {
		t.Errorf("json entry: %+v", out[0])
	}

	// Allowed by the policy: enforce passes and says so.
	allowed := policyConfig(t, repo, "mode = \"enforce\"\nallow_privileged = true\nallowed_bind_roots = [\"/srv/data\", \"/etc\"]")
	got = runReal(t, "validate", "--config", allowed)
	if got.code != exitOK || !strings.Contains(got.stdout, "\n  policy: no violations (mode enforce)\n") {
		t.Errorf("allowed release: exit %d\nstdout %s\nstderr %s", got.code, got.stdout, got.stderr)
	}
}

// TestPlanPolicyRefused: plan in enforce mode fails before the engine
// (which is unreachable here) and says which rule refused the release.
func TestPlanPolicyRefused(t *testing.T) {
	repo := policyRepo(t, "    network_mode: host\n")
	cfg := policyConfig(t, repo, "mode = \"enforce\"")
	got := runReal(t, "plan", "--config", cfg)
	want := "  policy: 1 violation (mode enforce: the release is refused)\n" +
		`    service "web": network_mode: host is not allowed ([policy].allow_host_network = false)` + "\n"
	if got.code != exitFailure || !strings.HasPrefix(got.stdout, "production: refused by the deploy policy at ") || !strings.HasSuffix(got.stdout, want) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", got.code, got.stdout, got.stderr)
	}
	if strings.Contains(got.stderr, "Docker engine") {
		t.Errorf("plan reached the engine although the policy refused the release:\n%s", got.stderr)
	}
}
