package bench

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// The benchmarks here run the same change with lockstep and with the
// Docker Compose CLI (`docker compose`, v5 on this machine) on twin
// projects, in the same run, and report both times and their ratio
// (lockstep / compose, lower is better): absolute times depend on the
// machine, the ratio much less.
//
// Like for like: `lockstep apply` with the health gate off is compared
// with `docker compose up -d`, which waits for nothing; with the gate on
// services that have a healthcheck (the gate then waits for them to be
// healthy) it is compared with `docker compose up -d --wait`, which
// waits for the same. A service without a healthcheck has no
// counterpart in Compose: the gate makes it run for the bake period
// (15s by default) to catch a crash loop, `--wait` only until it runs.

// requireCompose returns the compose CLI, or skips the benchmark.
func requireCompose(b *testing.B) []string {
	b.Helper()
	cli := composeCLI()
	if cli == nil {
		b.Skip("no Docker Compose CLI on this machine (docker compose / docker-compose): nothing to compare with; see .ci/compose.sh")
	}
	return cli
}

func composeCLI() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// composeRun runs the compose CLI on project in dir.
func composeRun(b *testing.B, cli []string, dir, project string, args ...string) {
	b.Helper()
	cmd := exec.Command(cli[0], append(append(cli[1:], "-p", project), args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v -p %s %v: %v\n%s", cli, project, args, err, out)
	}
}

// twin is the Compose-deployed copy of a benchmark's project.
type twin struct {
	cli     []string
	dir     string
	project string
}

func newTwin(b *testing.B, cli []string, project string) *twin {
	t := &twin{cli: cli, dir: b.TempDir(), project: project + "-compose"}
	harness.CleanupProject(b, harness.RequireDocker(b), t.project, "")
	return t
}

// up writes content as the twin's compose file and runs compose with args
// (up -d, up -d --wait), returning how long compose took.
func (t *twin) up(b *testing.B, content string, args ...string) time.Duration {
	b.Helper()
	writeFile(b, filepath.Join(t.dir, "compose.yaml"), content)
	start := time.Now()
	composeRun(b, t.cli, t.dir, t.project, append([]string{"up", "--remove-orphans"}, args...)...)
	return time.Since(start)
}

// timedApply is one `lockstep apply`, timed.
func (w *world) timedApply() time.Duration {
	start := time.Now()
	w.run("apply", "bench")
	return time.Since(start)
}

// comparison sums the two tools' times over the iterations.
type comparison struct{ lockstep, compose time.Duration }

func (c comparison) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(c.lockstep.Seconds()/n, "lockstep-s/op")
	b.ReportMetric(c.compose.Seconds()/n, "compose-s/op")
	b.ReportMetric(c.lockstep.Seconds()/c.compose.Seconds(), "lockstep/compose")
}

// BenchmarkRecreate1of20 releases a change to one service of 20 per
// iteration and applies it with lockstep, and the same change to a twin
// project with Compose:
//
//	nogate-vs-up:    lockstep apply, gate off      vs  docker compose up -d
//	gate-vs-up-wait: lockstep apply, gate on, with
//	                 healthchecks                  vs  docker compose up -d --wait
func BenchmarkRecreate1of20(b *testing.B) {
	cli := requireCompose(b)
	b.Run("nogate-vs-up", func(b *testing.B) {
		benchRecreate(b, cli, stackOptions{noGate: true}, "-d")
	})
	b.Run("gate-vs-up-wait", func(b *testing.B) {
		benchRecreate(b, cli, stackOptions{healthcheck: true}, "-d", "--wait")
	})
}

func benchRecreate(b *testing.B, cli []string, o stackOptions, upArgs ...string) {
	const services, changed = 20, 7
	w := newWorldOf(b, services, func(image string) string { return stackYAML(image, services, -1, "", o) })
	tw := newTwin(b, cli, w.project)
	tw.up(b, stackYAML(w.image, services, -1, "", o), upArgs...)
	var c comparison
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		content := stackYAML(w.image, services, changed, fmt.Sprint(i+2), o)
		b.StopTimer()
		w.release(content) // the push is not part of the figure
		c.lockstep += w.timedApply()
		c.compose += tw.up(b, content, upArgs...)
		b.StartTimer()
	}
	c.report(b)
}

// freshStack is a web tier on an api on a database, each with a
// healthcheck and each waiting for the one below to be healthy, on a
// network of their own, the database on a named volume; plus workers
// with a healthcheck that depend on nothing. The first deploy of a
// typical application stack.
func freshStack(image string, workers int) string {
	var s strings.Builder
	fmt.Fprintf(&s, "services:\n  db:\n    image: %s\n    environment:\n      DATA_DIR: /data\n    volumes:\n      - dbdata:/data\n    networks: [backend]\n%s", image, healthcheckYAML)
	fmt.Fprintf(&s, "  api:\n    image: %s\n    depends_on:\n      db:\n        condition: service_healthy\n    networks: [backend]\n%s", image, healthcheckYAML)
	fmt.Fprintf(&s, "  web:\n    image: %s\n    ports: [\"127.0.0.1::8080\"]\n    depends_on:\n      api:\n        condition: service_healthy\n    networks: [backend]\n%s", image, healthcheckYAML)
	for i := 0; i < workers; i++ {
		fmt.Fprintf(&s, "  worker%02d:\n    image: %s\n    networks: [backend]\n%s", i, image, healthcheckYAML)
	}
	s.WriteString("networks:\n  backend: {}\nvolumes:\n  dbdata: {}\n")
	return s.String()
}

// BenchmarkFreshDeploy deploys a stack on a host that has nothing of it
// (its images are present: both tools only check), with lockstep (gate on:
// every service becomes healthy) and with `docker compose up -d --wait`,
// per iteration; both projects are removed between iterations, outside
// the timing.
func BenchmarkFreshDeploy(b *testing.B) {
	cli := requireCompose(b)
	for _, workers := range []int{0, 8} {
		b.Run(fmt.Sprintf("%dservices-vs-up-wait", 3+workers), func(b *testing.B) {
			stack := func(image string) string { return freshStack(image, workers) }
			w := newWorldOf(b, 3+workers, stack)
			tw := newTwin(b, cli, w.project)
			lockstepDir := b.TempDir() // compose down needs a directory, not the files
			var c comparison
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				composeRun(b, cli, lockstepDir, w.project, "down", "--volumes", "--remove-orphans")
				if i > 0 {
					composeRun(b, cli, tw.dir, tw.project, "down", "--volumes", "--remove-orphans")
				}
				c.lockstep += w.timedApply()
				c.compose += tw.up(b, stack(w.image), "-d", "--wait")
				b.StartTimer()
			}
			c.report(b)
		})
	}
}
