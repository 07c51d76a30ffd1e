package gitsource_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

const pinPath = "environments/prod.toml"

func pinText(commit string, extra ...string) string {
	return `commit = "` + commit + "\"\n" + strings.Join(extra, "\n")
}

// TestReleasesResolveWritesNothingMaterializeDoes: every check of a pass
// comes before its release directory is written.
func TestReleasesResolveWritesNothingMaterializeDoes(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	app := srv.Commit(t, "app v1", map[string]string{"compose.yaml": "services: {}\n"})
	head := srv.Commit(t, "pin v1", map[string]string{
		pinPath: pinText(app, `compose_files = ["compose.yaml"]`, `env_files = ["app.env"]`, "[vars]", `TAG = "1"`),
	})
	src, state := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{Kept: 3})

	rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath, MinCommit: app})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if rel.Head != head || rel.Commit != app || rel.PinFile != pinPath || rel.Dir != "" || rel.Paused {
		t.Errorf("Resolve = %+v, want head %s, commit %s, pin %s and no dir", rel, head, app, pinPath)
	}
	if rel.Vars["TAG"] != "1" || len(rel.ComposeFiles) != 1 || len(rel.EnvFiles) != 1 || len(rel.Signatures) != 0 {
		t.Errorf("Resolve lost what the pin says: %+v", rel)
	}
	if got := releaseEntries(t, state); len(got) != 0 {
		t.Fatalf("Resolve wrote release entries %v", got)
	}

	rel, err = rs.Materialize(ctx(t), rel)
	if err != nil {
		t.Fatalf("Materialize: %v", err)
	}
	if rel.Dir != filepath.Join(state, "releases", app) {
		t.Errorf("Dir = %q, want the release of %s", rel.Dir, app)
	}
	// A release holds what the loader asks for, nothing before.
	if _, err := os.Stat(filepath.Join(rel.Dir, "compose.yaml")); !os.IsNotExist(err) {
		t.Errorf("a new release holds compose.yaml before the loader asked for it (%v)", err)
	}
	if err := rs.AddPaths(ctx(t), rel, []string{"compose.yaml"}); err != nil {
		t.Fatalf("AddPaths: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rel.Dir, "compose.yaml")); err != nil {
		t.Errorf("release lacks compose.yaml after AddPaths: %v", err)
	}
	if err := rs.Prune(map[string]bool{rel.Dir: true}); err != nil {
		t.Errorf("Prune: %v", err)
	}
	if h, err := rs.Head(ctx(t)); err != nil || h != head {
		t.Errorf("Head = %q, %v; want %s", h, err, head)
	}
}

// TestReleasesWantCommitOverridesPin: a rollback names the commit; the pin
// is still read (for its other settings), its commit is not used.
func TestReleasesWantCommitOverridesPin(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{AllowSHA1InWant: true})
	v1 := srv.Commit(t, "app v1", map[string]string{"app.txt": "1"})
	v2 := srv.Commit(t, "app v2", map[string]string{"app.txt": "2"})
	srv.Commit(t, "pin v2", map[string]string{pinPath: pinText(v2, "paused = true")})
	src, _ := newSource(t, srv.URL)
	rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{})

	rel, err := rs.Resolve(ctx(t), gitsource.Want{PinFile: pinPath, Commit: v1})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if rel.Commit != v1 || !rel.Paused {
		t.Errorf("Resolve with Want.Commit = %+v, want commit %s and the pin's paused", rel, v1)
	}
	// A floor above the wanted commit refuses it, with the commit known.
	rel, err = rs.Resolve(ctx(t), gitsource.Want{PinFile: pinPath, Commit: v1, MinCommit: v2})
	if err == nil || rel.Commit != v1 {
		t.Errorf("Resolve below the floor = %+v, %v; want an error naming commit %s", rel, err, v1)
	}
	if err := rs.CheckFloor(ctx(t), v1, v2); err != nil {
		t.Errorf("CheckFloor(%s above floor %s): %v", v2, v1, err)
	}
}

// TestReleasesPartialVerifyTrustRules: what a partial [repo.verify] does
// not cover is refused, with the messages operators have been reading.
func TestReleasesPartialVerifyTrustRules(t *testing.T) {
	r := newSignedRepo(t)
	alice := newSSHKey(t, r.dir, "alice", "-t", "ed25519")
	signers := r.write(t, "allowed_signers", "alice@example.com "+alice.public+"\n")
	r.srv.Signing(nil, "gpg.format=ssh", "user.signingKey="+alice.private)
	app := r.srv.Commit(t, "app", map[string]string{"app.txt": "1"})
	verify := gitsource.VerifyOptions{SSHAllowedSigners: signers}

	tests := []struct {
		name         string
		head, pinned bool
		pin          string
		commit       string // Want.Commit
		want         string // error text; "" = accepted
		wantKey      string
	}{
		{"pinned only refuses [vars]", false, true, pinText(app, "[vars]", `TAG = "1"`), "",
			`refused: [repo.verify].commits = "pinned" verifies the pinned commit but not the branch head, so these settings of the pin file could come from anyone who can push; move them into the signed tree (.env, the compose files) or set commits = "both"`,
			"[vars]"},
		{"pinned only refuses compose_files and env_files", false, true, pinText(app, `compose_files = ["a.yaml"]`, `env_files = ["a.env"]`), "",
			`commits = "pinned"`, "compose_files, env_files"},
		{"pinned only accepts paused", false, true, pinText(app, "paused = true"), "", "", ""},
		{"head only refuses a branch name", true, false, pinText("main"), "",
			`"main" refused: [repo.verify].commits = "head" verifies who wrote the pin, not what a branch or tag points to later; pin a full 40-hex commit SHA, or set commits = "both" to verify the pinned commit too`,
			"commit"},
		{"head only accepts a branch name replaced by Want.Commit", true, false, pinText("main"), app, "", ""},
		{"head only accepts a full SHA", true, false, pinText(app), "", "", ""},
		{"both accept a branch name and [vars]", true, true, pinText("main", "[vars]", `TAG = "1"`), "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := r.srv.Commit(t, tt.name, map[string]string{pinPath: tt.pin})
			src := r.verifySource(t, verify)
			rs := gitsource.NewReleases(src, gitsource.ReleasesOptions{VerifyHead: tt.head, VerifyPinned: tt.pinned})
			rel, err := rs.Resolve(ctx(t), gitsource.Want{Environment: "prod", PinFile: pinPath, Commit: tt.commit})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if n := btoi(tt.head) + btoi(tt.pinned); len(rel.Signatures) != n {
					t.Errorf("Signatures = %q, want %d", rel.Signatures, n)
				}
				return
			}
			var pe *gitsource.PinError
			if !errors.As(err, &pe) || !strings.Contains(pe.Message, tt.want) || pe.Key != tt.wantKey || pe.File != pinPath {
				t.Fatalf("Resolve error = %v, want a *PinError at %s key %q containing %q", err, pinPath, tt.wantKey, tt.want)
			}
			if rel.Head != head || rel.Commit != "" {
				t.Errorf("refused Release = %+v, want only the head %s", rel, head)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
