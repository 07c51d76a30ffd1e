package forge

import (
	"fmt"
	"strings"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Started reports that an apply of commit to env began (pending).
func (r *Reporter) Started(env, commit string) {
	if r == nil {
		return
	}
	r.Report(r.StartedStatus(env, commit))
}

// StartedStatus is the pending status of an apply of commit to env.
func (r *Reporter) StartedStatus(env, commit string) Status {
	return Status{Environment: env, Commit: commit, State: StatePending,
		Description: fmt.Sprintf("deploying to %s on %s", env, r.host)}
}

// Passed reports the result of a pass, if it deployed or failed a commit.
func (r *Reporter) Passed(rec reconcile.PassRecord) {
	if r == nil {
		return
	}
	for _, s := range r.Statuses(rec) {
		r.Report(s)
	}
}

// TornDown reports that env, last at commit ("" if unknown: its newest
// deployment), was removed: its GitHub deployment becomes inactive.
func (r *Reporter) TornDown(env, commit string) {
	if r == nil {
		return
	}
	r.Report(Status{Environment: env, Commit: commit, State: StateInactive,
		Description: fmt.Sprintf("%s removed from %s", env, r.host)})
}

// Statuses are what a pass record says about its commits: success when it
// applied the commit and the commit passed the gate; failure when the
// commit failed the gate (and success again on the commit rolled back
// to, which runs now); error when the pass of the commit failed otherwise.
// A pass that changed nothing, was paused, or could not read git says
// nothing about a commit.
func (r *Reporter) Statuses(rec reconcile.PassRecord) []Status {
	env, host := rec.Environment, r.host
	if rec.Commit == "" {
		return nil
	}
	st := func(commit string, state State, desc string) Status {
		return Status{Environment: env, Commit: commit, State: state, Description: desc}
	}
	switch rec.Result {
	case reconcile.ResultApplied:
		return []Status{st(rec.Commit, StateSuccess, fmt.Sprintf("deployed to %s on %s", env, host))}
	case reconcile.ResultRolledBack:
		out := []Status{st(rec.Commit, StateFailure, gateFailure(rec, host))}
		if rec.RolledBackTo != "" && rec.RolledBackTo != rec.Commit {
			out = append(out, st(rec.RolledBackTo, StateSuccess,
				fmt.Sprintf("running again on %s on %s (rolled back from %s)", env, host, reconcile.Short(rec.Commit))))
		}
		return out
	case reconcile.ResultFailed:
		switch rec.Class {
		case reconcile.ClassGit:
			return nil // the commit is not what failed; the forge is likely unreachable too
		case reconcile.ClassHealth:
			return []Status{st(rec.Commit, StateFailure, gateFailure(rec, host))}
		}
		return []Status{st(rec.Commit, StateError, fmt.Sprintf("failed on %s on %s: %s", env, host, firstLine(rec.Error)))}
	}
	return nil
}

// gateFailure describes a commit that failed the health gate, or that an
// operator rolled back.
func gateFailure(rec reconcile.PassRecord, host string) string {
	if rec.Trigger == reconcile.TriggerRollback && rec.RolledBackTo != "" {
		return fmt.Sprintf("held back by lockstep rollback on %s on %s: %s runs instead", rec.Environment, host, reconcile.Short(rec.RolledBackTo))
	}
	what := "failed the health gate"
	if rec.Service != "" {
		what = rec.Service + " " + what
	}
	msg := fmt.Sprintf("%s on %s on %s", what, rec.Environment, host)
	if rec.Error != "" {
		msg += ": " + firstLine(rec.Error)
	}
	switch {
	case rec.RolledBackTo != "":
		msg = fmt.Sprintf("rolled back to %s: %s", reconcile.Short(rec.RolledBackTo), msg)
	case rec.Result == reconcile.ResultFailed:
		msg = "not rolled back: " + msg
	}
	return msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
