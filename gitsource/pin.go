package gitsource

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// Pin is what a pin file says an environment runs.
type Pin struct {
	File         string            // repo-relative path it was read from
	Commit       string            // as written: a full 40-hex SHA, or a branch or tag name
	ComposeFiles []string          // optional compose_files, cleaned, repo-relative
	EnvFiles     []string          // optional env_files: dotenv files for interpolation, plain or age-encrypted (*.age), cleaned, repo-relative, in order
	Vars         map[string]string // optional [vars]
	Paused       bool
	// Windows are the pin's deploy windows: a new release of the
	// environment is applied only while one is open (and one of the host
	// config's, when it sets any). Empty: always.
	Windows []window.Window
}

// pinDoc mirrors the file; Commit is a pointer to tell "missing" from "".
type pinDoc struct {
	Commit       *string           `toml:"commit"`
	ComposeFiles []string          `toml:"compose_files"`
	EnvFiles     []string          `toml:"env_files"`
	Vars         map[string]string `toml:"vars"`
	Paused       bool              `toml:"paused"`
	Windows      []string          `toml:"windows"`
}

const allowedPinKeys = "allowed keys are commit, compose_files, env_files, paused, windows and the [vars] table"

var (
	hexOnly = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ParsePin parses a pin file strictly: unknown keys, a missing commit and
// values of the wrong type are errors naming the file, the key and the line.
// When the file decodes, every problem is reported at once (as PinErrors);
// errors.As with a *PinError finds the first one.
func ParsePin(file string, data []byte) (Pin, error) {
	var doc pinDoc
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err := dec.Decode(&doc)

	var problems PinErrors
	var strict *toml.StrictMissingError
	var decErr *toml.DecodeError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		for _, e := range strict.Errors {
			row, _ := e.Position()
			problems = append(problems, &PinError{
				File: file, Key: strings.Join(e.Key(), "."), Line: row,
				Message: "unknown key; " + allowedPinKeys,
			})
		}
	case errors.As(err, &decErr):
		row, _ := decErr.Position()
		key := strings.Join(decErr.Key(), ".")
		return Pin{}, PinErrors{{File: file, Key: key, Line: row, Message: typeMessage(key, decErr)}}
	default:
		return Pin{}, PinErrors{{File: file, Message: "not valid TOML: " + err.Error()}}
	}

	lines := keyLines(data)
	pin := Pin{File: file, Paused: doc.Paused, Vars: doc.Vars}

	if doc.Commit == nil {
		problems = append(problems, &PinError{File: file, Key: "commit",
			Message: `missing; set commit = "<full 40-hex SHA>", or a branch or tag name`})
	} else {
		pin.Commit = *doc.Commit
		if msg := checkCommit(pin.Commit); msg != "" {
			problems = append(problems, &PinError{File: file, Key: "commit", Line: lines["commit"], Message: msg})
		}
	}

	var msgs PinErrors
	pin.ComposeFiles, msgs = repoPaths(file, "compose_files", doc.ComposeFiles, lines,
		"is empty; list at least one compose file, or remove the key to use the default")
	problems = append(problems, msgs...)
	pin.EnvFiles, msgs = repoPaths(file, "env_files", doc.EnvFiles, lines,
		"is empty; list at least one env file, or remove the key")
	problems = append(problems, msgs...)

	pin.Windows, msgs = pinWindows(file, doc.Windows, lines)
	problems = append(problems, msgs...)

	for name := range doc.Vars {
		key := "vars." + name
		switch {
		case !varName.MatchString(name):
			problems = append(problems, &PinError{File: file, Key: key, Line: lines[key],
				Message: "is not a valid variable name; use letters, digits and _, not starting with a digit"})
		case strings.HasPrefix(name, "LOCKSTEP_"):
			problems = append(problems, &PinError{File: file, Key: key, Line: lines[key],
				Message: "the LOCKSTEP_ prefix is reserved for the variables lockstep sets itself; rename it"})
		}
	}

	if len(problems) > 0 {
		sortPinErrors(problems)
		return Pin{}, problems
	}
	return pin, nil
}

// repoPaths checks a list of repository files (compose_files, env_files):
// nil when the key is absent, else each path cleaned, inside the
// repository and listed once, in the order written.
func repoPaths(file, key string, list []string, lines map[string]int, emptyMsg string) ([]string, PinErrors) {
	if list == nil {
		return nil, nil
	}
	var problems PinErrors
	if len(list) == 0 {
		problems = append(problems, &PinError{File: file, Key: key, Line: lines[key],
			Message: emptyMsg})
	}
	var out []string
	seen := map[string]bool{}
	for i, f := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		line := lines[k]
		if line == 0 {
			line = lines[key]
		}
		clean, msg := checkRepoPath(f)
		if msg == "" && seen[clean] {
			msg = fmt.Sprintf("%q is listed twice", f)
		}
		if msg != "" {
			problems = append(problems, &PinError{File: file, Key: k, Line: line, Message: msg})
			continue
		}
		seen[clean] = true
		out = append(out, clean)
	}
	return out, problems
}

