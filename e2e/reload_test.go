package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// webhookTable is a [webhook] table listening on addr with the secret in
// secretFile.
func webhookTable(addr, secretFile string) string {
	return fmt.Sprintf("\n[webhook]\nlisten = %q\nsecret_file = %q\n", addr, secretFile)
}

// notifyTable is a [[notify]] target whose URL is in urlFile.
func notifyTable(urlFile string) string {
	return fmt.Sprintf("\n[[notify]]\nkind = \"webhook\"\nurl_file = %q\n", urlFile)
}

// statusJSON runs `lockstep status --json` and decodes its top level.
func (f *fixture) statusJSON() (map[string]any, result) {
	f.t.Helper()
	r := f.lockstep("status", "--json")
	if r.code != 0 {
		return nil, r
	}
	var top map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &top); err != nil {
		f.t.Fatalf("status --json: cannot read %q: %v", r.stdout, err)
	}
	return top, r
}

// line returns log line i-1 (waitLine returns the index after the match).
func (a *agentProc) line(after int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lines[after-1]
}

func (a *agentProc) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// checkReloadRefused runs the agent on a config with extra tables good,
// then reloads it with bad, whose key file `missing` does not exist: the
// reload is refused, the agent keeps running and serving, the log and
// status name the missing file; reloading good again is taken and clears
// the error.
func checkReloadRefused(t *testing.T, f *fixture, good, bad, missing string) {
	t.Helper()
	f.agentExtra = good
	f.writeConfig("")
	A := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"]}
	f.release("stack A", map[string]string{"compose.yaml": A.yaml()})
	a := f.startAgent()
	eventually(t, 90*time.Second, "the agent's first pass (/healthz 200)", func() bool { return a.healthz() == http.StatusOK })

	f.agentExtra = bad
	f.writeConfig("")
	mark := a.lineCount()
	a.signal(syscall.SIGHUP)
	// Today's agent stops the running generation and then fails to build
	// the new one: it exits within this wait, which waitLine reports.
	at := a.waitLine(mark, 30*time.Second,
		fmt.Sprintf("a log line whose message contains %q after SIGHUP with a config naming %s, which does not exist (the agent must refuse it and keep running on the old config)", "reload refused", missing),
		func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["message"]), "reload refused") })
	if l := a.line(at); !strings.Contains(l, missing) {
		t.Errorf("the reload-refused log line does not name the missing file %s:\n%s", missing, l)
	}
	// The refusal is logged once the reload has been handled: had the old
	// generation been stopped for it, the agent would be gone or silent now.
	if !a.running() {
		t.Fatalf("agent exited (code %d) after refusing the reload; want it running on the old config", a.code)
	}
	if r := f.lockstep("status"); r.code != 0 || !strings.Contains(r.stdout, "reload refused") {
		t.Errorf("plain status after the refused reload: want exit 0 and output containing %q, got %s", "reload refused", r)
	}
	top, r := f.statusJSON()
	if top == nil {
		t.Fatalf("status --json after the refused reload: the API does not answer: %s", r)
	}
	if re, _ := top["reload_error"].(string); !strings.Contains(re, missing) {
		t.Errorf("status --json after the refused reload: want a top-level \"reload_error\" naming %s, got %q in %s", missing, re, r.stdout)
	}

	f.agentExtra = good
	f.writeConfig("")
	mark = a.lineCount()
	a.signal(syscall.SIGHUP)
	a.waitLine(mark, 30*time.Second, fmt.Sprintf("a log line whose message contains %q after SIGHUP with the config fixed", "reloaded"),
		func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["message"]), "reloaded") })
	// The new generation may take a moment to answer on the socket.
	var last result
	eventually(t, 30*time.Second, "status --json to answer after the good reload", func() bool {
		top, last = f.statusJSON()
		return top != nil
	})
	if re, _ := top["reload_error"].(string); re != "" {
		t.Errorf("status --json after a good reload: want no \"reload_error\", got %q in %s", re, last.stdout)
	}
	a.signal(syscall.SIGTERM)
	a.wait(60 * time.Second)
}

