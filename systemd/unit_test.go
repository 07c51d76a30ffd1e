package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// directives parses the unit into key -> values (a key may repeat).
func directives(unit string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestUnitPromises checks the settings the agent relies on: readiness and
// watchdog notifications, no restart loop on a config error (exit 78, the
// CLI's config-error code), and the hardening the README promises.
func TestUnitPromises(t *testing.T) {
	d := directives(Unit)
	want := map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"WatchdogSec":              "120s",
		"RestartPreventExitStatus": "78",
		"ProtectSystem":            "strict",
		"PrivateTmp":               "true",
		"NoNewPrivileges":          "true",
		"ProtectHome":              "true",
		"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6",
		"StateDirectory":           "lockstep",
		"RuntimeDirectory":         "lockstep",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if rw := strings.Join(d["ReadWritePaths"], " "); !strings.Contains(rw, "/var/lib/lockstep") || !strings.Contains(rw, "/run/lockstep") {
		t.Errorf("ReadWritePaths = %q: the state dir and the API socket dir must stay writable under ProtectSystem=strict", rw)
	}
	if got := d["ExecStart"]; len(got) != 1 || !strings.Contains(got[0], " agent ") {
		t.Errorf("ExecStart = %q, want the agent command", got)
	}
}

// TestUnitVerifies runs systemd-analyze verify when the host has it, with
// ExecStart pointed at an executable that exists.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: only the directive checks ran")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lockstep")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(Unit, "/usr/local/bin/lockstep", bin)
	path := filepath.Join(dir, "lockstep.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify also complains about units this unit names that the test host
	// lacks (docker.service in a container); only our own file's lines count.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "lockstep.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if err != nil && !strings.Contains(string(out), "docker.service") {
		t.Errorf("systemd-analyze verify failed: %v\n%s", err, out)
	}
}