// pinWindows parses the windows key: every bad window is a problem of its
// own, naming the element and its line.
func pinWindows(file string, list []string, lines map[string]int) ([]window.Window, PinErrors) {
	if list == nil {
		return nil, nil
	}
	if len(list) == 0 {
		return nil, PinErrors{{File: file, Key: "windows", Line: lines["windows"],
			Message: fmt.Sprintf("is empty, which would never open; remove the key to deploy at any time, or list windows like %q", window.Example)}}
	}
	var out []window.Window
	var problems PinErrors
	for i, s := range list {
		k := fmt.Sprintf("windows[%d]", i)
		w, err := window.Parse(s)
		if err != nil {
			line := lines[k]
			if line == 0 {
				line = lines["windows"]
			}
			problems = append(problems, &PinError{File: file, Key: k, Line: line, Message: err.Error()})
			continue
		}
		out = append(out, w)
	}
	return out, problems
}

// checkCommit returns what is wrong with the commit value, or "".
func checkCommit(c string) string {
	switch {
	case strings.TrimSpace(c) == "":
		return `is empty; set a full 40-hex commit SHA, or a branch or tag name`
	case c != strings.TrimSpace(c):
		return fmt.Sprintf("%q has leading or trailing spaces; remove them", c)
	case len(c) == 40 && hexOnly.MatchString(c):
		return ""
	case hexOnly.MatchString(c) && len(c) >= 7 && len(c) < 40 && strings.ContainsAny(c, "0123456789"):
		// A name of only hex digits is, in practice, an abbreviated SHA.
		// Abbreviations are ambiguous as history grows and cannot be
		// fetched by SHA, so they are refused rather than guessed at.
		return fmt.Sprintf("%q looks like an abbreviated commit SHA; use the full 40-hex SHA (git rev-parse %s)", c, c)
	case hexOnly.MatchString(c) && len(c) > 40:
		return fmt.Sprintf("%q is not a SHA-1 commit id (%d hex digits, want 40)", c, len(c))
	}
	ref := c
	if !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + ref
	}
	if plumbing.ReferenceName(ref).Validate() != nil {
		return fmt.Sprintf("%q is neither a full 40-hex commit SHA nor a valid branch or tag name", c)
	}
	return ""
}

// checkRepoPath cleans a repository-relative slash path and says what is
// wrong with it, if anything.
func checkRepoPath(p string) (string, string) {
	switch {
	case strings.TrimSpace(p) == "":
		return "", "is empty; give a path relative to the repository root"
	case strings.HasPrefix(p, "/"):
		return "", fmt.Sprintf("%q is absolute; give a path relative to the repository root", p)
	case strings.Contains(p, `\`):
		return "", fmt.Sprintf("%q contains a backslash; use / to separate directories", p)
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Sprintf("%q points outside the repository; the file must be inside it", p)
	}
	if clean == "." {
		return "", fmt.Sprintf("%q is the repository root, not a file", p)
	}
	return clean, ""
}

// typeMessage turns a go-toml decode error into what the key must be.
func typeMessage(key string, e *toml.DecodeError) string {
	if !strings.Contains(e.Error(), "cannot decode") {
		return "not valid TOML: " + strings.TrimPrefix(e.Error(), "toml: ")
	}
	switch {
	case key == "commit":
		return `must be a string: a full 40-hex commit SHA, or a branch or tag name, in quotes`
	case key == "compose_files" || strings.HasPrefix(key, "compose_files"):
		return `must be an array of strings, e.g. ["deploy/compose.yaml"]`
	case key == "env_files" || strings.HasPrefix(key, "env_files"):
		return `must be an array of strings, e.g. ["secrets/production.env.age"]`
	case key == "windows" || strings.HasPrefix(key, "windows"):
		return `must be an array of strings, e.g. ["Mon-Fri 09:00-16:00 Europe/Berlin"]`
	case key == "paused":
		return "must be true or false (without quotes)"
	case key == "vars":
		return "must be a table ([vars]) of string values"
	case strings.HasPrefix(key, "vars."):
		return `must be a string; quote numbers and booleans (e.g. PORT = "8080")`
	}
	return strings.TrimPrefix(e.Error(), "toml: ")
}

// keyLines maps dotted keys (and compose_files[i]) to the line that sets
// them, for errors found after decoding. It only reads documents that
// already decoded, so parse errors cannot happen here and are ignored.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			it := e.Key()
			for it.Next() {
				table = append(table, string(it.Node().Data))
			}
		case unstable.KeyValue:
			key := append([]string{}, table...)
			line := 0
			it := e.Key()
			for it.Next() {
				n := it.Node()
				if line == 0 {
					line = p.Shape(n.Raw).Start.Line
				}
				key = append(key, string(n.Data))
			}
			name := strings.Join(key, ".")
			lines[name] = line
			if v := e.Value(); v.Kind == unstable.Array {
				elems := v.Children()
				for i := 0; elems.Next(); i++ {
					lines[fmt.Sprintf("%s[%d]", name, i)] = p.Shape(elems.Node().Raw).Start.Line
				}
			}
		}
	}
	return lines
}

// sortPinErrors orders problems by line, missing-key problems (line 0)
// last, so the report reads top to bottom like the file.
func sortPinErrors(es PinErrors) {
	order := func(e *PinError) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	slices.SortStableFunc(es, func(a, b *PinError) int {
		return cmp.Or(cmp.Compare(order(a), order(b)), strings.Compare(a.Key, b.Key))
	})
}
