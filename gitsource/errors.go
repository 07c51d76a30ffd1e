package gitsource

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

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

// HostKeyError says an SSH server's host key was refused: the known_hosts
// file has no entry for the host, holds other keys for it, or marks the key
// @revoked. lockstep never adds or replaces known_hosts entries (no trust on
// first use), so only an operator who checked the key out of band can fix
// it; the file is read again on every connection.
type HostKeyError struct {
	Host        string   // host:port as dialed, e.g. "git.example.com:2222"
	KnownHosts  string   // the known_hosts file checked
	Offered     string   // type of the key the server presented, e.g. "ssh-ed25519"
	Fingerprint string   // SHA256 fingerprint of that key
	Known       []string // keys known_hosts holds for the host: "ssh-ed25519 SHA256:... (line 3)"
	RevokedLine int      // line of the @revoked entry matching the key, if that is why
}

func (e *HostKeyError) Error() string {
	offered := fmt.Sprintf("the server offered an %s key %s", e.Offered, e.Fingerprint)
	const never = "lockstep never trusts a host key on first use and never updates known_hosts itself"
	switch {
	case e.RevokedLine > 0:
		return fmt.Sprintf("ssh host key of %s refused: %s, which known_hosts file %s marks @revoked (line %d); %s",
			e.Host, offered, e.KnownHosts, e.RevokedLine, never)
	case len(e.Known) == 0:
		return fmt.Sprintf("ssh host key of %s refused: known_hosts file %s has no entry for it (%s); %s. Check that key out of band and add it to the file: %s",
			e.Host, e.KnownHosts, entryName(e.Host), offered, never)
	default:
		return fmt.Sprintf("ssh host key of %s does not match known_hosts file %s: %s, but the file holds %s for it. The server may be impersonated, or its key was rotated: check the new key out of band and replace the entry yourself; %s",
			e.Host, e.KnownHosts, offered, strings.Join(e.Known, ", "), never)
	}
}

// HostKeyError has no Permanent method on purpose: it needs a human, but
// the fix is an edit of the local known_hosts file, not a new commit, and
// the agent waits for the branch to move after a permanent failure. Left
// transient, the capped backoff picks up the corrected file by itself.

// entryName is how known_hosts writes host:port ("[host]:port", or just
// host for port 22), so the message says exactly what to look for.
func entryName(hostWithPort string) string { return knownhosts.Normalize(hostWithPort) }

// newHostKeyError turns a refusal from x/crypto's known_hosts check into a
// *HostKeyError; other failures (a certificate problem) are wrapped as is.
func newHostKeyError(file, host string, key ssh.PublicKey, err error) error {
	e := &HostKeyError{Host: host, KnownHosts: file, Offered: key.Type(), Fingerprint: ssh.FingerprintSHA256(key)}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &revoked):
		e.RevokedLine = revoked.Revoked.Line
	case errors.As(err, &keyErr):
		for _, k := range keyErr.Want {
			e.Known = append(e.Known, fmt.Sprintf("%s %s (line %d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Line))
		}
	default:
		return fmt.Errorf("check ssh host key of %s (%s %s) against known_hosts file %s: %w", host, e.Offered, e.Fingerprint, file, err)
	}
	return e
}
