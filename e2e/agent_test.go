package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func stackA(f *fixture) stack {
	return stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
}

// TestAgentFollowsTheBranch: the agent daemon deploys the pin, follows a
// release within a poll interval, and rolls back when the release is
// reverted; /healthz and status say so.
func TestAgentFollowsTheBranch(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	A := stackA(f)
	shaA := f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})

	a := f.startAgent()
	eventually(t, 90*time.Second, "/healthz 200", func() bool { return a.healthz() == http.StatusOK })
	st := f.status()
	if st.Pinned != shaA || st.Running != shaA || st.LastPass == nil || st.LastPass.Result != "applied" {
		t.Fatalf("status after the first pass: %+v", st)
	}
	w1 := world(t, cli, f.project)
	if len(w1) != 3 {
		t.Fatalf("agent deployed %v", ids(w1))
	}

	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("web b", map[string]string{"compose.yaml": B.yaml()})
	f.converged(shaB, 60*time.Second)
	w2 := world(t, cli, f.project)
	if got := recreated(w1, w2); strings.Join(got, ",") != "web" {
		t.Fatalf("release through the agent recreated %v, want web", got)
	}

	f.pin(shaA) // the revert of the release PR
	f.converged(shaA, 60*time.Second)
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, world(t, cli, f.project)["web"], "8080")+"/version"); got != "a" {
		t.Fatalf("after the revert web serves %q", got)
	}
	hist := f.history()
	if len(hist) < 3 {
		t.Fatalf("history has %d passes, want the deploy, the release and the revert", len(hist))
	}

	a.signal(syscall.SIGTERM)
	if code := a.wait(60 * time.Second); code != 0 {
		t.Fatalf("agent exit code on SIGTERM: %d", code)
	}
	if r := f.lockstep("status"); r.code == 0 || !strings.Contains(r.stderr, "no lockstep agent") {
		t.Fatalf("status with no agent running: %s", r)
	}
}

// githubDelivery is a push event for main, signed as GitHub signs it.
func githubDelivery(t *testing.T, url, secret string, forged bool) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if forged {
		sig = "sha256=" + strings.Repeat("0", 64)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook delivery: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAgentWebhook: with polling practically off, a signed push delivery
// deploys a release; forged or unsigned ones get 401 and cause no fetch; a
// burst of 1000 valid deliveries coalesces into a few passes.
func TestAgentWebhook(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	secret := "s3cret-for-the-test"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	must(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	hookAddr := freePort(t)
	f.pollInterval = "1h"
	f.agentExtra = fmt.Sprintf("\n[webhook]\nlisten = %q\nsecret_file = %q\n", hookAddr, secretFile)
	f.writeConfig("")
	hook := "http://" + hookAddr + "/hooks/github"

	A := stackA(f)
	f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	eventually(t, 90*time.Second, "first pass", func() bool { return a.healthz() == http.StatusOK })
	w1 := world(t, cli, f.project)

	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("web b", map[string]string{"compose.yaml": B.yaml()})

	before := f.git.Stats()
	if code := githubDelivery(t, hook, secret, true); code != http.StatusUnauthorized {
		t.Fatalf("forged delivery: status %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodPost, hook, strings.NewReader(`{"ref":"refs/heads/main"}`))
	req.Header.Set("X-GitHub-Event", "push")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned delivery: status %d, want 401", resp.StatusCode)
	}
	time.Sleep(time.Second) // a nudge, had there been one, would have fetched by now
	if after := f.git.Stats(); after.Requests != before.Requests {
		t.Fatalf("forged/unsigned deliveries reached git: %d requests before, %d after", before.Requests, after.Requests)
	}
	sameWorld(t, w1, world(t, cli, f.project))

	start := time.Now()
	if code := githubDelivery(t, hook, secret, false); code != http.StatusAccepted {
		t.Fatalf("signed delivery: status %d, want 202", code)
	}
	f.converged(shaB, 60*time.Second)
	t.Logf("webhook to converged: %s", time.Since(start).Round(time.Millisecond))

	// A release pushed, then a burst of 1000 deliveries for it: one pass
	// deploys it, the rest coalesce or find the branch unchanged.
	C := B
	C.WebImage = f.images["web:a"]
	shaC := f.release("web a again", map[string]string{"compose.yaml": C.yaml()})
	passes := len(f.history())
	gitBefore := f.git.Stats()
	var wg sync.WaitGroup
	codes := make(chan int, 1000)
	burst := time.Now()
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				codes <- githubDelivery(t, hook, secret, false)
			}
		}()
	}
	wg.Wait()
	close(codes)
	t.Logf("1000 deliveries in %s", time.Since(burst).Round(time.Millisecond))
	for c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("a valid delivery got %d", c)
		}
	}
	f.converged(shaC, 60*time.Second)
	time.Sleep(2 * time.Second) // let any coalesced nudge still queued run
	if extra := len(f.history()) - passes; extra < 1 || extra > 5 {
		t.Fatalf("a release plus 1000 deliveries caused %d passes, want a few (1 to 5)", extra)
	}
	if listings := f.git.Stats().RefListings - gitBefore.RefListings; listings > 20 {
		t.Fatalf("1000 deliveries caused %d ref listings on the git host: nudges are not coalesced", listings)
	}
}

