package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// webConfig makes web serve (GET /config) a file it bind-mounts from the
// release: what the container sees of the release, asked of the container.
const webConfig = `    environment:
      CONFIG_FILE: /etc/web/site.conf
    volumes:
      - ./web/site.conf:/etc/web/site.conf:ro
`

// verifyFixture deploys stack A with web serving web/site.conf and returns
// the release dir, the world and the URL of web's /config.
func verifyFixture(t *testing.T) (f *fixture, sha, release string, files map[string]string) {
	f = newFixture(t)
	A := stackA(f)
	A.Extra = webConfig
	files = map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n", "web/site.conf": "greeting=from-git\n"}
	sha = f.release("stack A", files)
	f.apply()
	return f, sha, filepath.Join(f.stateDir, "releases", sha), files
}

func configURL(t *testing.T, w map[string]box) string {
	return "http://127.0.0.1:" + hostPort(t, w["web"], "8080") + "/config"
}

// editByHand does what an operator with root does to a release file: make
// it writable and write into it.
func editByHand(t *testing.T, p, content string) {
	t.Helper()
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, []byte(content), 0o644)) // O_TRUNC: the same inode
}

// TestReleaseVerifyRestoresAHandEdit: a file of the running release edited
// by hand (web sees the edit at once through its bind mount) is found by
// the next apply, logged with the file, restored from git, and web serves
// git's content again; nothing is recreated, and the next plan is empty.
func TestReleaseVerifyRestoresAHandEdit(t *testing.T) {
	f, _, release, files := verifyFixture(t)
	cli := harness.RequireDocker(t)
	w1 := world(t, cli, f.project)
	url := configURL(t, w1)
	if got := httpGet(t, url); got != "greeting=from-git" {
		t.Fatalf("web serves %q before the edit", got)
	}
	conf := filepath.Join(release, "web", "site.conf")
	editByHand(t, conf, "greeting=edited-by-hand\n")
	if got := httpGet(t, url); got != "greeting=edited-by-hand" {
		t.Fatalf("precondition: web should see the edit through its bind mount, serves %q", got)
	}

	r := f.apply()
	if !strings.Contains(r.stderr, "release directory modified by hand") || !strings.Contains(r.stderr, "web/site.conf") ||
		!strings.Contains(r.stderr, "content differs from git") {
		t.Errorf("apply did not log the modified file:\n%s", r.stderr)
	}
	if got := httpGet(t, url); got != "greeting=from-git" {
		t.Errorf("web serves %q after the apply, want git's content", got)
	}
	if got := readFile(t, conf); got != files["web/site.conf"] {
		t.Errorf("release file %q after the apply, want git's", got)
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("release file mode after the apply: %v %v, want 0444", fi.Mode(), err)
	}
	sameWorld(t, w1, world(t, cli, f.project))
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after the repair is not empty: %+v", p.Actions)
	}
}

// TestReleaseVerifyDeletedComposeFile: the compose file deleted from the
// running release made every pass fail with "no compose file"; the next
// apply restores it and converges without touching anything.
func TestReleaseVerifyDeletedComposeFile(t *testing.T) {
	f, _, release, files := verifyFixture(t)
	cli := harness.RequireDocker(t)
	w1 := world(t, cli, f.project)
	must(t, os.Chmod(release, 0o755))
	must(t, os.Remove(filepath.Join(release, "compose.yaml")))
	must(t, os.Chmod(release, 0o555))

	r := f.lockstep("apply", "e2e")
	if r.code != 0 {
		t.Fatalf("apply with the compose file deleted from the release: %s", r)
	}
	if !strings.Contains(r.stderr, "compose.yaml") || !strings.Contains(r.stderr, "missing") {
		t.Errorf("apply did not log the deleted file:\n%s", r.stderr)
	}
	if got := readFile(t, filepath.Join(release, "compose.yaml")); got != files["compose.yaml"] {
		t.Errorf("compose.yaml not restored from git")
	}
	sameWorld(t, w1, world(t, cli, f.project))
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after the repair is not empty: %+v", p.Actions)
	}
}