// TestReloadRefusesMissingWebhookSecret: SIGHUP with a config whose
// [webhook].secret_file does not exist is refused before the running
// generation is stopped; the agent keeps running and says why.
func TestReloadRefusesMissingWebhookSecret(t *testing.T) {
	f := newFixture(t)
	secret := filepath.Join(t.TempDir(), "webhook-secret")
	must(t, os.WriteFile(secret, []byte("s3cret-for-the-test\n"), 0o600))
	addr := freePort(t)
	missing := filepath.Join(t.TempDir(), "no-such-webhook-secret")
	checkReloadRefused(t, f, webhookTable(addr, secret), webhookTable(addr, missing), missing)
}

// TestReloadRefusesMissingNotifyURLFile: the same for a [[notify]] target
// whose url_file does not exist.
func TestReloadRefusesMissingNotifyURLFile(t *testing.T) {
	f := newFixture(t)
	n := newNotifications(t)
	urlFile := filepath.Join(t.TempDir(), "notify-url")
	must(t, os.WriteFile(urlFile, []byte(n.url+"\n"), 0o600))
	missing := filepath.Join(t.TempDir(), "no-such-notify-url")
	checkReloadRefused(t, f, notifyTable(urlFile), notifyTable(missing), missing)
}

// TestValidateRefusesMissingKeyFiles: `lockstep validate` reports a
// [webhook].secret_file or [[notify]] url_file that does not exist as a
// config error (exit 78) naming the key and the path, as the agent would
// fail on it at start.
func TestValidateRefusesMissingKeyFiles(t *testing.T) {
	f := newConfigFixture(t)
	// Images are never pulled: validate does not touch the engine.
	s := stack{WebImage: "127.0.0.1:1/web:a", DBImage: "127.0.0.1:1/db:a"}
	f.release("stack", map[string]string{"compose.yaml": s.yaml()})
	dir := t.TempDir()
	secret := filepath.Join(dir, "webhook-secret")
	must(t, os.WriteFile(secret, []byte("s3cret\n"), 0o600))
	urlFile := filepath.Join(dir, "notify-url")
	must(t, os.WriteFile(urlFile, []byte("http://127.0.0.1:1/hook\n"), 0o600))
	addr := freePort(t)

	// With the files there, the same config validates: a failure below is
	// about the missing file, not the setup.
	f.agentExtra = webhookTable(addr, secret) + notifyTable(urlFile)
	f.writeConfig("")
	if r := f.lockstep("validate", "e2e"); r.code != 0 {
		t.Fatalf("setup: validate with every key file present: want exit 0, got %s", r)
	}

	for _, c := range []struct {
		name, key, missing string
		tables             func(missing string) string
	}{
		{"webhook", "[webhook].secret_file", filepath.Join(dir, "no-such-webhook-secret"),
			func(m string) string { return webhookTable(addr, m) + notifyTable(urlFile) }},
		{"notify", "url_file", filepath.Join(dir, "no-such-notify-url"),
			func(m string) string { return webhookTable(addr, secret) + notifyTable(m) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.agentExtra = c.tables(c.missing)
			f.writeConfig("")
			r := f.lockstep("validate", "e2e")
			if r.code != 78 || !strings.Contains(r.stderr, c.key) || !strings.Contains(r.stderr, c.missing) {
				t.Errorf("validate with %s naming %s, which does not exist: want exit 78 and stderr naming %q and the path, got %s", c.key, c.missing, c.key, r)
			}
		})
	}
}

// TestAgentStartRefusesMissingWebhookSecret: `lockstep agent` with a
// config whose [webhook].secret_file does not exist exits 78, the config
// error systemd does not restart, not 1.
func TestAgentStartRefusesMissingWebhookSecret(t *testing.T) {
	f := newConfigFixture(t)
	missing := filepath.Join(t.TempDir(), "no-such-webhook-secret")
	// No pin and no engine: whatever the agent does, it cannot deploy.
	f.agentExtra = webhookTable(freePort(t), missing) + "\n[engine]\nhost = \"unix:///nonexistent/docker.sock\"\n"
	f.writeConfig("")
	a := f.startAgent()
	if code := a.wait(60 * time.Second); code != 78 {
		t.Errorf("agent started with [webhook].secret_file %s missing: want exit 78 (config error), got %d", missing, code)
	}
}
