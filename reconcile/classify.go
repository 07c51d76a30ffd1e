package reconcile

import (
	"context"
	"errors"
	"syscall"
)

// permanent is implemented by errors that know retrying cannot help
// (gitsource's pin and tree errors, compose.LoadError, PreconditionError).
// Declared here, by its consumer, so reconcile need not import the packages
// that produce them.
type permanent interface{ Permanent() bool }

// Classify is the one place that decides what a pass failure means for the
// agent loop, the status and the metrics: ClassPermanent (wait for the
// branch to move), ClassGit or ClassEngine (retry with backoff), ClassHealth
// (the release came up unhealthy: roll back and quarantine). It returns
// "" for nil and for a cancelled context, which is the agent stopping, not
// a failure of anything.
//
// An error that says it is permanent wins; otherwise the step of the pass
// that failed decides: the source step is git, a load failure is the
// release's content, observe and apply are the engine (or a registry: a tag
// CI has not pushed yet may be there on the next try).
func Classify(err error) Class {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return ""
	case errors.As(err, new(*GateError)):
		return ClassHealth
	case errors.Is(err, syscall.ENOSPC):
		// A full disk is the host's condition, not the release's, whatever
		// step met it: it clears when space is freed, so retry.
		if se := (*StepError)(nil); errors.As(err, &se) && se.Step == StepSource {
			return ClassGit
		}
		return ClassEngine
	case isPermanent(err):
		return ClassPermanent
	}
	var se *StepError
	if errors.As(err, &se) {
		switch se.Step {
		case StepSource:
			return ClassGit
		case StepLoad:
			return ClassPermanent
		}
	}
	// Observe, apply, and anything unlabelled: the engine is the part that
	// fails in ways a later try can get past.
	return ClassEngine
}

// isPermanent reports whether any error in err's tree says it is permanent.
// errors.As alone would stop at the first error with the method, even one
// that answers false.
func isPermanent(err error) bool {
	if p, ok := err.(permanent); ok && p.Permanent() {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			return isPermanent(next)
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if e != nil && isPermanent(e) {
				return true
			}
		}
	}
	return false
}

// Steps of a pass, as named by StepError: what Classify decides from when
// an error carries no more precise type.
const (
	StepSource  = "source"  // fetch, read the pin, resolve, materialize
	StepLoad    = "load"    // load the release's compose files
	StepPolicy  = "policy"  // check the loaded release against the deploy policy
	StepObserve = "observe" // read what the engine has
	StepApply   = "apply"   // carry the plan out
	StepVerify  = "verify"  // the health gate after the apply
)

// StepError says which step of a pass failed. Its message is the wrapped
// error's: the step is for Classify.
type StepError struct {
	Step string // Step* constant
	Err  error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// FailedStep is the step of a pass err stopped at ("" when err says
// none): what the status and the CLI word a failure by, next to Classify.
func FailedStep(err error) string {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step
	}
	return ""
}
