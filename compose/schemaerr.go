package compose

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

var (
	// compose-go's schema says "additional properties 'foo', 'bar' not
	// allowed" of keys a mapping may not hold.
	additionalRE = regexp.MustCompile(`^additional propert(?:y|ies) ((?:'[^']*'(?:, )?)+) not allowed`)
	quotedRE     = regexp.MustCompile(`'([^']*)'`)
)

// schemaError is composeError for a schema violation. detail is what
// compose-go says after "validating <file>:": the dotted key path first,
// or nothing for the top level ("validating compose.yaml:  additional
// properties 'foo' not allowed"). The error points at the offending key's
// line: an unknown key itself, not the mapping that holds it.
func schemaError(src *sources, file, detail string, err error) *LoadError {
	le := &LoadError{File: file, Err: err}
	var path []string
	if k := keyPathRE.FindStringSubmatch(detail); k != nil && !additionalRE.MatchString(detail) {
		path = src.keyPath(k[1])
		detail = strings.TrimPrefix(detail, k[1])
	}
	detail = strings.TrimSpace(detail)
	if m := additionalRE.FindStringSubmatch(detail); m != nil {
		var keys []string
		for _, q := range quotedRE.FindAllStringSubmatch(m[1], -1) {
			keys = append(keys, q[1])
		}
		// compose-go sorts them; the first one written is pointed at.
		first, firstLine := 0, 0
		for i, k := range keys {
			if _, line := src.findPath(append(slices.Clip(path), k)); line > 0 && (firstLine == 0 || line < firstLine) {
				first, firstLine = i, line
			}
		}
		path = append(path, keys[first])
		keys = slices.Delete(keys, first, first+1)
		detail = "not a compose key"
		if len(keys) > 0 {
			detail += " (nor are " + strings.Join(keys, ", ") + ")"
		}
	}
	if detail == "false schema" {
		// The schema's other way of saying "additional property".
		detail = "not a compose key"
	}
	le.Msg = detail + "; check the spelling against the compose specification"
	if len(path) == 0 {
		return le
	}
	le.Key = strings.Join(path, ".")
	if f, line := src.findPath(path); line > 0 {
		le.File, le.Line = f, line
	}
	if len(path) >= 3 && path[0] == "services" {
		le.Service, le.Key = path[1], strings.Join(path[2:], ".")
	}
	return le
}

// keyPath splits a dotted key path as compose-go prints it into the keys
// it names in the YAML, where a key may hold dots itself (a service named
// "my.app"): at each mapping the longest run of segments that is one of
// its keys is taken. A path no file holds is split at every dot.
func (s *sources) keyPath(dotted string) []string {
	segs := strings.Split(dotted, ".")
	for i := len(s.files) - 1; i >= 0; i-- {
		for _, doc := range s.files[i].docs {
			if p := splitAlong(docRoot(doc), segs); p != nil {
				return p
			}
		}
	}
	return segs
}

// splitAlong is keyPath within one document; nil when n does not hold
// the whole path.
func splitAlong(n *yaml.Node, segs []string) []string {
	var out []string
	for len(segs) > 0 {
		key, next := "", (*yaml.Node)(nil)
		switch {
		case n == nil:
			return nil
		case n.Kind == yaml.SequenceNode:
			i, err := strconv.Atoi(segs[0])
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil
			}
			key, next = segs[0], n.Content[i]
			segs = segs[1:]
		default:
			for j := len(segs); j > 0 && next == nil; j-- {
				key = strings.Join(segs[:j], ".")
				if _, v := mapEntry(n, key); v != nil {
					next, segs = v, segs[j:]
				}
			}
			if next == nil {
				return nil
			}
		}
		out, n = append(out, key), next
	}
	return out
}

// findPath is find for a path that may go through sequences (ports.0):
// the file and line of its last key or item, in the last file that has
// it.
func (s *sources) findPath(path []string) (string, int) {
	for i := len(s.files) - 1; i >= 0; i-- {
		f := s.files[i]
		for _, doc := range f.docs {
			if line := lineOf(docRoot(doc), path); line > 0 {
				return f.rel, line
			}
		}
	}
	return "", 0
}

func lineOf(n *yaml.Node, path []string) int {
	line := 0
	for _, k := range path {
		switch {
		case n == nil:
			return 0
		case n.Kind == yaml.SequenceNode:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(n.Content) {
				return 0
			}
			n = n.Content[i]
			line = n.Line
		default:
			var key *yaml.Node
			if key, n = mapEntry(n, k); key == nil {
				return 0
			}
			line = key.Line
		}
	}
	return line
}