// TestReleaseVerifyRefusedWithoutGit: a rollback to a release on disk
// needs no git, but one modified by hand whose git objects are gone with
// the cache, while the git host is away, is refused saying which file was
// modified; nothing running is touched and the edit is left for the
// operator to see. With git back, the next rollback converges.
func TestReleaseVerifyRefusedWithoutGit(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.proxy = newSwitchProxy(t, f.git.URL)
	f.writeConfig("")
	A := stackA(f)
	A.Extra = webConfig
	shaA := f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n", "web/site.conf": "greeting=from-git\n"})
	a := f.startAgent()
	f.converged(shaA, 90*time.Second)
	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("web b", map[string]string{"compose.yaml": B.yaml()})
	f.converged(shaB, 90*time.Second)
	eventually(t, 60*time.Second, "B recorded healthy", func() bool { return f.status().LastHealthy == shaB })
	w1 := world(t, cli, f.project)

	f.proxy.setDown(true)
	conf := filepath.Join(f.stateDir, "releases", shaA, "web", "site.conf")
	editByHand(t, conf, "greeting=edited-by-hand\n")
	// The cache is "only a cache": deleted (with the agent stopped, as the
	// README says), its objects are gone until git is back.
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
	must(t, os.RemoveAll(filepath.Join(f.stateDir, "git")))
	a = f.startAgent()
	eventually(t, 60*time.Second, "the agent's API", func() bool { return a.healthz() != 0 })
	last := f.rollback()
	if last.Result != reconcile.ResultFailed || !strings.Contains(last.Error, "modified by hand") ||
		!strings.Contains(last.Error, "web/site.conf: content differs from git") {
		t.Fatalf("rollback of a modified release without git: %s %q, want a refusal naming web/site.conf", last.Result, last.Error)
	}
	sameWorld(t, w1, world(t, cli, f.project))
	if got := readFile(t, conf); got != "greeting=edited-by-hand\n" {
		t.Errorf("the refused release was touched: %q", got)
	}

	f.proxy.setDown(false)
	last = f.rollback()
	if last.Result != reconcile.ResultRolledBack || last.RolledBackTo != shaA {
		t.Fatalf("rollback with git back: %s %q", last.Result, last.Error)
	}
	w2 := world(t, cli, f.project)
	if got := httpGet(t, configURL(t, w2)); got != "greeting=from-git" {
		t.Errorf("web serves %q after the rollback, want git's content", got)
	}
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
}

// rollback asks the agent for `lockstep rollback e2e` and returns the
// record of the rollback pass it runs.
func (f *fixture) rollback() reconcile.PassRecord {
	f.t.Helper()
	before := map[string]bool{}
	for _, rec := range f.history() {
		before[rec.ID] = true
	}
	if r := f.lockstep("rollback", "e2e"); r.code != 0 {
		f.t.Fatalf("rollback: %s", r)
	}
	var last reconcile.PassRecord
	eventually(f.t, 3*time.Minute, "the rollback pass", func() bool {
		for _, rec := range f.history() {
			if rec.Trigger == reconcile.TriggerRollback && !before[rec.ID] {
				last = rec
				return true
			}
		}
		return false
	})
	return last
}

// TestReleaseVerifyComposeFileOverLimit: a compose file over 4 MiB is
// refused naming the file and the limit, before it is written or anything
// touched; the next release converges.
func TestReleaseVerifyComposeFileOverLimit(t *testing.T) {
	f, _, _, _ := verifyFixture(t)
	cli := harness.RequireDocker(t)
	w1 := world(t, cli, f.project)
	A := stackA(f)
	A.Extra = webConfig
	padded := A.yaml() + strings.Repeat("# padding to make the file large\n", 5<<20/33)
	big := f.release("huge compose file", map[string]string{"compose.yaml": padded})

	r := f.lockstep("apply", "e2e")
	if r.code == 0 || !strings.Contains(r.stderr, "compose.yaml: compose file of") ||
		!strings.Contains(r.stderr, "limit of 4194304 bytes (4 MiB)") {
		t.Fatalf("apply of a compose file over the limit: %s", r)
	}
	sameWorld(t, w1, world(t, cli, f.project))
	// A release starts empty and the file was refused before it was
	// written: nothing of the refused commit is on disk.
	if entries, err := os.ReadDir(filepath.Join(f.stateDir, "releases", big)); len(entries) != 0 {
		t.Errorf("the refused release holds %v (%v)", entries, err)
	}

	f.release("back to size", map[string]string{"compose.yaml": A.yaml()})
	f.apply()
	sameWorld(t, w1, world(t, cli, f.project))
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after the fix: %+v", p.Actions)
	}
}
