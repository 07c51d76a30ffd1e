package config

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lineIndex maps the dotted path of every key and table header in a
// document ("repo.url", "environment.1.name", "environment.1") to the line
// it is on. The decoder only gives positions for the errors it finds itself;
// the index lets checks made after decoding point at a line too.
type lineIndex struct {
	lines map[string]int
	// tables holds the paths written as a [table] or [[array]] header, to
	// tell an unknown table from an unknown key.
	tables map[string]bool
	// arrayStarts holds, per array-of-tables path, the line of each
	// element's header, to find which element an error line belongs to.
	arrayStarts map[string][]int
}

// indexLines builds the index. A document that does not parse yields what
// was read up to the syntax error; the decoder reports the error itself.
func indexLines(data []byte) lineIndex {
	idx := lineIndex{lines: map[string]int{}, tables: map[string]bool{}, arrayStarts: map[string][]int{}}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		parts, line := keyOf(&p, e)
		switch e.Kind {
		case unstable.Table:
			table = parts
			path := strings.Join(parts, ".")
			idx.tables[path] = true
			idx.lines[path] = line
		case unstable.ArrayTable:
			base := strings.Join(parts, ".")
			n := len(idx.arrayStarts[base])
			idx.arrayStarts[base] = append(idx.arrayStarts[base], line)
			table = []string{base, strconv.Itoa(n)}
			path := base + "." + strconv.Itoa(n)
			idx.tables[base] = true
			idx.lines[path] = line
		case unstable.KeyValue:
			path := strings.Join(append(append([]string(nil), table...), parts...), ".")
			idx.lines[path] = line
		}
	}
	return idx
}

// keyOf returns the parts of an expression's key and the line its first
// part is on.
func keyOf(p *unstable.Parser, e *unstable.Node) ([]string, int) {
	var parts []string
	line := 0
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

// line returns the line of path, else of the closest enclosing table that
// is written in the file (a missing key is reported at its table), else 0.
func (x lineIndex) line(path string) int {
	for {
		if l, ok := x.lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// element returns which element of the array of tables at base the given
// line belongs to: the last one whose header is on or above it.
func (x lineIndex) element(base string, line int) (int, bool) {
	starts := x.arrayStarts[base]
	for i := len(starts) - 1; i >= 0; i-- {
		if starts[i] <= line {
			return i, true
		}
	}
	return 0, false
}
