package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// sources is the raw text of every compose file a load reads (the main
// files, local includes and extends files), parsed into YAML node trees.
//
// compose-go works on maps and loses positions, so this is where lockstep
// gets file and line numbers for its errors. Reading the raw files first
// also lets it refuse what must never be loaded before compose-go touches
// it: remote includes, and includes, extends files or relative paths that
// climb out of the release with "..".
type sources struct {
	releaseDir string
	needs      *needs        // asks for each file before it is read
	files      []*sourceFile // main files first, in order; then includes/extends as met
}

type sourceFile struct {
	abs   string
	rel   string // release-relative, slash-separated, for messages
	base  string // directory relative paths in this file resolve against
	docs  []*yaml.Node
	lines []string
}

// scanSources parses files (absolute, inside the release) and, recursively,
// the local files they include or extend.
func scanSources(releaseDir string, files []string, n *needs) (*sources, error) {
	s := &sources{releaseDir: releaseDir, needs: n}
	for _, f := range files {
		// The main files' relative paths resolve against the project
		// directory (the release root), as compose does.
		if err := s.scan(f, releaseDir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *sources) scan(abs, base string) error {
	for _, f := range s.files {
		if f.abs == abs {
			return nil // diamond includes, or an extends file met twice
		}
	}
	if err := s.needs.need(abs); err != nil {
		return err
	}
	if st, err := os.Stat(abs); err == nil && st.Size() > gitsource.MaxComposeFileBytes {
		le := &gitsource.LimitError{Path: s.rel(abs), What: "compose file", Size: st.Size(), Limit: gitsource.MaxComposeFileBytes, Unit: "bytes"}
		return &LoadError{File: s.rel(abs), Msg: strings.TrimPrefix(le.Error(), s.rel(abs)+": "), Err: le}
	}
	content, err := os.ReadFile(abs)
	if err != nil {
		return &LoadError{File: s.rel(abs), Msg: fmt.Sprintf("cannot read compose file: %v; check the path exists at this commit", err), Err: err}
	}
	f := &sourceFile{abs: abs, rel: s.rel(abs), base: base, lines: strings.Split(string(content), "\n")}
	dec := yaml.NewDecoder(bytes.NewReader(content))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			return &LoadError{File: f.rel, Line: lineFromMessage(msg), Msg: "invalid YAML: " + msg + "; fix the syntax", Err: err}
		}
		f.docs = append(f.docs, &doc)
	}
	s.files = append(s.files, f)

	for _, doc := range f.docs {
		root := docRoot(doc)
		if root == nil {
			continue
		}
		if err := s.scanIncludes(f, mapValue(root, "include")); err != nil {
			return err
		}
		if err := s.scanServices(f, mapValue(root, "services")); err != nil {
			return err
		}
		for _, kind := range []string{"configs", "secrets"} {
			objs := mapValue(root, kind)
			for i := 0; objs != nil && objs.Kind == yaml.MappingNode && i+1 < len(objs.Content); i += 2 {
				if file := mapValue(objs.Content[i+1], "file"); file != nil {
					if err := s.checkInside(f, file, kind+"."+objs.Content[i].Value+".file", ""); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func (s *sources) scanIncludes(f *sourceFile, inc *yaml.Node) error {
	if inc == nil || inc.Kind != yaml.SequenceNode {
		return nil
	}
	for _, item := range inc.Content {
		var paths []*yaml.Node
		projectDir := ""
		switch item.Kind {
		case yaml.ScalarNode:
			paths = []*yaml.Node{item}
		case yaml.MappingNode:
			p := mapValue(item, "path")
			if p != nil && p.Kind == yaml.SequenceNode {
				paths = p.Content
			} else if p != nil {
				paths = []*yaml.Node{p}
			}
			if pd := mapValue(item, "project_directory"); pd != nil {
				if err := s.checkRead(f, pd, "include.project_directory", ""); err != nil {
					return err
				}
				if v, ok := s.needs.expand(pd.Value); ok && !filepath.IsAbs(v) {
					projectDir = filepath.Join(f.base, v)
				}
			}
			if ef := mapValue(item, "env_file"); ef != nil {
				for _, n := range scalarOrList(ef) {
					if err := s.checkRead(f, n, "include.env_file", ""); err != nil {
						return err
					}
					if err := s.needRelative(f, n.Value); err != nil {
						return err
					}
				}
			}
		}
		for i, p := range paths {
			if isRemote(p.Value) {
				return &LoadError{File: f.rel, Line: p.Line, Key: "include", Msg: fmt.Sprintf("remote include %q refused: lockstep never loads compose files from outside the repository; vendor the file into the repository and include it by relative path", gitsource.RedactURL(p.Value))}
			}
			if err := s.checkRead(f, p, "include", ""); err != nil {
				return err
			}
			abs, ok := s.needs.expand(p.Value)
			if !ok {
				continue
			}
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(f.base, abs)
			}
			base := projectDir
			if base == "" {
				base = filepath.Dir(abs)
				if first, ok := s.needs.expand(paths[0].Value); ok && i > 0 {
					base = filepath.Dir(filepath.Join(f.base, first))
				}
			}
			// compose-go reads the included project's .env when no
			// env_file is given.
			if err := s.needs.need(filepath.Join(base, ".env")); err != nil {
				return err
			}
			if err := s.scan(abs, base); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sources) scanServices(f *sourceFile, services *yaml.Node) error {
	if services == nil || services.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(services.Content); i += 2 {
		name, svc := services.Content[i].Value, services.Content[i+1]
		if svc.Kind != yaml.MappingNode {
			continue
		}
		if ext := mapValue(svc, "extends"); ext != nil && ext.Kind == yaml.MappingNode {
			if file := mapValue(ext, "file"); file != nil {
				if isRemote(file.Value) {
					return &LoadError{File: f.rel, Line: file.Line, Service: name, Key: "extends.file", Msg: "remote extends refused: lockstep never loads compose files from outside the repository; vendor the file into the repository"}
				}
				if err := s.checkRead(f, file, "extends.file", name); err != nil {
					return err
				}
				if abs, ok := s.needs.expand(file.Value); ok {
					if !filepath.IsAbs(abs) {
						abs = filepath.Join(f.base, abs)
					}
					if err := s.scan(abs, filepath.Dir(abs)); err != nil {
						return err
					}
				}
			}
		}
		if vols := mapValue(svc, "volumes"); vols != nil && vols.Kind == yaml.SequenceNode {
			for _, v := range vols.Content {
				var src *yaml.Node
				switch v.Kind {
				case yaml.ScalarNode:
					// Short syntax: only sources that look like paths are
					// binds; anything else names a volume.
					head, _, found := strings.Cut(v.Value, ":")
					if found && (strings.HasPrefix(head, ".") || strings.HasPrefix(head, "/")) {
						src = &yaml.Node{Value: head, Line: v.Line}
					}
				case yaml.MappingNode:
					if t := mapValue(v, "type"); t != nil && t.Value == "bind" {
						src = mapValue(v, "source")
					}
				}
				if src != nil {
					if err := s.checkInside(f, src, "volumes", name); err != nil {
						return err
					}
				}
			}
		}
		for _, key := range []string{"env_file", "label_file"} {
			if ef := mapValue(svc, key); ef != nil {
				for _, n := range scalarOrList(ef) {
					if n.Kind == yaml.MappingNode {
						n = mapValue(n, "path")
					}
					if n != nil {
						if err := s.checkRead(f, n, key, name); err != nil {
							return err
						}
						// compose-go reads a label_file while loading;
						// an env_file is asked for where lockstep reads it.
						if key == "label_file" {
							if err := s.needRelative(f, n.Value); err != nil {
								return err
							}
						}
					}
				}
			}
		}
	}
	return nil
}

// checkInside refuses a relative path that climbs out of the release. An
// absolute path is a host path, allowed here (policy decides later); a
// path built from variables cannot be judged before interpolation and is
// checked after loading, where it can only be told apart from a host path
// when it lands inside the release.
func (s *sources) checkInside(f *sourceFile, n *yaml.Node, key, service string) error {
	p := n.Value
	if p == "" || filepath.IsAbs(p) || hasVariable(p) || strings.HasPrefix(p, "~") {
		return nil
	}
	if !within(s.releaseDir, filepath.Join(f.base, p)) {
		return &LoadError{File: f.rel, Line: n.Line, Service: service, Key: key,
			Msg: fmt.Sprintf("path %q escapes the release directory; only files of the repository can be referenced by relative path, use an absolute host path if the file lives on the host", p)}
	}
	return nil
}

// checkRead is checkInside for the paths the loader itself reads (include,
// extends.file, env_file, label_file): those must be files of the
// repository, absolute or not. A compose file from git naming /dev/zero or
// /etc/shadow there would otherwise make the agent read it; values that
// live on the host belong in the agent config's env_files.
func (s *sources) checkRead(f *sourceFile, n *yaml.Node, key, service string) error {
	if err := s.checkInside(f, n, key, service); err != nil {
		return err
	}
	p := n.Value
	if key == "env_file" {
		// Read by lockstep itself after loading, where a host path is
		// judged once it is interpolated (see hostEnvFile).
		return nil
	}
	if filepath.IsAbs(p) && !hasVariable(p) && !within(s.releaseDir, filepath.Clean(p)) {
		return &LoadError{File: f.rel, Line: n.Line, Service: service, Key: key,
			Msg: fmt.Sprintf("host path %q refused: lockstep reads only files of the repository while loading; reference the file by relative path, or put host-local values in the agent config's env_files", p)}
	}
	return nil
}

// needRelative asks for a path the loader reads, written in f (relative
// to f's base), once it can be expanded.
func (s *sources) needRelative(f *sourceFile, value string) error {
	v, ok := s.needs.expand(value)
	if !ok || v == "" {
		return nil
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(f.base, v)
	}
	return s.needs.need(v)
}

func (s *sources) rel(abs string) string {
	if r, err := filepath.Rel(s.releaseDir, abs); err == nil && within(s.releaseDir, abs) {
		return filepath.ToSlash(r)
	}
	return abs
}

// find returns the file and line where the key path (e.g. "services",
// "web", "build") is written, preferring the last file that sets it (the
// one whose value wins in compose's merge). ("", 0) when not found.
func (s *sources) find(path ...string) (string, int) {
	for i := len(s.files) - 1; i >= 0; i-- {
		f := s.files[i]
		for _, doc := range f.docs {
			n := docRoot(doc)
			var keyNode *yaml.Node
			for _, k := range path {
				if n == nil {
					break
				}
				keyNode, n = mapEntry(n, k)
			}
			if n != nil && keyNode != nil {
				return f.rel, keyNode.Line
			}
		}
	}
	return "", 0
}

// findVariable returns the first file and line that reference the variable
// name as $NAME or ${NAME...}, skipping escaped $$NAME.
func (s *sources) findVariable(name string) (string, int) {
	re := variableRef(name)
	for _, f := range s.files {
		for i, line := range f.lines {
			if re.MatchString(line) {
				return f.rel, i + 1
			}
		}
	}
	return "", 0
}

func docRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	return doc
}

// mapEntry returns the key and value nodes of key in mapping n.
func mapEntry(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	_, v := mapEntry(n, key)
	return v
}

func scalarOrList(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return []*yaml.Node{n}
}

func hasVariable(s string) bool { return strings.Contains(s, "$") }

// isRemote tells the references compose would hand to a remote resource
// loader (git, OCI, HTTP) from local paths.
func isRemote(p string) bool {
	return strings.Contains(p, "://") || strings.HasPrefix(p, "git@") || strings.HasPrefix(p, "oci:")
}

// within reports whether path is dir or inside it (lexically).
func within(dir, path string) bool {
	r, err := filepath.Rel(dir, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, "../") && !filepath.IsAbs(r)
}

var lineRE = regexp.MustCompile(`\bline (\d+):?\s*`)

func lineFromMessage(msg string) int {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
