package bench

// The swarm benchmarks (issue 12's figures) run lockstep against the
// three-manager swarm of .ci/swarm/start.sh, each with a baseline measured
// in the same run on the same swarm, reported beside it as a ratio:
//
//	export "$(bash .ci/swarm/start.sh 2>/dev/null)"
//	go test -run '^$' -bench Swarm -benchtime 5x -timeout 30m ./bench/
//
// Without LOCKSTEP_SWARM they skip loudly (swarmtest.Require; CI=true makes
// that a failure). They never assert times.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/e2e/swarmtest"
)

// swarmWorld is a stack of n services of the test app deployed to the
// swarm by `lockstep apply`, on the swarm's leader (the only manager that
// applies).
type swarmWorld struct {
	*world
	sw     *swarmtest.Swarm
	cli    *client.Client // the leader's engine
	host   string
	socket string
	hook   string
	secret string
	rev    int
	head   string // the commit of the last release
	deploy string // added to every service's deploy block
}

// swarmBake is the gate's bake period in these benchmarks: the time a
// service without a healthcheck must run before it counts as converged.
const swarmBake = 3 * time.Second

// swarmStackYAML is n services of image, svc00's environment at rev;
// deploy is added to every service's deploy block.
func swarmStackYAML(image string, n int, rev int, deploy string) string {
	var s strings.Builder
	s.WriteString("services:\n")
	for i := 0; i < n; i++ {
		v := 1
		if i == 0 {
			v = rev
		}
		// dnsrr: without IPVS (.ci/swarm/README.md) a VIP answers nothing.
		fmt.Fprintf(&s, "  svc%02d:\n    image: %s\n    environment:\n      REV: \"%d\"\n    deploy:\n      endpoint_mode: dnsrr\n%s", i, image, v, deploy)
	}
	return s.String()
}

func newSwarmWorld(b *testing.B, services int) *swarmWorld {
	return newSwarmWorldOf(b, services, "")
}

// newSwarmWorldOf is newSwarmWorld with deploy added to every service's
// deploy block (swarmStackYAML).
func newSwarmWorldOf(b *testing.B, services int, deploy string) *swarmWorld {
	sw := swarmtest.Require(b)
	w := &swarmWorld{sw: sw, secret: "bench-secret", rev: 1, deploy: deploy}
	w.world = &world{b: b, bin: buildLockstep(b), services: services}
	leader := sw.Leader(b)
	w.host, w.cli = sw.Hosts[leader], sw.Client(b, leader)
	reg := sw.StartRegistry(b)
	w.project = strings.ReplaceAll(harness.UniqueProject(b, "lsbsw"), "-", "")
	b.Cleanup(w.removeStack)
	w.image = harness.PushTestApp(b, reg, "app", "v1", harness.ImageOptions{})
	w.git = gitserver.Start(b, gitserver.Options{})
	dir := b.TempDir()
	w.config, w.stateDir, w.socket = filepath.Join(dir, "lockstep.toml"), b.TempDir(), filepath.Join(dir, "api.sock")
	secretFile := filepath.Join(dir, "secret")
	writeFile(b, secretFile, w.secret)
	hookAddr := freeAddr(b)
	w.hook = "http://" + hookAddr + "/hooks/github"
	writeFile(b, w.config, fmt.Sprintf(`state_dir = %q
[repo]
url = %q
poll_interval = "1h"
[agent]
drift_interval = "1h"
[api]
socket = %q
[webhook]
listen = %q
secret_file = %q
[engine]
host = %q
[[environment]]
name = "bench"
project = %q
backend = "swarm"
bake = %q
`, w.stateDir, w.git.URL, w.socket, hookAddr, secretFile, w.host, w.project, swarmBake.String()))
	w.release(swarmStackYAML(w.image, services, w.rev, w.deploy))
	w.run("apply", "bench")
	return w
}

