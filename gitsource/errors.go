package gitsource

import "fmt"

// ErrCommitNotFound is matched (errors.Is) by every error that means "the
// commit a pin names is not available from the remote": a SHA that is not
// on the tracked branch, or a branch or tag name the remote does not have.
// It is permanent: retrying will not help until the pin or the remote
// changes.
var ErrCommitNotFound error = &permanentError{"commit not found"}

// ErrPinNotFound is matched by the error ReadPin returns when the pin file
// does not exist at the commit read. It is permanent for the commit read:
// only a new commit on the branch (or a config change) can fix it.
var ErrPinNotFound error = &permanentError{"pin file not found"}

// permanentError is a sentinel for a condition that retrying cannot fix.
// Permanent lets the agent classify it (reconcile.Classify) without
// importing this package.
type permanentError struct{ msg string }

func (e *permanentError) Error() string   { return e.msg }
func (e *permanentError) Permanent() bool { return true }

// NotOnBranchError says a full SHA could not be found on the tracked branch,
// even after fetching the branch's whole history.
type NotOnBranchError struct {
	Commit string
	Branch string
	URL    string // redacted
	File   string // pin file that named the commit, if known
}

func (e *NotOnBranchError) Error() string {
	msg := fmt.Sprintf("commit %s is not on branch %s of %s", e.Commit, e.Branch, e.URL)
	if e.File != "" {
		msg = e.File + ": " + msg + "; check the SHA in `commit`, and that the commit was merged into " + e.Branch
	}
	return msg
}

func (e *NotOnBranchError) Is(target error) bool { return target == ErrCommitNotFound }

// Permanent is true: the same pin keeps naming a commit the branch lacks
// until someone changes the pin or merges the commit.
func (e *NotOnBranchError) Permanent() bool { return true }

// RefNotFoundError says a branch or tag name a pin uses does not exist on
// the remote.
type RefNotFoundError struct {
	Name string
	URL  string // redacted
	File string // pin file that named it, if known
}

func (e *RefNotFoundError) Error() string {
	msg := fmt.Sprintf("no branch or tag named %q on %s", e.Name, e.URL)
	if e.File != "" {
		msg = e.File + ": `commit`: " + msg + "; use an existing branch or tag name, or a full 40-hex commit SHA"
	}
	return msg
}

func (e *RefNotFoundError) Is(target error) bool { return target == ErrCommitNotFound }

// Permanent is true: the name stays missing until someone pushes it or
// changes the pin.
func (e *RefNotFoundError) Permanent() bool { return true }

// PinError is a problem with the content of a pin file. Line is 1-based, or
// 0 when the problem is not tied to a line (a missing key).
type PinError struct {
	File    string
	Key     string
	Line    int
	Message string
}

func (e *PinError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Message
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Message)
}

// Permanent is true: the pin file at this commit will not change by itself.
func (e *PinError) Permanent() bool { return true }

// PinErrors is every problem found in one pin file, so an operator fixes
// them in one go instead of one per deploy attempt.
type PinErrors []*PinError

func (es PinErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	msg := fmt.Sprintf("%d problems in pin file:", len(es))
	for _, e := range es {
		msg += "\n  " + e.Error()
	}
	return msg
}

// Permanent is true, as for each *PinError.
func (es PinErrors) Permanent() bool { return true }

// Unwrap lets errors.As find the individual *PinError values.
func (es PinErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// TreeError says a commit's tree holds something lockstep refuses to write
// as a release: a path that would escape the release directory, a symlink
// that is absolute or resolves outside it, a submodule, an unknown file
// mode. Msg names the path and what to do.
type TreeError struct {
	Path string // repo-relative path of the offending entry
	Msg  string
}

func (e *TreeError) Error() string { return e.Msg }

// Permanent is true: the commit's tree never changes; only a new commit can
// fix it.
func (e *TreeError) Permanent() bool { return true }
