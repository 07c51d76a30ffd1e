package engine

import (
	"context"
	"slices"
	"strconv"
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
// swarm stops it and it ends complete, or failed when the app exits
// non-zero on SIGTERM, with no word of health, whatever the restart
// policy), one whose check passes does.
func TestSwarmTaskHealth(t *testing.T) {
	f := requireSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	image, err := f.sw.ResolveImage(ctx, harness.PushTestApp(t, f.reg, f.ns+"/web", "v1", harness.ImageOptions{}))
	mustNoErr(t, "resolve", err)
	spec := func(key string, restart *swarmapi.RestartPolicy, env ...string) swarmapi.ServiceSpec {
		replicas := uint64(1)
		return swarmapi.ServiceSpec{
			Annotations: swarmapi.Annotations{Name: f.ns + "_" + key, Labels: f.labels()},
			TaskTemplate: swarmapi.TaskSpec{
				ContainerSpec: &swarmapi.ContainerSpec{Image: image, Env: env, Healthcheck: &container.HealthConfig{
					Test: []string{"CMD", "/app", "healthcheck"}, Interval: 300 * time.Millisecond, Timeout: 5 * time.Second, Retries: 3,
				}},
				RestartPolicy: restart,
			},
			Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
		}
	}
	wellID, err := f.sw.CreateService(ctx, spec("well", nil))
	mustNoErr(t, "create well", err)
	for i, restart := range []*swarmapi.RestartPolicy{{Condition: swarmapi.RestartPolicyConditionNone}, nil} {
		id, err := f.sw.CreateService(ctx, spec("sick"+strconv.Itoa(i), restart, "UNHEALTHY=1"))
		mustNoErr(t, "create sick", err)
		seen, task := f.firstTaskEnd(ctx, t, id)
		if !slices.Contains(seen, string(swarmapi.TaskStateStarting)) || slices.Contains(seen, string(swarmapi.TaskStateRunning)) {
			t.Errorf("the unhealthy task went through %v, want starting and never running", seen)
		}
		t.Logf("restart policy %+v: an unhealthy task went through %v and ended with message %q, error %q, exit code %d, health %q",
			restart, seen, task.Message, task.Err, task.ExitCode, task.Health)
	}
	f.waitRunning(ctx, t, wellID, image)
}

// firstTaskEnd follows the first task of service id until it ends, and
// returns the states it went through and how it ended.
func (f *swarmFixture) firstTaskEnd(ctx context.Context, t *testing.T, id string) ([]string, compose.ObservedTask) {
	t.Helper()
	var seen []string
	var task compose.ObservedTask
	err := pollUntil(ctx, func() (bool, error) {
		svc, err := f.sw.Service(ctx, id)
		if err != nil || len(svc.Tasks) == 0 {
			return false, err
		}
		task = svc.Tasks[len(svc.Tasks)-1]
		if len(seen) == 0 || seen[len(seen)-1] != task.State {
			seen = append(seen, task.State)
		}
		return task.DesiredState == string(swarmapi.TaskStateShutdown) && task.State != string(swarmapi.TaskStateRunning) && task.State != string(swarmapi.TaskStateStarting), nil
	})
	if err != nil {
		t.Fatalf("the first task of %s never ended: %v; states %v", id, err, seen)
	}
	return seen, task
}
