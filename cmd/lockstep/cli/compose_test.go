package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestComposeWarningsReachTheOperator: a key Docker Compose ignores on a
// single host is ignored by default and named, with its file, line, service
// and key, by validate (text, --json and the log) and by plan, even when
// plan cannot reach the engine; [compose].strict = true refuses the
// release instead.
func TestComposeWarningsReachTheOperator(t *testing.T) {
	repo := policyRepo(t, "    deploy:\n      placement:\n        constraints: [node.role == manager]\n")
	const warning = `compose.yaml:5: service "web": deploy.placement: ignored: placement is a Swarm setting`

	lenient := policyConfig(t, repo, `mode = "warn"`)
	got := runReal(t, "validate", "--config", lenient)
	if got.code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", got.code, got.stdout, got.stderr)
	}
	for _, want := range []string{
		"production: valid at ",
		"\n  compose: 1 key ignored, as Docker Compose ignores it on a single host ([compose].strict = true refuses it)\n",
		"\n    " + warning,
	} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("validate stdout lacks %q:\n%s", want, got.stdout)
		}
	}
	if !strings.Contains(got.stderr, `"level":"warn"`) || !strings.Contains(got.stderr, `"key":"deploy.placement"`) {
		t.Errorf("the log names no ignored key:\n%s", got.stderr)
	}

	got = runReal(t, "validate", "--json", "--config", lenient)
	var out []envResult
	if err := json.Unmarshal([]byte(got.stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("validate --json: %v\n%s", err, got.stdout)
	}
	if w := out[0].ComposeWarnings; len(w) != 1 || !strings.HasPrefix(w[0], warning) {
		t.Errorf("json compose_warnings = %q", w)
	}

	got = runReal(t, "plan", "--config", lenient)
	if !strings.Contains(got.stdout, "\n    "+warning) {
		t.Errorf("plan stdout lacks the warning (exit %d):\n%s\nstderr %s", got.code, got.stdout, got.stderr)
	}

	strict := policyConfig(t, repo, "mode = \"warn\"\n[compose]\nstrict = true")
	got = runReal(t, "validate", "--config", strict)
	if got.code != exitFailure || strings.Contains(got.stdout, "valid at") {
		t.Fatalf("strict: exit %d, want %d\nstdout %s\nstderr %s", got.code, exitFailure, got.stdout, got.stderr)
	}
	for _, want := range []string{`compose.yaml:5: service "web": deploy.placement: placement is a Swarm setting`, "[compose].strict = true refuses it"} {
		if !strings.Contains(got.stderr, want) {
			t.Errorf("strict stderr lacks %q:\n%s", want, got.stderr)
		}
	}
}
