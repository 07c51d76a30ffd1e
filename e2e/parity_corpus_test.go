package e2e

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// parityStack is one stack of the corpus: e2e/testdata/parity/<name>/,
// its compose.yaml opening with "# source:" lines (repository, path,
// commit it was taken from) and "# rewrite:" lines (what was changed so
// it runs here, and why).
type parityStack struct {
	name     string
	source   []string
	rewrites []string
	files    map[string]string // path in the stack -> content
}

// parityCorpusDir is the corpus, next to this file.
func parityCorpusDir(t *testing.T) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "testdata", "parity")
}

func loadParityCorpus(t *testing.T) []parityStack {
	t.Helper()
	root := parityCorpusDir(t)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatalf("parity corpus: %v", err)
	}
	var out []parityStack
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st := parityStack{name: e.Name(), files: map[string]string{}}
		dir := filepath.Join(root, e.Name())
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			st.files[filepath.ToSlash(rel)] = string(b)
			return nil
		})
		if err != nil {
			t.Fatalf("parity corpus %s: %v", e.Name(), err)
		}
		y, ok := st.files["compose.yaml"]
		if !ok {
			t.Fatalf("parity corpus %s: no compose.yaml", e.Name())
		}
		for _, line := range strings.Split(y, "\n") {
			if s, ok := strings.CutPrefix(line, "# source: "); ok {
				st.source = append(st.source, s)
			}
			if s, ok := strings.CutPrefix(line, "# rewrite: "); ok {
				st.rewrites = append(st.rewrites, s)
			}
		}
		if len(st.source) == 0 {
			t.Fatalf("parity corpus %s: compose.yaml has no \"# source:\" line saying where it comes from", e.Name())
		}
		out = append(out, st)
	}
	return out
}

// registryImage matches the images of the corpus: every image was
// rewritten to ${REGISTRY}/<original repository>[:<original tag>], which
// the suite serves as the test application.
var registryImage = regexp.MustCompile(`\$\{REGISTRY\}/([a-z0-9._/-]+)(?::([A-Za-z0-9._-]+))?`)

// parityImages lists repo:tag of every image the corpus names.
func parityImages(stacks []parityStack) []string {
	set := map[string]bool{}
	for _, st := range stacks {
		for _, content := range st.files {
			for _, m := range registryImage.FindAllStringSubmatch(content, -1) {
				tag := m[2]
				if tag == "" {
					tag = "latest"
				}
				set[m[1]+":"+tag] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stackEnv is the .env both tools interpolate the stack with: the
// stack's own .env, then the values only this run can know. Host ports
// and container or network names the stacks fix were rewritten to these
// variables, so stacks (and other tests on the shared engine) never
// collide.
func stackEnv(t *testing.T, st parityStack, registry, project, scratch string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(st.files[".env"])
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "REGISTRY=%s\nNAME_PREFIX=%s-\nSCRATCH_DIR=%s\n", registry, project, scratch)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "PORT_%d=%d\n", i, freeHostPort(t))
	}
	return b.String()
}

// freeHostPort asks the kernel for a free TCP port. The stack publishes it a
// moment later; on a shared machine another process could take it first,
// which fails the deploy loudly rather than silently.
func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeStack writes the stack's files and env into dir.
func writeStack(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
