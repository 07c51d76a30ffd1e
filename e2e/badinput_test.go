package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestBadInputTouchesNothing deploys a good stack, then pins a series of
// broken revisions. Each must fail with an error that says what is wrong
// and where, and leave every container exactly as it was (same IDs, same
// state, never restarted): validation and pulls come before any change.
func TestBadInputTouchesNothing(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	good := stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
	shaGood := f.release("good", map[string]string{
		"compose.yaml":      good.yaml(),
		"worker/config.txt": "threads = 1\n",
	})
	f.apply()
	before := world(t, cli, f.project)

	withWeb := func(extra string) string {
		s := good
		s.Extra = extra
		return s.yaml()
	}
	missingTag := good
	missingTag.WebImage = f.registry + "/web:does-not-exist"
	unsetVar := good
	unsetVar.WebImage = f.registry + "/web:${WEB_TAG}"

	cases := []struct {
		name  string
		setup func() // makes the broken revision the pinned one
		want  []string
	}{
		{"invalid yaml", func() {
			f.release("bad yaml", map[string]string{"compose.yaml": "services:\n  web:\n    image: [unclosed\n"})
		}, []string{"compose.yaml", "line"}},
		{"schema error", func() {
			f.release("schema", map[string]string{"compose.yaml": withWeb("    no_such_compose_key: 1\n")})
		}, []string{"compose.yaml", "no_such_compose_key"}},
		// The line of the offending key, for a top-level key too (issue
		// 10: it said "compose.yaml:" with no line).
		{"unknown top-level key", func() {
			f.release("top-level typo", map[string]string{"compose.yaml": good.yaml() + "servicess:\n  extra: {}\n"})
		}, []string{fmt.Sprintf("compose.yaml:%d: servicess: not a compose key", strings.Count(good.yaml(), "\n")+1)}},
		{"ports of the wrong type", func() {
			f.release("ports type", map[string]string{"compose.yaml": strings.Replace(good.yaml(), `ports: ["127.0.0.1::8080"]`, "ports: 8080", 1)})
		}, []string{`compose.yaml:4: service "web": ports: must be a array`}},
		{"unknown pin key", func() {
			f.git.Commit(t, "typo in pin", map[string]string{
				"environments/e2e.toml": "commit = \"" + shaGood + "\"\ncomit_typo = 1\n",
			})
		}, []string{"environments/e2e.toml", "comit_typo"}},
		{"commit that does not exist", func() {
			f.pin("0123456789abcdef0123456789abcdef01234567")
		}, []string{"0123456789abcdef0123456789abcdef01234567"}},
		{"image tag missing from the registry", func() {
			f.release("missing tag", map[string]string{"compose.yaml": missingTag.yaml()})
		}, []string{"web:does-not-exist", "not found"}},
		{"unset variable", func() {
			f.release("unset var", map[string]string{"compose.yaml": unsetVar.yaml()})
		}, []string{"WEB_TAG", "compose.yaml"}},
		{"unsupported compose key", func() {
			f.release("gpus", map[string]string{"compose.yaml": withWeb("    gpus: all\n")})
		}, []string{"web", "gpus"}},
		{"bind mount escaping the release", func() {
			f.release("escape", map[string]string{"compose.yaml": withWeb("    volumes: [\"../../../etc:/host-etc:ro\"]\n")})
		}, []string{"web", "../../../etc", "escapes the release"}},
		{"symlink escaping the release", func() {
			// A release holds only what compose uses, so the link is
			// refused because a service mounts it.
			f.git.Commit(t, "mount the link", map[string]string{"compose.yaml": withWeb("    volumes: [\"./worker/passwd:/etc/app-passwd:ro\"]\n")})
			sha := f.git.Symlink(t, "escaping link", "worker/passwd", "../../../../etc/passwd")
			f.pin(sha)
		}, []string{"worker/passwd", "outside the release"}},
		{"invalid config file", func() {
			f.pin(shaGood)
			f.writeConfig("brnach = \"main\"\n")
		}, []string{"lockstep.toml", "brnach"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			tc.setup()
			r := f.lockstep("apply", "e2e")
			if r.code == 0 {
				t.Fatalf("apply of a broken revision succeeded: %s", r)
			}
			t.Logf("lockstep said: %s", strings.TrimSpace(r.stderr))
			msg := strings.ToLower(r.stderr)
			for _, w := range tc.want {
				if !strings.Contains(msg, strings.ToLower(w)) {
					t.Errorf("error does not mention %q: %s", w, r)
				}
			}
			sameWorld(t, before, world(t, cli, f.project))
		})
	}
	f.t = t
	f.writeConfig("")
	f.pin(shaGood)
	// An environment the config does not name is a usage error in every
	// command, agent or not (issue 10: history ../../etc exited 1).
	for _, cmd := range []string{"history", "sync", "retry", "rollback", "plan", "apply", "validate"} {
		if r := f.lockstep(cmd, "../../etc"); r.code != 64 || !strings.Contains(r.stderr, `unknown environment "../../etc"`) {
			t.Errorf("%s ../../etc: want exit 64 and the unknown environment named: %s", cmd, r)
		}
	}
	sameWorld(t, before, world(t, cli, f.project))
	if p := f.plan(); !p.Empty() {
		t.Errorf("back on the good revision the plan is not empty: %+v", p.Actions)
	}
}
