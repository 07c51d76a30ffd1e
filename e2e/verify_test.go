package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// TestSignedCommits signs commits with real git, with an SSH key and an
// OpenPGP key made in the test, and gives lockstep [repo.verify] trusting
// those two. Trusted commits deploy. An unsigned branch head, a head signed
// by a key nobody trusts, a trusted head pinning an unsigned commit, a
// signed pin tampered with after signing, and a trusted pin older than the
// environment's min_commit are each refused with an error naming the
// commit and what was found, and every container is left as it was.
func TestSignedCommits(t *testing.T) {
	alice := sshSigner(t, "alice")     // trusted, SSH
	bob := pgpSigner(t, "bob")         // trusted, OpenPGP
	mallory := sshSigner(t, "mallory") // not trusted
	f := newFixture(t)
	cli := harness.RequireDocker(t)

	etc := t.TempDir()
	signers := filepath.Join(etc, "allowed_signers")
	keyring := filepath.Join(etc, "trusted.asc")
	must(t, os.WriteFile(signers, []byte("# who may release\n"+alice.trusted+"\n"), 0o644))
	must(t, os.WriteFile(keyring, []byte(bob.trusted), 0o644))
	f.agentExtra = fmt.Sprintf("\n[repo.verify]\nssh_allowed_signers = %q\nopenpgp_keyring = %q\n", signers, keyring)
	f.writeConfig("")

	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	B := A
	B.WebImage = f.images["web:b"]
	files := func(s stack) map[string]string { return map[string]string{"compose.yaml": s.yaml()} }

	// Signed by alice (SSH), head and pinned commit: deploys.
	f.git.Signing(alice.env, alice.config...)
	shaA := f.release("A, signed by alice", files(A))
	f.apply()
	// validate says who signed what.
	v := f.lockstep("validate", "e2e")
	for _, want := range []string{"signature: branch head ", "signature: pinned commit " + shaA[:12] + " signed by ssh key " + alice.id} {
		if v.code != 0 || !strings.Contains(v.stdout, want) {
			t.Errorf("validate lacks %q: %s", want, v)
		}
	}
	// Signed by bob (OpenPGP): deploys too.
	f.git.Signing(bob.env, bob.config...)
	shaB := f.release("B, signed by bob", files(B))
	f.apply()
	if v := f.lockstep("validate", "e2e"); !strings.Contains(v.stdout, "pinned commit "+shaB[:12]+" signed by OpenPGP key "+bob.id) {
		t.Errorf("validate does not name bob's key %s: %s", bob.id, v)
	}
	before := world(t, cli, f.project)
	if got := before["web"].inspect.Config.Image; got != f.images["web:b"] {
		t.Fatalf("web runs %s after the OpenPGP-signed release, want %s", got, f.images["web:b"])
	}
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after the signed releases is not empty: %+v", p.Actions)
	}

	refused := func(t *testing.T, wants ...string) {
		t.Helper()
		r := f.lockstep("apply", "e2e")
		if r.code != 1 {
			t.Fatalf("apply: want exit 1, got %s", r)
		}
		t.Logf("lockstep said: %s", strings.TrimSpace(r.stderr))
		for _, w := range wants {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("error lacks %q: %s", w, r)
			}
		}
		if v := f.lockstep("validate", "e2e"); v.code != 1 {
			t.Errorf("validate accepts what apply refuses: %s", v)
		}
		sameWorld(t, before, world(t, cli, f.project))
	}

	t.Run("unsigned head", func(t *testing.T) {
		f.t = t
		f.git.Signing(nil)
		f.release("unsigned", files(A))
		head := f.git.Head(t)
		refused(t, "branch head "+head[:12], "not signed")
	})
	t.Run("untrusted key", func(t *testing.T) {
		f.t = t
		f.git.Signing(mallory.env, mallory.config...)
		f.release("signed by mallory", files(A))
		head := f.git.Head(t)
		refused(t, "branch head "+head[:12], mallory.id)
	})
	t.Run("trusted head, unsigned pinned commit", func(t *testing.T) {
		f.t = t
		f.git.Signing(nil)
		sha := f.git.Commit(t, "unsigned content", files(A))
		f.git.Signing(alice.env, alice.config...)
		f.pin(sha)
		refused(t, "pinned commit "+sha[:12], "not signed")
	})
	t.Run("tampered pin", func(t *testing.T) {
		f.t = t
		f.git.Signing(alice.env, alice.config...)
		f.pin(shaB)
		if p := f.plan(); !p.Empty() {
			t.Fatalf("a trusted pin of the running commit plans changes: %+v", p.Actions)
		}
		// Someone who can push but cannot sign rewrites the signed pin to
		// name another commit, keeping alice's signature.
		forged := f.git.Tamper(t, "environments/e2e.toml", fmt.Sprintf("commit = %q\n", shaA))
		refused(t, "branch head "+forged[:12], alice.id)
	})
	t.Run("below the floor", func(t *testing.T) {
		f.t = t
		f.writeConfig(fmt.Sprintf("min_commit = %q\n", shaB))
		// A validly signed pin of an older release: a replay.
		f.git.Signing(alice.env, alice.config...)
		f.pin(shaA)
		refused(t, shaA[:12], shaB[:12], "min_commit")
		// At the floor itself it is fine again.
		f.pin(shaB)
		if p := f.plan(); !p.Empty() {
			t.Fatalf("a pin at the floor plans changes: %+v", p.Actions)
		}
	})
	t.Run("pinned only: the pin's vars are refused", func(t *testing.T) {
		f.t = t
		extra := f.agentExtra
		defer func() { f.agentExtra = extra; f.writeConfig("") }()
		f.agentExtra = extra + "commits = \"pinned\"\n"
		f.writeConfig("")
		f.git.Signing(nil) // the head is not verified in this mode
		f.git.Commit(t, "pin with vars", map[string]string{
			"environments/e2e.toml": fmt.Sprintf("commit = %q\n[vars]\nTAG = \"evil\"\n", shaB),
		})
		refused(t, "environments/e2e.toml: [vars]", `commits = "pinned"`)
		// Without vars, a trusted pinned commit deploys (here: no change).
		f.pin(shaB)
		if p := f.plan(); !p.Empty() {
			t.Fatalf("an unsigned head pinning the signed running commit plans changes: %+v", p.Actions)
		}
	})
	t.Run("head only: a branch name is refused", func(t *testing.T) {
		f.t = t
		extra := f.agentExtra
		defer func() { f.agentExtra = extra; f.writeConfig("") }()
		f.agentExtra = extra + "commits = \"head\"\n"
		f.writeConfig("")
		f.git.Signing(alice.env, alice.config...)
		f.git.Commit(t, "pin a branch", map[string]string{"environments/e2e.toml": "commit = \"main\"\n"})
		refused(t, "environments/e2e.toml: commit", `"main" refused`, "full 40-hex")
		f.pin(shaB)
		if p := f.plan(); !p.Empty() {
			t.Fatalf("a signed head pinning the running commit by SHA plans changes: %+v", p.Actions)
		}
	})
	f.t = t

	// The agent: an unsigned push is refused once and waited on (not
	// retried while the branch stays), with the reason in status; the
	// next trusted push deploys.
	t.Run("agent", func(t *testing.T) {
		f.t = t
		f.writeConfig("")
		f.git.Signing(alice.env, alice.config...)
		f.pin(shaB)
		a := f.startAgent()
		defer func() {
			a.signal(syscall.SIGTERM)
			a.wait(time.Minute)
			if t.Failed() {
				t.Logf("agent log:\n%s", a.log())
			}
		}()
		// Its own first pass (the status counters are the agent's), so
		// the push below is the one it reacts to.
		eventually(t, time.Minute, "the agent's first pass", func() bool {
			r := f.lockstep("status", "--json")
			var out struct {
				Environments []reconcile.EnvStatus `json:"environments"`
			}
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Environments) != 1 {
				return false // not listening yet
			}
			p := out.Environments[0].Passes
			return p[reconcile.ResultNoop]+p[reconcile.ResultApplied] > 0
		})
		// Trusted content, pinned by an unsigned commit.
		shaC := f.git.Commit(t, "C, signed by alice", files(A))
		f.git.Signing(nil)
		f.pin(shaC)
		head := f.git.Head(t)
		var st reconcile.EnvStatus
		eventually(t, time.Minute, "the agent refusing the unsigned head", func() bool {
			st = f.status()
			return strings.Contains(st.LastError, "branch head "+head[:12]) && st.Waiting != ""
		})
		if !strings.Contains(st.LastError, "not signed") {
			t.Errorf("status does not say why: %+v", st)
		}
		failed := st.Passes[reconcile.ResultFailed]
		time.Sleep(3 * time.Second) // three polls of an unchanged branch
		if st2 := f.status(); st2.Passes[reconcile.ResultFailed] != failed {
			t.Errorf("the refused head was retried: %d failed passes, then %d", failed, st2.Passes[reconcile.ResultFailed])
		}
		sameWorld(t, before, world(t, cli, f.project))
		f.git.Signing(alice.env, alice.config...)
		f.pin(shaC)
		f.converged(shaC, time.Minute)
		if got := world(t, cli, f.project)["web"].inspect.Config.Image; got != f.images["web:a"] {
			t.Errorf("web runs %s after the signed release of A", got)
		}
	})
	f.t = t
}
