package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Deployed records what the last successful apply of an environment left
// running: the revision and the replicas of each service. It is what lets a
// plan tell "removed by hand" from "added by this release", since containers
// a release leaves untouched keep the commit label of the release that
// created them.
type Deployed struct {
	Commit   string         `json:"commit"`
	Project  string         `json:"project"`
	Replicas map[string]int `json:"replicas"`
	At       time.Time      `json:"at"`
}

func deployedOf(p *compose.Project, at time.Time) *Deployed {
	d := &Deployed{Commit: p.Commit, Project: p.Name, Replicas: map[string]int{}, At: at.UTC()}
	for _, s := range p.Services {
		if s.Replicas > 0 {
			d.Replicas[s.Name] = s.Replicas
		}
	}
	return d
}

// same reports whether d records the same deployment as o (ignoring when).
func (d *Deployed) same(o *Deployed) bool {
	if d == nil || o == nil || d.Commit != o.Commit || d.Project != o.Project || len(d.Replicas) != len(o.Replicas) {
		return false
	}
	for k, v := range d.Replicas {
		if o.Replicas[k] != v {
			return false
		}
	}
	return true
}

func deployedPath(stateDir, env string) string {
	return filepath.Join(stateDir, "environments", env, "deployed.json")
}

// loadDeployed reads the record of env; a missing or unreadable record is
// "unknown" (nil): the plan then falls back to what the engine shows, so a
// deleted state dir costs precision in wording, never correctness.
func loadDeployed(stateDir, env, project string) (*Deployed, error) {
	if stateDir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(deployedPath(stateDir, env))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d Deployed
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", deployedPath(stateDir, env), err)
	}
	if d.Project != project {
		return nil, nil // the environment was moved to another project: the record says nothing about it
	}
	return &d, nil
}

// saveDeployed writes the record atomically: a kill -9 at any instant
// leaves the old record or the new one, never a torn file.
func saveDeployed(stateDir, env string, d *Deployed) error {
	if stateDir == "" {
		return nil
	}
	path := deployedPath(stateDir, env)
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes data to a temp file beside path, syncs it, renames
// it over path and syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
