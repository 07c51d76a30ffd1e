package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// agentWorld is the real agent daemon on a one-service project.
type agentWorld struct {
	b       *testing.B
	git     *gitserver.Server
	image   string
	client  *api.Client
	cmd     *exec.Cmd
	hook    string
	secret  string
	version int
}

func newAgentWorld(b *testing.B, poll string) *agentWorld {
	cli := harness.RequireDocker(b)
	reg := harness.StartRegistry(b)
	w := &agentWorld{b: b, secret: "bench-secret"}
	project := harness.UniqueProject(b, "lsagent")
	harness.CleanupProject(b, cli, project, reg)
	w.image = harness.PushTestApp(b, reg, "app", "v1", harness.ImageOptions{})
	w.git = gitserver.Start(b, gitserver.Options{})
	dir := b.TempDir()
	socket := filepath.Join(dir, "api.sock")
	secretFile := filepath.Join(dir, "secret")
	writeFile(b, secretFile, w.secret)
	hookAddr := freeAddr(b)
	w.hook = "http://" + hookAddr + "/hooks/github"
	config := filepath.Join(dir, "lockstep.toml")
	writeFile(b, config, fmt.Sprintf(`state_dir = %q
[repo]
url = %q
poll_interval = %q
[agent]
drift_interval = "1h"
[api]
socket = %q
[webhook]
listen = %q
secret_file = %q
[[environment]]
name = "bench"
project = %q
`, b.TempDir(), w.git.URL, poll, socket, hookAddr, secretFile, project))
	first := w.release()
	w.cmd = exec.Command(buildLockstep(b), "agent", "--config", config, "--log-level", "warn")
	w.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr bytes.Buffer
	w.cmd.Stderr = &stderr
	if err := w.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		w.cmd.Process.Signal(os.Interrupt)
		w.cmd.Wait()
		if b.Failed() {
			b.Logf("agent log:\n%s", stderr.String())
		}
	})
	w.client = api.NewClient(socket, "")
	w.waitRunning(first, 2*time.Minute)
	return w
}

// release commits a new version of the one service and pins it.
func (w *agentWorld) release() string {
	w.version++
	compose := fmt.Sprintf("services:\n  app:\n    image: %s\n    environment:\n      REV: %q\n", w.image, strconv.Itoa(w.version))
	sha := w.git.Commit(w.b, "release", map[string]string{"compose.yaml": compose})
	w.git.Commit(w.b, "pin", map[string]string{"environments/bench.toml": fmt.Sprintf("commit = %q\n", sha)})
	return sha
}

// waitRunning polls the agent's API until commit runs.
func (w *agentWorld) waitRunning(commit string, timeout time.Duration) {
	w.b.Helper()
	waitRunning(w.b, w.client, commit, timeout)
}

// waitRunning polls the agent's API until its one environment runs commit.
func waitRunning(b *testing.B, client *api.Client, commit string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		envs, err := client.Status(ctx)
		cancel()
		if err == nil && len(envs) == 1 && envs[0].Running == commit {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent did not converge on %s within %s (last error %v)", commit, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procStat returns the CPU time (user+system) and resident set size of pid.
func procStat(b *testing.B, pid int) (time.Duration, int64) {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after ")".
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	rssPages, _ := strconv.ParseInt(fields[21], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, rssPages * int64(os.Getpagesize())
}

// BenchmarkAgentIdlePoll runs the agent with a 1s poll on an unchanged
// repository for b.N polls and reports its CPU time per poll, its RSS and
// how much the RSS grew. `-benchtime 1000x` is the figure of the issue
// (about 17 minutes); 120x gives a quick estimate.
func BenchmarkAgentIdlePoll(b *testing.B) {
	w := newAgentWorld(b, "1s")
	time.Sleep(3 * time.Second) // past start-up allocations
	pid := w.cmd.Process.Pid
	cpu0, rss0 := procStat(b, pid)
	listings0 := w.git.Stats().RefListings
	b.ResetTimer()
	time.Sleep(time.Duration(b.N) * time.Second)
	b.StopTimer()
	cpu1, rss1 := procStat(b, pid)
	polls := w.git.Stats().RefListings - listings0
	if polls == 0 {
		b.Fatal("the agent made no poll")
	}
	b.ReportMetric(float64(polls), "polls")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(polls)/1000, "cpu-ms/poll")
	b.ReportMetric(float64(rss1)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(rss1-rss0)/(1<<10), "rss-growth-KiB")
}

// BenchmarkPushToConverged is the time from a release being pushed to the
// agent running it, with a 1s poll.
func BenchmarkPushToConverged(b *testing.B) {
	w := newAgentWorld(b, "1s")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sha := w.release() // the push itself is not part of the figure
		b.StartTimer()
		w.waitRunning(sha, time.Minute)
	}
}

// BenchmarkWebhookToConverged is the time from a release being pushed and
// its signed webhook delivered to the agent running it, with polling off.
func BenchmarkWebhookToConverged(b *testing.B) {
	w := newAgentWorld(b, "1h")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sha := w.release()
		b.StartTimer()
		deliverPush(b, w.hook, w.secret)
		w.waitRunning(sha, time.Minute)
	}
}

// deliverPush delivers a signed GitHub push webhook of the main branch to
// the agent's hook URL.
func deliverPush(b *testing.B, hook, secret string) {
	b.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, hook, bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("delivery: %s", resp.Status)
	}
}

// freeAddr is a 127.0.0.1 address no one listens on, for the agent's
// webhook listener.
func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
