package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// HealthyRevision is a revision of an environment that passed the health
// gate (or was found converged and healthy), with everything needed to
// apply it again without git: the release directory on disk and the pin's
// compose_files, vars and env_files as they were (paths only: an
// encrypted env file is decrypted again from the release when applied). It is what a rollback goes back to.
type HealthyRevision struct {
	Commit       string            `json:"commit"`
	Head         string            `json:"head,omitempty"`
	ReleaseDir   string            `json:"release_dir"`
	PinFile      string            `json:"pin_file,omitempty"`
	ComposeFiles []string          `json:"compose_files,omitempty"`
	Vars         map[string]string `json:"vars,omitempty"`
	EnvFiles     []string          `json:"env_files,omitempty"`
	At           time.Time         `json:"at"`
}

// Revision is hr as a pass applies it. It is never paused: a rollback is
// an operator's or the gate's decision, not the pin's.
func (hr HealthyRevision) Revision() Revision {
	return Revision{
		Head: hr.Head, Commit: hr.Commit, ReleaseDir: hr.ReleaseDir, PinFile: hr.PinFile,
		ComposeFiles: slices.Clone(hr.ComposeFiles), Vars: maps.Clone(hr.Vars), EnvFiles: slices.Clone(hr.EnvFiles),
	}
}

func healthyOf(rev Revision, at time.Time) HealthyRevision {
	return HealthyRevision{
		Commit: rev.Commit, Head: rev.Head, ReleaseDir: rev.ReleaseDir, PinFile: rev.PinFile,
		ComposeFiles: slices.Clone(rev.ComposeFiles), Vars: maps.Clone(rev.Vars), EnvFiles: slices.Clone(rev.EnvFiles), At: at.UTC(),
	}
}

// healthyKept is how many healthy revisions are remembered per
// environment: a manual rollback from the last healthy one goes to the one
// before it.
const healthyKept = 5

func healthyPath(stateDir, env string) string {
	return filepath.Join(stateDir, "environments", env, "healthy.json")
}

// loadHealthy reads env's healthy revisions, newest first. A missing file
// is an empty list.
func loadHealthy(stateDir, env string) ([]HealthyRevision, error) {
	var list []HealthyRevision
	if err := readState(healthyPath(stateDir, env), stateDir, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// pushHealthy returns list with hr as the newest healthy revision (moved
// to the front if it was there already), bounded to healthyKept.
func pushHealthy(list []HealthyRevision, hr HealthyRevision) []HealthyRevision {
	out := []HealthyRevision{hr}
	for _, old := range list {
		if old.Commit != hr.Commit && len(out) < healthyKept {
			out = append(out, old)
		}
	}
	return out
}

func saveHealthy(stateDir, env string, list []HealthyRevision) error {
	return writeState(healthyPath(stateDir, env), stateDir, list)
}

// rollbackTarget is the newest healthy revision that is not commit, the
// one being left.
func rollbackTarget(list []HealthyRevision, commit string) (HealthyRevision, bool) {
	for _, hr := range list {
		if hr.Commit != commit {
			return hr, true
		}
	}
	return HealthyRevision{}, false
}

// Quarantine is a commit the agent does not apply to an environment until
// the pin names a different commit or an operator runs `lockstep retry`.
type Quarantine struct {
	Commit  string    `json:"commit"`
	Service string    `json:"service,omitempty"` // the service that failed the gate
	Reason  string    `json:"reason"`
	Manual  bool      `json:"manual,omitempty"` // held by `lockstep rollback`, not by a failure
	At      time.Time `json:"at"`
}

func quarantinePath(stateDir, env string) string {
	return filepath.Join(stateDir, "environments", env, "quarantine.json")
}

func loadQuarantine(stateDir, env string) ([]Quarantine, error) {
	var list []Quarantine
	if err := readState(quarantinePath(stateDir, env), stateDir, &list); err != nil {
		return nil, err
	}
	return list, nil
}

func saveQuarantine(stateDir, env string, list []Quarantine) error {
	if list == nil {
		list = []Quarantine{}
	}
	return writeState(quarantinePath(stateDir, env), stateDir, list)
}

func quarantined(list []Quarantine, commit string) (Quarantine, bool) {
	for _, q := range list {
		if q.Commit == commit && commit != "" {
			return q, true
		}
	}
	return Quarantine{}, false
}

func quarantinedCommits(list []Quarantine) []string {
	var out []string
	for _, q := range list {
		out = append(out, q.Commit)
	}
	return out
}

// readState decodes a JSON state file into v; a missing file (or no state
// dir) leaves v as it is.
func readState(path, stateDir string, v any) error {
	if stateDir == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w (delete it to start over)", path, err)
	}
	return nil
}

// writeState writes v as JSON atomically; with no state dir it does nothing.
func writeState(path, stateDir string, v any) error {
	if stateDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
