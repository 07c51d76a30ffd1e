package engine

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
)

// factCache remembers, per project and container, the inspect facts that
// hold as long as a running container keeps its endpoints (see Observe),
// so a pass over a converged project lists its containers and inspects
// none. In memory it serves the agent's passes; with a directory it also
// serves the next `lockstep apply`, a new process each time.
//
// A lost, stale or corrupt file costs inspects, never a wrong fact: an
// entry is used only while the container's endpoint IDs are the ones it
// was recorded under.
type factCache struct {
	mu        sync.Mutex
	dir       string // "" keeps the facts in memory only
	byProject map[string]map[string]inspectFacts
}

func newFactCache() *factCache {
	return &factCache{byProject: map[string]map[string]inspectFacts{}}
}

// safeProject is what may name a file: compose's project names.
var safeProject = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (f *factCache) path(project string) string {
	if f.dir == "" || !safeProject.MatchString(project) {
		return ""
	}
	return filepath.Join(f.dir, project+".json")
}

// load returns a copy of what is remembered for project's containers.
func (f *factCache) load(project string) map[string]inspectFacts {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.byProject[project]; ok {
		return maps.Clone(m)
	}
	m := map[string]inspectFacts{}
	if p := f.path(project); p != "" {
		if b, err := os.ReadFile(p); err == nil {
			if json.Unmarshal(b, &m) != nil {
				m = map[string]inspectFacts{}
			}
		}
	}
	f.byProject[project] = m
	return maps.Clone(m)
}

// store replaces what is remembered for project (the containers listed
// now: those gone are forgotten), writing the file only when it changed.
// A write that fails is ignored: the next process inspects again.
func (f *factCache) store(project string, m map[string]inspectFacts) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.byProject[project]; ok && maps.EqualFunc(old, m, sameFacts) {
		return
	}
	f.byProject[project] = maps.Clone(m)
	p := f.path(project)
	if p == "" {
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return
	}
	// Another process may write the same file: a rename is atomic, and
	// whichever lands last is a correct set of facts too.
	tmp, err := os.CreateTemp(f.dir, "."+project+"-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), p) != nil {
		os.Remove(tmp.Name())
	}
}

func sameFacts(a, b inspectFacts) bool {
	return a.Key == b.Key && a.RestartCount == b.RestartCount &&
		maps.EqualFunc(a.Aliases, b.Aliases, slices.Equal[[]string])
}