// TestAgentGitServerAway: with the git host unreachable nothing running is
// touched, status shows the error and polls back off; when the host returns
// the next poll converges.
func TestAgentGitServerAway(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.proxy = newSwitchProxy(t, f.git.URL)
	f.writeConfig("")
	A := stackA(f)
	f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	eventually(t, 90*time.Second, "first pass", func() bool { return a.healthz() == http.StatusOK })
	w1 := world(t, cli, f.project)

	f.proxy.setDown(true)
	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("web b", map[string]string{"compose.yaml": B.yaml()})
	eventually(t, 30*time.Second, "the git error in status", func() bool {
		st := f.status()
		return st.LastError != "" && st.GitErrors > 0
	})
	// Polls back off: over 8 s of 1 s polls, far fewer than 8 attempts.
	n0 := f.status().GitErrors
	time.Sleep(8 * time.Second)
	st := f.status()
	if tries := st.GitErrors - n0; tries >= 7 {
		t.Errorf("%d git attempts in 8s with a 1s poll: no backoff", tries)
	}
	if st.NextRetry.IsZero() {
		t.Errorf("status shows no next retry while backing off: %+v", st)
	}
	sameWorld(t, w1, world(t, cli, f.project))

	f.proxy.setDown(false)
	f.converged(shaB, 6*time.Minute) // at most one capped backoff away
	if st := f.status(); st.LastError != "" {
		t.Errorf("error still shown after recovery: %q", st.LastError)
	}
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
}

