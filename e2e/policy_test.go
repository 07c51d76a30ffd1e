package e2e

import (
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestPolicyEnforceRefuses deploys a good stack, then, with [policy] mode
// = "enforce", pins commits that make web privileged, mount the Docker
// socket, or bind /etc. Each is refused with an error naming the service,
// the setting and the rule, and every container is left exactly as it was.
func TestPolicyEnforceRefuses(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.agentExtra = "\n[policy]\nmode = \"enforce\"\nallowed_bind_roots = [\"/srv/data\"]\n"
	f.writeConfig("")
	good := stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
	shaGood := f.release("good", map[string]string{
		"compose.yaml":      good.yaml(),
		"worker/config.txt": "threads = 1\n",
	})
	// The release's own files (worker binds ./worker/config.txt) are
	// always allowed, so the good stack deploys under enforce.
	f.apply()
	before := world(t, cli, f.project)

	withWeb := func(extra string) string {
		s := good
		s.Extra = extra
		return s.yaml()
	}
	cases := []struct {
		name, extra, want string
	}{
		{"privileged", "    privileged: true\n",
			`service "web": privileged: true is not allowed ([policy].allow_privileged = false)`},
		{"docker socket", "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
			`service "web": volumes: bind of the Docker socket /var/run/docker.sock`},
		{"bind of /etc", "    volumes: [\"/etc:/host-etc:ro\"]\n",
			`service "web": volumes: bind of /etc at /host-etc is outside the release and every allowed root ([policy].allowed_bind_roots = ["/srv/data"])`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			f.release(tc.name, map[string]string{"compose.yaml": withWeb(tc.extra), "worker/config.txt": "threads = 1\n"})
			r := f.lockstep("apply", "e2e")
			if r.code != 1 {
				t.Fatalf("apply of a release the policy refuses: want exit 1, got %s", r)
			}
			t.Logf("lockstep said: %s", strings.TrimSpace(r.stderr))
			for _, w := range []string{"refused by the deploy policy", tc.want} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error lacks %q: %s", w, r)
				}
			}
			if !strings.Contains(r.stdout, "e2e: refused by the deploy policy at ") || !strings.Contains(r.stdout, "    "+tc.want) {
				t.Errorf("apply output lacks the policy section: %s", r)
			}
			// validate refuses it too, with the same report.
			if v := f.lockstep("validate", "e2e"); v.code != 1 || !strings.Contains(v.stdout, "(mode enforce: the release is refused)") || !strings.Contains(v.stdout, tc.want) {
				t.Errorf("validate: %s", v)
			}
			sameWorld(t, before, world(t, cli, f.project))
		})
	}
	f.t = t
	f.pin(shaGood)
	if p := f.plan(); !p.Empty() {
		t.Errorf("back on the good revision the plan is not empty: %+v", p.Actions)
	}
}

// TestPolicyWarnDeploys: in warn mode (the default) the same kind of
// release deploys; the violation is a warning in the apply log and in the
// validate and plan output.
func TestPolicyWarnDeploys(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.agentExtra = "\n[policy]\nmode = \"warn\"\n"
	f.writeConfig("")
	s := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"],
		Extra: "    volumes: [\"/etc:/host-etc:ro\"]\n"}
	f.release("bind /etc", map[string]string{"compose.yaml": s.yaml()})
	const want = `service "web": volumes: bind of /etc at /host-etc is outside the release and every allowed root ([policy].allowed_bind_roots = [])`

	v := f.lockstep("validate", "e2e")
	if v.code != 0 || !strings.Contains(v.stdout, "e2e: valid at ") ||
		!strings.Contains(v.stdout, "  policy: 1 violation (mode warn: the release deploys anyway)\n    "+want+"\n") {
		t.Fatalf("validate in warn mode: %s", v)
	}

	r := f.apply()
	if !strings.Contains(r.stderr, `"level":"warn"`) || !strings.Contains(r.stderr, `"rule":"allowed_bind_roots"`) ||
		!strings.Contains(r.stderr, "deploy policy violation") {
		t.Errorf("apply log lacks the policy warning: %s", r)
	}
	if !strings.Contains(r.stdout, "    "+want) {
		t.Errorf("apply output lacks the policy section: %s", r)
	}
	w := world(t, cli, f.project)
	web, ok := w["web"]
	if !ok || web.State != "running" {
		t.Fatalf("web not deployed: %v", ids(w))
	}
	if src := mountSource(t, web, "/host-etc"); src != "/etc" {
		t.Errorf("web mounts %s at /host-etc, want /etc", src)
	}
}
