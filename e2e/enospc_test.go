package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// lockstepWithin runs the real binary and fails the test if it has not
// exited within bound: the point is that it never hangs.
func (f *fixture) lockstepWithin(bound time.Duration, args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, lockstepBin, append([]string{"--config", f.config}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		f.t.Fatalf("lockstep %v did not exit within %s (killed)\n--- stderr\n%s", args, bound, errb.String())
	}
	res := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("running lockstep %v: %v", args, err)
	}
	return res
}

// TestFullStateDirNeverHangs: with state_dir on a full file system, a
// release fetched over file:// (go-git runs git-upload-pack as a child,
// the case that hung forever) fails with "no space left on device" and
// the path: `lockstep apply` exits 1 within its bound, the agent keeps
// answering, says why in its status and schedules a retry, and nothing
// running is touched. Once the file system grows, the agent's next retry
// converges.
func TestFullStateDirNeverHangs(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.stateDir = harness.MountTmpfs(t, "256m")
	f.writeConfig("")
	// The case that hung is go-git's file transport; point the config at
	// the bare repository directly.
	cfg, err := os.ReadFile(f.config)
	must(t, err)
	fileURL := "file://" + f.git.BareDir
	cfg = bytes.Replace(cfg, []byte(fmt.Sprintf("url = %q", f.git.URL)), []byte(fmt.Sprintf("url = %q", fileURL)), 1)
	must(t, os.WriteFile(f.config, cfg, 0o644))

	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	f.release("stack A", map[string]string{"compose.yaml": A.yaml()})
	f.apply()
	before := world(t, cli, f.project)
	bootLog := volumeFile(t, cli, f.project+"_dbdata", "boot.log")

	// Release B carries 4 MB that does not compress; the state dir has
	// 256 KiB left: enough for lockstep's records, not for the pack.
	raw := make([]byte, 3<<20)
	_, err = rand.Read(raw)
	must(t, err)
	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("stack B, with a big file", map[string]string{"compose.yaml": B.yaml(), "big.txt": base64.StdEncoding.EncodeToString(raw)})
	harness.ResizeTmpfs(t, f.stateDir, 256<<10)

	// The config's git timeout is 10s; a pass makes a few git calls.
	const cliBound = 60 * time.Second
	start := time.Now()
	r := f.lockstepWithin(cliBound, "apply", "e2e")
	t.Logf("apply on a full state dir exited %d after %s", r.code, time.Since(start))
	if r.code != 1 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, f.stateDir) {
		t.Fatalf("apply on a full state dir: want exit 1 saying \"no space left on device\" and naming %s, got %s", f.stateDir, r)
	}
	sameWorld(t, before, world(t, cli, f.project))

	a := f.startAgent()
	var st reconcile.EnvStatus
	eventually(t, 2*time.Minute, "a failed pass saying the disk is full, with a retry scheduled", func() bool {
		if f.lockstepWithin(cliBound, "status").code != 0 {
			return false // not listening yet
		}
		st = f.status()
		return st.LastPass != nil && st.LastPass.Result == reconcile.ResultFailed &&
			strings.Contains(st.LastError, "no space left on device") && !st.NextRetry.IsZero()
	})
	t.Logf("status on a full state dir: %q, next retry %s", st.LastError, st.NextRetry)
	if !strings.Contains(st.LastError, f.stateDir) || st.Waiting != "" || !st.NextRetry.After(st.LastPass.Start.Add(st.LastPass.Duration)) {
		t.Fatalf("status on a full state dir: error %q (want the path under %s), waiting %q (want a retry, not a permanent wait), next retry %s",
			st.LastError, f.stateDir, st.Waiting, st.NextRetry)
	}
	if code := a.healthz(); code == 0 {
		t.Fatalf("agent's /healthz does not answer on a full state dir")
	}
	// A second failed pass: the agent retried and is still not stuck.
	failed := st.Passes[reconcile.ResultFailed]
	eventually(t, 2*time.Minute, "a retried pass", func() bool {
		return f.status().Passes[reconcile.ResultFailed] > failed
	})
	sameWorld(t, before, world(t, cli, f.project))

	harness.ResizeTmpfs(t, f.stateDir, 256<<20)
	f.waitPass(shaB, reconcile.ResultApplied, 3*time.Minute)
	after := world(t, cli, f.project)
	if got := recreated(before, after); strings.Join(got, ",") != "web" {
		t.Fatalf("converging on B recreated %v, want only web", got)
	}
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, after["web"], "8080")+"/version"); got != "b" {
		t.Errorf("web serves %q after B, want b", got)
	}
	if got := volumeFile(t, cli, f.project+"_dbdata", "boot.log"); got != bootLog {
		t.Errorf("db volume changed: %q, was %q", got, bootLog)
	}
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after converging is not empty: %+v", p.Actions)
	}
	// Nothing the failed passes half-wrote is left to fill the disk again.
	for _, dir := range []string{filepath.Join(f.stateDir, "releases"), filepath.Join(f.stateDir, "git", "objects", "pack")} {
		entries, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), "tmp_") {
				t.Errorf("leftover of a failed pass: %s", filepath.Join(dir, e.Name()))
			}
		}
	}
}
