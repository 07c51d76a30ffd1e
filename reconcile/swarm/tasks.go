package swarm

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Task and update states, as the swarm reports them.
const (
	taskRunning  = "running"
	taskComplete = "complete"
	taskFailed   = "failed"
	taskRejected = "rejected"

	updateUpdating  = "updating"
	updatePaused    = "paused"
	updateCompleted = "completed"
)

// progress is how far a service got towards its desired state.
type progress struct {
	observed  bool
	converged bool
	job       bool
	want      int    // tasks it must have running (complete, for a job)
	running   int    // of the current spec, running (complete, for a job)
	starting  int    // of the current spec, wanted running, not there yet
	old       int    // of a previous spec, still wanted running
	update    string // the update's state when not done
	lastErr   string // the newest error a task of the current spec reported
}

func (p progress) text() string {
	if !p.observed {
		return "never observed"
	}
	verb := "running"
	if p.job {
		verb = "complete"
	}
	s := fmt.Sprintf("%d/%d tasks %s", p.running, p.want, verb)
	if p.starting > 0 {
		s += fmt.Sprintf(", %d starting", p.starting)
	}
	if p.old > 0 {
		s += fmt.Sprintf(", %d of the previous spec still running", p.old)
	}
	if p.update != "" {
		s += ", update " + p.update
	}
	if p.lastErr != "" {
		s += "; last task error: " + p.lastErr
	}
	return s
}

// failure is why obs failed for good, with the task it names (the
// service's name when none): an update the swarm paused or rolled back
// (its update_config.failure_action), or a task of the current spec
// created since the gate started that failed, was rejected, reports
// unhealthy, or (not a job) completed. A paused or rolled back update
// also says why its task failed: the swarm's own message names only the
// task's id.
func failure(obs compose.ObservedService, since time.Time) (task, reason string) {
	var swarmSays string
	switch obs.UpdateState {
	case updatePaused:
		swarmSays = withMessage("update paused by the swarm (update_config.failure_action: pause)", obs.UpdateMessage)
	case "rollback_started", "rollback_paused", "rollback_completed":
		swarmSays = withMessage("the swarm rolled the update back (update_config.failure_action: rollback; "+obs.UpdateState+")", obs.UpdateMessage)
	}
	task, reason = taskFailure(obs, since)
	switch {
	case swarmSays == "":
		return task, reason
	case reason == "":
		task, reason = namedTask(obs)
	}
	if reason == "" {
		return obs.Name, swarmSays
	}
	return task, swarmSays + "; " + reason
}

// namedTask is the task the swarm's update message names by its id
// ("update paused due to failure or early termination of task ID"), as
// "task X <state>: <message>". The gate may not have judged it: it can be
// created, and fail, before the gate's first poll.
func namedTask(obs compose.ObservedService) (task, reason string) {
	for _, t := range obs.Tasks {
		if t.ID == "" || !strings.Contains(obs.UpdateMessage, t.ID) {
			continue
		}
		if why := endedWhy(obs, t); why != "" {
			return taskName(obs, t), why
		}
		return taskName(obs, t), withMessage(fmt.Sprintf("task %s %s", taskName(obs, t), t.State), taskError(t))
	}
	return "", ""
}

// taskFailure is the first task of obs's current spec created since the
// gate started that ended or failed (see failure).
func taskFailure(obs compose.ObservedService, since time.Time) (task, reason string) {
	img := imageOf(obs.Spec)
	for _, t := range obs.Tasks {
		if t.Image != img || t.CreatedAt.Before(since) {
			continue
		}
		if why := endedWhy(obs, t); why != "" {
			return taskName(obs, t), why
		}
		if t.Health == "unhealthy" {
			return taskName(obs, t), fmt.Sprintf("task %s: healthcheck reports unhealthy", taskName(obs, t))
		}
	}
	return "", ""
}

// endedWhy says why task t of obs ended when that is a failure: it
// failed, was rejected, or (not a job) completed; "" otherwise.
func endedWhy(obs compose.ObservedService, t compose.ObservedTask) string {
	switch {
	case t.State == taskFailed || t.State == taskRejected:
		return fmt.Sprintf("task %s %s: %s", taskName(obs, t), t.State, taskError(t))
	case t.State == taskComplete && !isJob(obs):
		// A service's task ends only when it is replaced (shutdown):
		// complete is its container exiting 0, or the swarm stopping it
		// because its healthcheck failed (the API says no more).
		return withMessage(fmt.Sprintf("task %s ended (complete) while the service wants it running: it exited 0, or the swarm stopped it because its healthcheck failed", taskName(obs, t)), taskError(t))
	}
	return ""
}