// release commits the stack and pins it, and returns the pinned commit.
func (w *swarmWorld) release(content string) string {
	sha := w.git.Commit(w.b, "release", map[string]string{"compose.yaml": content})
	w.git.Commit(w.b, "pin", map[string]string{"environments/bench.toml": fmt.Sprintf("commit = %q\n", sha)})
	w.head = sha
	return sha
}

// serviceVersions is the stack's services' spec versions, in name order.
func (w *swarmWorld) serviceVersions() string {
	w.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+w.project)
	svcs, err := w.cli.ServiceList(ctx, client.ServiceListOptions{Filters: ns})
	if err != nil {
		w.b.Fatal(err)
	}
	var out []string
	for _, s := range svcs.Items {
		out = append(out, fmt.Sprintf("%s=%d", s.Spec.Name, s.Version.Index))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// removeStack removes the stack's services, waits for their tasks to go,
// then removes its networks (freed once the tasks' endpoints are).
func (w *swarmWorld) removeStack() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+w.project)
	if svcs, err := w.cli.ServiceList(ctx, client.ServiceListOptions{Filters: ns}); err == nil {
		for _, s := range svcs.Items {
			if _, err := w.cli.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil {
				w.b.Errorf("cleanup: remove service %s: %v", s.Spec.Name, err)
			}
		}
	}
	for ctx.Err() == nil {
		tasks, err := w.cli.TaskList(ctx, client.TaskListOptions{Filters: ns})
		nets, err2 := w.cli.NetworkList(ctx, client.NetworkListOptions{Filters: ns})
		if err != nil || err2 != nil || len(tasks.Items)+len(nets.Items) == 0 {
			return
		}
		for _, n := range nets.Items {
			_, _ = w.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.b.Errorf("cleanup: stack %s still has tasks or networks after 2m", w.project)
}

// observeRaw is the baseline of a plan's engine reads, by the Engine API
// in this process: list the stack's services, inspect each, list their
// tasks and the swarm's nodes. A plan must read at least that much.
func (w *swarmWorld) observeRaw() time.Duration {
	w.b.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := make(client.Filters).Add("label", compose.LabelStackNamespace+"="+w.project)
	svcs, err := w.cli.ServiceList(ctx, client.ServiceListOptions{Filters: ns})
	if err != nil {
		w.b.Fatal(err)
	}
	if len(svcs.Items) != w.services {
		w.b.Fatalf("the stack has %d services, want %d", len(svcs.Items), w.services)
	}
	for _, s := range svcs.Items {
		if _, err := w.cli.ServiceInspect(ctx, s.ID, client.ServiceInspectOptions{}); err != nil {
			w.b.Fatal(err)
		}
	}
	if _, err := w.cli.TaskList(ctx, client.TaskListOptions{Filters: ns}); err != nil {
		w.b.Fatal(err)
	}
	if _, err := w.cli.NodeList(ctx, client.NodeListOptions{}); err != nil {
		w.b.Fatal(err)
	}
	return time.Since(start)
}

// timedRun is run, timed.
func (w *world) timedRun(args ...string) time.Duration {
	w.b.Helper()
	start := time.Now()
	w.run(args...)
	return time.Since(start)
}

// reportAgainst reports the baseline's mean per op and the ratio of the
// benchmark's own mean to it.
func reportAgainst(b *testing.B, own, base time.Duration, unit string) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(base), unit)
	b.ReportMetric(per(own)/per(base), "x-"+strings.TrimSuffix(unit, "-ms/op"))
}

// BenchmarkSwarmPlan20 is `lockstep plan` of a converged 20-service stack
// on the swarm, as an operator runs it (a new process: git check, release
// load, the swarm observed, plan). Two baselines, measured in the same
// run: api-ms/op, the Engine API reads such a plan needs at the least
// (observeRaw), from this process with its client already connected; and
// host-ms/op, `lockstep plan` of the same 20 services deployed as a
// compose project on the machine's engine (a new process, the same git
// check and load: what differs is the backend). x-api and x-host are the
// ratios.
func BenchmarkSwarmPlan20(b *testing.B) {
	swarmNoop(b, "plan", "--exit-code", "bench")
}