// TestAgentSignals: SIGHUP with a broken config keeps the agent running on
// the old one; SIGTERM during an apply exits cleanly and the next start
// converges.
func TestAgentSignals(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	A := stackA(f)
	f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()
	eventually(t, 90*time.Second, "first pass", func() bool { return a.healthz() == http.StatusOK })

	good, err := os.ReadFile(f.config)
	must(t, err)
	must(t, os.WriteFile(f.config, append(good, []byte("\nbroken_key = true\n")...), 0o644))
	mark := a.lineCount()
	a.signal(syscall.SIGHUP)
	a.waitLine(mark, 30*time.Second, "a log line rejecting the new config", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m), "broken_key")
	})
	if a.healthz() != http.StatusOK {
		t.Fatalf("agent not serving after a rejected reload")
	}
	// A valid config naming a key file that is not there is refused too,
	// before the running generation is stopped.
	missing := filepath.Join(t.TempDir(), "no-such-allowed_signers")
	must(t, os.WriteFile(f.config, append(good, []byte(fmt.Sprintf("\n[repo.verify]\nssh_allowed_signers = %q\n", missing))...), 0o644))
	mark = a.lineCount()
	a.signal(syscall.SIGHUP)
	a.waitLine(mark, 30*time.Second, "a log line rejecting the missing key file", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m), "no-such-allowed_signers") && strings.HasPrefix(fmt.Sprint(m["message"]), "reload refused")
	})
	if a.healthz() != http.StatusOK {
		t.Fatalf("agent not serving after a reload refused for a missing key file")
	}
	// A valid config is taken: the agent says so and keeps serving.
	must(t, os.WriteFile(f.config, good, 0o644))
	mark = a.lineCount()
	a.signal(syscall.SIGHUP)
	a.waitLine(mark, 30*time.Second, "the reload of a valid config", func(m map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(m["message"]), "reloading")
	})
	a.waitLine(mark, 30*time.Second, "the agent to start again on the new config", func(m map[string]any) bool {
		return m["message"] == "agent started"
	})
	eventually(t, 30*time.Second, "/healthz after the reload", func() bool { return a.healthz() == http.StatusOK })

	// SIGTERM in the middle of an apply: the step in flight finishes, exit 0.
	B := A
	B.WebImage = f.images["web:b"]
	shaB := f.release("web b", map[string]string{"compose.yaml": B.yaml(), "worker/config.txt": "threads = 2\n"})
	mark = a.lineCount()
	a.waitLine(mark, 60*time.Second, "the apply of B to start", func(m map[string]any) bool {
		return m["message"] == "apply" && m["action"] == "recreate"
	})
	a.signal(syscall.SIGTERM)
	if code := a.wait(90 * time.Second); code != 0 {
		t.Fatalf("SIGTERM during an apply: exit code %d", code)
	}
	world(t, cli, f.project) // no duplicates

	a = f.startAgent()
	f.converged(shaB, 90*time.Second)
	if w := world(t, cli, f.project); len(w) != 3 {
		t.Fatalf("after restart: %v", ids(w))
	}
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
}

// TestAgentNotifiesSystemd speaks systemd's notify protocol with the real
// agent: READY=1 only once the API answers, STATUS= lines after passes, and
// watchdog pings when the watchdog is on.
func TestAgentNotifiesSystemd(t *testing.T) {
	f := newFixture(t)
	notify := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	must(t, err)
	defer conn.Close()
	f.agentEnv = []string{"NOTIFY_SOCKET=" + notify, "WATCHDOG_USEC=2000000"}
	A := stackA(f)
	f.release("stack A", map[string]string{"compose.yaml": A.yaml(), "worker/config.txt": "threads = 1\n"})
	a := f.startAgent()

	var got []string
	buf := make([]byte, 4096)
	must(t, conn.SetReadDeadline(time.Now().Add(90*time.Second)))
	ready, status, watchdog := false, false, false
	for !(ready && status && watchdog) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("notifications so far %q: %v", got, err)
		}
		msg := string(buf[:n])
		got = append(got, msg)
		for _, line := range strings.Split(msg, "\n") {
			switch {
			case line == "READY=1":
				ready = true
				// Ready means the API answers (possibly 503 before the first pass).
				if code := a.healthz(); code != http.StatusOK && code != http.StatusServiceUnavailable {
					t.Fatalf("READY=1 sent but the API does not answer (healthz %d)", code)
				}
			case strings.HasPrefix(line, "STATUS=e2e@"):
				status = true
			case line == "WATCHDOG=1":
				watchdog = true
			}
		}
	}
	a.signal(syscall.SIGTERM)
	must(t, conn.SetReadDeadline(time.Now().Add(60*time.Second)))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no STOPPING=1 after SIGTERM; got %q: %v", got, err)
		}
		if strings.Contains(string(buf[:n]), "STOPPING=1") {
			break
		}
	}
	if code := a.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
