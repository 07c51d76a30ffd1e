package compose

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/template"
)

// needs asks for the release paths a load reads or references, before it
// looks at them (LoadOptions.Need): a partial release (see gitsource's
// Releases.AddPaths) holds only what was asked for. Every read of the
// release in this package goes through need, so that what the loader
// uses and what is materialized come from the same code; Load then checks
// that every repository file the project uses was asked for.
type needs struct {
	releaseDir string
	fn         func(path string) error
	asked      map[string]bool
	env        map[string]string // interpolation environment, once known
}

func newNeeds(opts LoadOptions) *needs {
	return &needs{releaseDir: opts.ReleaseDir, fn: opts.Need, asked: map[string]bool{}}
}

// need asks for abs, when it is inside the release; a host path or a
// complete release (no Need) costs nothing.
func (n *needs) need(abs string) error {
	if n == nil || n.fn == nil || !within(n.releaseDir, abs) {
		return nil
	}
	r, _ := filepath.Rel(n.releaseDir, filepath.Clean(abs))
	rel := filepath.ToSlash(r)
	if n.asked[rel] {
		return nil
	}
	if err := n.fn(rel); err != nil {
		return &LoadError{File: rel, Msg: fmt.Sprintf("cannot materialize %s from git: %v", rel, err), Err: err}
	}
	n.asked[rel] = true
	return nil
}

// covered reports whether rel (release-relative, slash-separated) or a
// directory above it was asked for.
func (n *needs) covered(rel string) bool {
	if n == nil || n.fn == nil || n.asked["."] {
		return true
	}
	for p := rel; p != "." && p != "/" && p != ""; p = filepath.ToSlash(filepath.Dir(p)) {
		if n.asked[p] {
			return true
		}
	}
	return false
}

// expand interpolates a path the loader reads (include, extends.file,
// label_file) the way compose-go will, so that the file is asked for
// before compose-go reads it. ok is false when it cannot be expanded yet:
// compose-go then reports what is wrong.
func (n *needs) expand(value string) (string, bool) {
	if !hasVariable(value) {
		return value, true
	}
	if n == nil || n.env == nil {
		return "", false
	}
	out, err := template.Substitute(value, func(k string) (string, bool) {
		v, ok := n.env[k]
		return v, ok
	})
	if err != nil || strings.Contains(out, "$") {
		return "", false
	}
	return out, true
}

// checkCovered refuses a project that uses a repository file the load
// never asked for: with a partial release it would be missing on disk, so
// this is a bug in lockstep, reported as one rather than deployed.
func (n *needs) checkCovered(p *Project) error {
	if n == nil || n.fn == nil {
		return nil
	}
	for _, s := range p.Services {
		for _, f := range s.Files {
			if !n.covered(f.Path) && !filepath.IsAbs(f.Path) {
				return fmt.Errorf("load: service %q uses %s, which the loader did not materialize (a lockstep bug: please report it)", s.Name, f.Path)
			}
		}
	}
	return nil
}