// BenchmarkSwarmApplyNoop20 is `lockstep apply` of the same converged
// stack: what BenchmarkSwarmPlan20 does, plus the pass's lock, hold and
// record; nothing to update, no gate (asserted: no service's version
// moves). Baselines as there, host-ms/op a no-op `lockstep apply`.
func BenchmarkSwarmApplyNoop20(b *testing.B) {
	swarmNoop(b, "apply", "bench")
}

func swarmNoop(b *testing.B, args ...string) {
	w := newSwarmWorld(b, 20)
	host := newWorld(b, 20)
	before := w.serviceVersions()
	var own, api, onHost time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		own += w.timedRun(args...)
		b.StopTimer()
		api += w.observeRaw()
		onHost += host.timedRun(args...)
		b.StartTimer()
	}
	b.StopTimer()
	reportAgainst(b, own, api, "api-ms/op")
	reportAgainst(b, own, onHost, "host-ms/op")
	if after := w.serviceVersions(); after != before {
		b.Fatalf("a no-op %s updated services: versions %s, then %s", args[0], before, after)
	}
}

// BenchmarkSwarmPushToConverged is the time from a release pushed (a
// commit changing svc00's environment, and its pin) and its signed
// webhook delivered, to the agent on the swarm's leader reporting it
// running: the service updated and converged, its task running for the
// bake period (swarmBake). bake-ms/op is the baseline, the gate's own
// wait, which no update can be shorter than; over-bake-ms/op what lockstep
// and the swarm add to it (fetch, load, plan, the update, the new task
// started on a node, the swarm's update monitor, the gate's polls).
//
// monitor=5s is Swarm's default update_config.monitor, which the stack
// leaves unset: Swarm watches each updated task that long before it calls
// the update completed, and the gate counts its bake only from then (a
// service whose update is not completed is not converged,
// reconcile/swarm's gate): the two waits add up. monitor=1s sets it in
// the stack, to show how much of the figure is that wait.
func BenchmarkSwarmPushToConverged(b *testing.B) {
	for _, c := range []struct{ name, deploy string }{
		{"monitor=5s", ""},
		{"monitor=1s", "      update_config:\n        monitor: 1s\n"},
	} {
		b.Run(c.name, func(b *testing.B) { swarmPushToConverged(b, newSwarmWorldOf(b, 20, c.deploy)) })
	}
}

func swarmPushToConverged(b *testing.B, w *swarmWorld) {
	w.startAgent()
	var own time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w.rev++
		sha := w.release(swarmStackYAML(w.image, w.services, w.rev, w.deploy))
		b.StartTimer()
		start := time.Now()
		deliverPush(b, w.hook, w.secret)
		waitRunning(b, api.NewClient(w.socket, ""), sha, 3*time.Minute)
		own += time.Since(start)
	}
	b.StopTimer()
	per := float64(own.Microseconds()) / 1000 / float64(b.N)
	bake := float64(swarmBake.Milliseconds())
	b.ReportMetric(bake, "bake-ms/op")
	b.ReportMetric(per-bake, "over-bake-ms/op")
	b.ReportMetric(per/bake, "x-bake")
}

// startAgent runs `lockstep agent` on the world's config until the
// benchmark ends, and waits until it runs the deployed release.
func (w *swarmWorld) startAgent() {
	b := w.b
	cmd := exec.Command(w.bin, "agent", "--config", w.config, "--log-level", "warn")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if b.Failed() {
			b.Logf("agent log:\n%s", stderr.String())
		}
	})
	waitRunning(b, api.NewClient(w.socket, ""), w.head, 2*time.Minute)
}