func isJob(obs compose.ObservedService) bool {
	return obs.Spec.Mode.ReplicatedJob != nil || obs.Spec.Mode.GlobalJob != nil
}

func withMessage(s, msg string) string {
	if msg == "" {
		return s
	}
	return s + ": " + msg
}

// taskName is how docker service ps names a task: <service>.<slot>, or
// <service>.<node id> for a global one.
func taskName(obs compose.ObservedService, t compose.ObservedTask) string {
	if t.Slot > 0 {
		return fmt.Sprintf("%s.%d", obs.Name, t.Slot)
	}
	return obs.Name + "." + t.NodeID
}

func taskError(t compose.ObservedTask) string {
	msg := t.Err
	if msg == "" {
		msg = t.Message
	}
	if t.ExitCode != 0 {
		msg += fmt.Sprintf(" (exit code %d)", t.ExitCode)
	}
	return strings.TrimSpace(msg)
}

// judge measures obs against what svc wants, from one snapshot.
func judge(svc *compose.StackService, obs compose.ObservedService, nodes []compose.ObservedNode) progress {
	p := progress{observed: true, job: svc.Job}
	switch obs.UpdateState {
	case "", updateCompleted, "rollback_completed":
		// No update, or one done: a rolled back service runs its previous
		// spec (whether that is the desired one, the hash says).
	default:
		p.update = obs.UpdateState
	}
	img := imageOf(obs.Spec)
	var onNodes = map[string]bool{}
	for _, t := range obs.Tasks {
		current := t.Image == img
		if current && p.lastErr == "" && (t.State == taskFailed || t.State == taskRejected) {
			p.lastErr = taskError(t)
		}
		switch {
		case svc.Job && current && t.State == taskComplete:
			p.running++
		case t.DesiredState != taskRunning:
		case !current:
			p.old++
		case t.State == taskRunning && t.Health != "starting" && t.Health != "unhealthy":
			p.running++
			onNodes[t.NodeID] = true
		default:
			p.starting++
			onNodes[t.NodeID] = true
		}
	}
	p.want = wantTasks(obs, nodes, len(onNodes))
	if svc.Job {
		p.converged = p.update == "" && p.running >= p.want && p.starting == 0
		return p
	}
	p.converged = p.update == "" && p.running == p.want && p.starting == 0 && p.old == 0
	return p
}

// updatePending reports whether obs, which this apply updated, has a
// rolling update to go through that the swarm has not finished (or not
// started yet: right after the update its state is empty, and the old
// tasks still look converged). A new task template means one; a change
// of the replicas or of the service's own labels does not.
func updatePending(obs compose.ObservedService, p progress) bool {
	if obs.PreviousSpec == nil || p.want == 0 || obs.UpdateState == updateCompleted {
		return false
	}
	return !reflect.DeepEqual(obs.PreviousSpec.TaskTemplate, obs.Spec.TaskTemplate)
}

// wantTasks is how many tasks obs must have running (complete): its
// replicas; for a global service one per node that is ready and active
// (when it has placement constraints, the swarm decides which nodes are
// eligible: one per node it scheduled a task on); for a replicated job
// its total completions.
func wantTasks(obs compose.ObservedService, nodes []compose.ObservedNode, scheduled int) int {
	m := obs.Spec.Mode
	switch {
	case m.Global != nil || m.GlobalJob != nil:
		if p := obs.Spec.TaskTemplate.Placement; p != nil && len(p.Constraints) > 0 || len(nodes) == 0 {
			return max(scheduled, 1)
		}
		n := 0
		for _, node := range nodes {
			if node.State == "ready" && node.Availability == "active" {
				n++
			}
		}
		return n
	case m.ReplicatedJob != nil:
		if j := m.ReplicatedJob; j.TotalCompletions != nil {
			return int(*j.TotalCompletions)
		} else if j.MaxConcurrent != nil {
			return int(*j.MaxConcurrent)
		}
		return 1
	}
	_, replicas := modeText(m)
	return int(replicas)
}
