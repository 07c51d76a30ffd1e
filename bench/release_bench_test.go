// Package bench measures lockstep's release loop against the real engine and
// against a baseline run in the same process on the same machine, so the
// figures are ratios, not absolute times that depend on the host.
//
//	go test -run '^$' -bench . -benchtime 5x ./bench/
//
// The release and agent benchmarks need a Docker engine and skip without
// one; the trust benchmarks (trust_bench_test.go) need git, gpg and
// ssh-keygen but no engine, and BenchmarkMonorepo (monorepo_test.go) git
// only.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// buildLockstep builds the CLI under test into a temp dir.
func buildLockstep(b *testing.B) string {
	b.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(here))
	bin := filepath.Join(b.TempDir(), "lockstep")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lockstep")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build lockstep: %v\n%s", err, out)
	}
	return bin
}

// world is one benchmark setup: n services of the test app, deployed.
type world struct {
	b        *testing.B
	bin      string
	config   string
	git      *gitserver.Server
	image    string
	project  string
	services int
	stateDir string
}

func composeYAML(image string, n int, changed int, version string) string {
	return stackYAML(image, n, changed, version, stackOptions{})
}

// stackOptions shape the services of stackYAML.
type stackOptions struct {
	// healthcheck gives every service a 1s healthcheck: lockstep's gate
	// and `docker compose up --wait` then wait for the same thing.
	healthcheck bool
	// noGate takes every service out of lockstep's health gate
	// (lockstep.health-gate: "false"), like `docker compose up -d`,
	// which waits for nothing; Compose ignores the label.
	noGate bool
}

func stackYAML(image string, n int, changed int, version string, o stackOptions) string {
	var s strings.Builder
	s.WriteString("services:\n")
	for i := 0; i < n; i++ {
		v := "1"
		if i == changed {
			v = version
		}
		fmt.Fprintf(&s, "  svc%02d:\n    image: %s\n    environment:\n      REV: %q\n", i, image, v)
		if o.healthcheck {
			s.WriteString(healthcheckYAML)
		}
		if o.noGate {
			s.WriteString("    labels:\n      lockstep.health-gate: \"false\"\n")
		}
	}
	return s.String()
}

// healthcheckYAML is the test app's own probe, polled every second.
const healthcheckYAML = `    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
`

func newWorld(b *testing.B, services int) *world {
	return newWorldOf(b, services, func(image string) string { return composeYAML(image, services, -1, "") })
}

// newWorldOf deploys the compose file yaml(image) with lockstep.
func newWorldOf(b *testing.B, services int, yaml func(image string) string) *world {
	cli := harness.RequireDocker(b)
	reg := harness.StartRegistry(b)
	w := &world{b: b, bin: buildLockstep(b), services: services}
	w.project = harness.UniqueProject(b, "lsbench")
	harness.CleanupProject(b, cli, w.project, reg)
	w.image = harness.PushTestApp(b, reg, "app", "v1", harness.ImageOptions{})
	w.git = gitserver.Start(b, gitserver.Options{})
	w.config = filepath.Join(b.TempDir(), "lockstep.toml")
	w.stateDir = b.TempDir()
	cfg := fmt.Sprintf("state_dir = %q\n[repo]\nurl = %q\n[[environment]]\nname = \"bench\"\nproject = %q\n",
		w.stateDir, w.git.URL, w.project)
	if err := os.WriteFile(w.config, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	w.release(yaml(w.image))
	w.run("apply", "bench")
	return w
}

func (w *world) release(content string) {
	sha := w.git.Commit(w.b, "release", map[string]string{"compose.yaml": content})
	w.git.Commit(w.b, "pin", map[string]string{"environments/bench.toml": fmt.Sprintf("commit = %q\n", sha)})
}

func (w *world) run(args ...string) {
	w.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--config", w.config}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		w.b.Fatalf("lockstep %v: %v\n%s", args, err, stderr.String())
	}
}

// BenchmarkPlan50 is `lockstep plan` of a converged 50-service project: git
// check, release load, engine observe and plan, as an operator runs it.
func BenchmarkPlan50(b *testing.B) {
	w := newWorld(b, 50)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.run("plan", "bench")
	}
}

// BenchmarkApplyNoop50 is `lockstep apply` when nothing changed: one
// container list, no inspect. cold-ms/op is the same apply after the
// remembered inspect facts were deleted (state_dir/engine-facts), so every
// container is inspected, as every pass did before they were kept: the
// figure to compare with, measured in the same run.
func BenchmarkApplyNoop50(b *testing.B) {
	w := newWorld(b, 50)
	var cold time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.run("apply", "bench")
		b.StopTimer()
		if err := os.RemoveAll(filepath.Join(w.stateDir, "engine-facts")); err != nil {
			b.Fatal(err)
		}
		cold += w.timedApply()
		b.StartTimer()
	}
	b.ReportMetric(float64(cold.Microseconds())/1000/float64(b.N), "cold-ms/op")
}

func writeFile(b *testing.B, path, content string) {
	b.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPassNoop50 is the pass the agent runs when nothing changed (a
// drift pass over a converged 50-service project), in one process as the
// agent runs it: the schema compiled, the engine connected and the git
// cache warm from the pass before. Resolve, hold, load, observe (one
// container list), plan; nothing applied. BenchmarkApplyNoop50 is the same
// pass as `lockstep apply`, a new process each time: the difference is the
// process start and a process's first-use costs.
func BenchmarkPassNoop50(b *testing.B) {
	w := newWorld(b, 50)
	cfg, err := config.Load(w.config)
	if err != nil {
		b.Fatal(err)
	}
	parts, err := wire.Build(cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer parts.Close()
	env := wire.Environment(cfg.Environments[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	opts := pass.Options{Mode: pass.ModeApply, Trigger: reconcile.TriggerDrift}
	if _, err := parts.Pipeline.Run(ctx, env, opts); err != nil {
		b.Fatal(err) // the pass that warms what the agent keeps between passes
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := parts.Pipeline.Run(ctx, env, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Plan != nil && !res.Plan.Empty() {
			b.Fatalf("converged project planned changes: %+v", res.Plan)
		}
	}
}
