package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestSwarmTaskHealth checks what a gate can read of health, which the
// swarm API does not report (ObservedTask.Health stays ""): a task whose
// healthcheck fails never reaches running (it stays starting until the
// swarm stops it: complete, or failed, with no word of health), one whose
// check passes does.
func TestSwarmTaskHealth(t *testing.T) {
	f := requireSingleSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image, err := f.sw.ResolveImage(ctx, harness.PushTestApp(t, f.reg, f.ns+"/web", "v1", harness.ImageOptions{}))
	mustNoErr(t, "resolve", err)
	spec := func(key string, env ...string) swarmapi.ServiceSpec {
		replicas := uint64(1)
		return swarmapi.ServiceSpec{
			Annotations: swarmapi.Annotations{Name: f.ns + "_" + key, Labels: f.labels()},
			TaskTemplate: swarmapi.TaskSpec{
				ContainerSpec: &swarmapi.ContainerSpec{Image: image, Env: env, Healthcheck: &container.HealthConfig{
					Test: []string{"CMD", "/app", "healthcheck"}, Interval: 300 * time.Millisecond, Timeout: 5 * time.Second, Retries: 3,
				}},
				RestartPolicy: &swarmapi.RestartPolicy{Condition: swarmapi.RestartPolicyConditionNone},
			},
			Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		}
	}
	sickID, err := f.sw.CreateService(ctx, spec("sick", "UNHEALTHY=1"))
	mustNoErr(t, "create sick", err)
	wellID, err := f.sw.CreateService(ctx, spec("well"))
	mustNoErr(t, "create well", err)

	var seen []string // the states the first task went through
	var last compose.ObservedService
	err = pollUntil(ctx, func() (bool, error) {
		var err error
		if last, err = f.sw.Service(ctx, sickID); err != nil || len(last.Tasks) == 0 {
			return false, err
		}
		task := last.Tasks[len(last.Tasks)-1]
		if len(seen) == 0 || seen[len(seen)-1] != task.State {
			seen = append(seen, task.State)
		}
		return task.DesiredState == string(swarmapi.TaskStateShutdown) && task.State != string(swarmapi.TaskStateRunning) && task.State != string(swarmapi.TaskStateStarting), nil
	})
	if err != nil {
		t.Fatalf("the unhealthy task never ended: %v; states %v", err, seen)
	}
	task := last.Tasks[len(last.Tasks)-1]
	if !slices.Contains(seen, string(swarmapi.TaskStateStarting)) || slices.Contains(seen, string(swarmapi.TaskStateRunning)) {
		t.Errorf("the unhealthy task went through %v, want starting and never running", seen)
	}
	t.Logf("an unhealthy task went through %v and ended with message %q, error %q, exit code %d, health %q", seen, task.Message, task.Err, task.ExitCode, task.Health)
	f.waitRunning(ctx, t, wellID, image)
}
