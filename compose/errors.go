package compose

import (
	"fmt"
	"strings"
)

// LoadError is a problem with a release's compose configuration that the
// operator has to fix in the repository (or in the pin file / host env
// files). It names where the problem is as precisely as lockstep can tell:
// the file (relative to the release when it lives there), the line, the
// service and the key.
//
// Load returns every configuration problem as a *LoadError so callers can
// classify it once (errors.As) as permanent: retrying the same commit cannot
// succeed.
type LoadError struct {
	File    string // compose/env file, release-relative when inside the release
	Line    int    // 1-based; 0 when unknown
	Service string
	Key     string // dotted key path ("ports", "deploy.update_config.parallelism")
	Msg     string // what is wrong; what to do
	Err     error  // underlying error, if any
}

// Error prints `file:line: service "x": key: message; what to do`, leaving
// out the parts that are unknown.
func (e *LoadError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Service != "" {
		fmt.Fprintf(&b, "service %q: ", e.Service)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *LoadError) Unwrap() error { return e.Err }

// Permanent is true: the release is immutable, so loading it again fails
// the same way until the pin or the host's env files change.
func (e *LoadError) Permanent() bool { return true }
