// Package composecli finds the Docker Compose CLI that lockstep's
// compatibility tests use as their oracle: `docker compose`, or the plugin
// binary on its own (it runs standalone) on a machine with no docker CLI,
// where .ci/compose.sh installed only the plugin. It imports nothing of
// lockstep, so the tests of any package may use it; it never installs
// anything.
package composecli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Version is the Docker Compose release lockstep agrees with on the
// config-hash (compose/composehash.go); .ci/compose.sh installs it.
const Version = "v5.6.0"

// Find returns the argv that runs Docker Compose and the version it
// reports ("v5.6.0"), trying `docker compose`, then the plugin under
// $DOCKER_CONFIG (default ~/.docker)/cli-plugins. env is the environment
// the version check runs with (nil: the test's own). The error says what
// each try answered.
func Find(env []string) (argv []string, version string, err error) {
	var candidates [][]string
	if docker, err := exec.LookPath("docker"); err == nil {
		candidates = append(candidates, []string{docker, "compose"})
	}
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		dir = filepath.Join(os.Getenv("HOME"), ".docker")
	}
	candidates = append(candidates, []string{filepath.Join(dir, "cli-plugins", "docker-compose")})
	var tries []string
	for _, c := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, c[0], append(c[1:], "version", "--short")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			tries = append(tries, fmt.Sprintf("%s: %v %s", strings.Join(c, " "), err, bytes.TrimSpace(out)))
			continue
		}
		return c, "v" + strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), nil
	}
	return nil, "", fmt.Errorf("no Docker Compose CLI runs (%s)", strings.Join(tries, "; "))
}

// Require returns the argv of Docker Compose Version, as Find finds it.
// Without it (or with another version) the test is skipped loudly, or
// fails under CI=true, where .ci/compose.sh has installed it: CI must never
// go green by not asking the oracle. why says what the test needs it for.
func Require(t testing.TB, env []string, why string) []string {
	t.Helper()
	argv, _ := require(t, env, why, true)
	return argv
}

// RequireAny is Require for a test that runs with whichever version it
// finds, and reports it (the version is returned).
func RequireAny(t testing.TB, env []string, why string) (argv []string, version string) {
	t.Helper()
	return require(t, env, why, false)
}

func require(t testing.TB, env []string, why string, exact bool) ([]string, string) {
	t.Helper()
	argv, version, err := Find(env)
	msg := ""
	switch {
	case err != nil:
		msg = err.Error()
	case exact && version != Version:
		msg = fmt.Sprintf("%s is Docker Compose %s, not %s", strings.Join(argv, " "), version, Version)
	default:
		return argv, version
	}
	msg = fmt.Sprintf("NO DOCKER COMPOSE %s: %s; %s (install it with .ci/compose.sh)", Version, msg, why)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true makes this a failure")
	}
	t.Skip("SKIPPED LOUDLY: " + msg + "; set CI=true to make this a failure")
	return nil, ""
}
