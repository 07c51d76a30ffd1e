package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/composecli"
)

// composeVersionWanted is the Docker Compose release the parity suite is
// the oracle of (issue 11 §4; .ci installs it). Another version still runs,
// and the summary says which one answered.
var composeVersionWanted = strings.TrimPrefix(composecli.Version, "v")

// composeArgv is how the suite runs Docker Compose (composecli.Find). Set
// by requireComposeCLI.
var composeArgv []string

// requireComposeCLI finds Docker Compose and returns its version. Without
// it the parity suite is skipped loudly, unless CI=true, where it fails.
func requireComposeCLI(t *testing.T) string {
	t.Helper()
	argv, version := composecli.RequireAny(t, composeEnv(), "the parity suite deploys every stack with the real Docker Compose")
	composeArgv = argv
	return strings.TrimPrefix(version, "v")
}

// composeCmd is an exec.Cmd running Compose with args in dir.
func composeCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, composeArgv[0], append(append([]string(nil), composeArgv[1:]...), args...)...)
	cmd.Dir = dir
	cmd.Env = composeEnv()
	return cmd
}

// composeEnv is the whole environment of a `docker compose` run. Compose
// interpolates from its process environment before the project's .env,
// and lockstep never reads the host's environment: passing only what
// finds the engine and the plugin makes both tools see the same variables
// (the stack's .env), whatever the test runner's environment holds.
func composeEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range []string{"DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// runCompose runs `docker compose -p project <args>` in dir (the project
// directory: compose reads compose.yaml and .env there) and returns its
// combined output. A failure is returned, not fatal: the suite reports it
// per stack and goes on with the other stacks.
func runCompose(dir, project string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := composeCmd(ctx, dir, append([]string{"-p", project}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker compose -p %s %s (in %s): %w\n%s", project, strings.Join(args, " "), dir, err, out)
	}
	return string(out), nil
}

// composeSubnets returns the names of the networks whose subnet the
// stack sets, as Compose resolves the files (`docker compose config`):
// only those subnets are compared, the others are the engine's choice.
func composeSubnets(dir, project string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := composeCmd(ctx, dir, "-p", project, "config", "--format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("docker compose config (in %s): %w\n%s", dir, err, stderr.Bytes())
	}
	var model struct {
		Networks map[string]struct {
			Name string `json:"name"`
			Ipam struct {
				Config []struct {
					Subnet string `json:"subnet"`
				} `json:"config"`
			} `json:"ipam"`
		} `json:"networks"`
	}
	if err := json.Unmarshal(out, &model); err != nil {
		return nil, fmt.Errorf("docker compose config: %w", err)
	}
	set := map[string]bool{}
	for _, n := range model.Networks {
		for _, c := range n.Ipam.Config {
			if c.Subnet != "" {
				set[n.Name] = true
			}
		}
	}
	return set, nil
}
