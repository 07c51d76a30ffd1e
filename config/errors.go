package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Key locates the problem in TOML terms: "state_dir", "[repo].url",
	// "[[environment]][1].project", or a table such as "[repo]".
	Key string
	// Line is the 1-based line the problem is on, 0 when there is none
	// (a required key that is missing from a file without its table).
	Line int
	Msg  string
}

// Error is a config file that cannot be used, with every problem found in
// it. Problems are in file order; those without a line come last.
type Error struct {
	Path     string
	Problems []Problem
}

// Error prints one problem per line, prefixed with the file and line the
// way compilers do, so editors and grep can jump to it:
//
//	/etc/lockstep/lockstep.toml:7: [repo].poll_interval: must be at least 1s, got "500ms"
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Path)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Key != "" {
			b.WriteString(p.Key)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// sortProblems puts problems in file order, keeping the order they were
// found in for those on the same line, and those without a line last.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
