package state

import (
	"maps"
	"slices"
	"time"

	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Deployed returns the record of what the last apply of env left running;
// nil when there is none, or when it is of another project (the
// environment was moved: the record says nothing about the new one).
func (s *Store) Deployed(env, project string) (*reconcile.Deployed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d *reconcile.Deployed
	if err := s.readJSON(path(env, "deployed.json"), &d); err != nil {
		return nil, err
	}
	if d == nil || d.Project != project {
		return nil, nil
	}
	return d, nil
}

// SaveDeployed records d as what runs for env. An equal record (ignoring
// when) is not written again: a no-op pass writes nothing.
func (s *Store) SaveDeployed(env string, d *reconcile.Deployed) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old *reconcile.Deployed
	if err := s.readJSON(path(env, "deployed.json"), &old); err == nil && old.Same(d) {
		return nil
	}
	return s.writeJSON(path(env, "deployed.json"), d)
}

// HealthyRevision is a revision of an environment that passed the health
// gate (or was found converged and healthy), with everything needed to
// apply it again without git: the release directory on disk and the pin's
// compose_files, vars and env_files as they were (paths only: an encrypted
// env file is decrypted again from the release when applied). It is what a
// rollback goes back to.
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

// HealthyOf is rel as a healthy revision found at at.
func HealthyOf(rel gitsource.Release, at time.Time) HealthyRevision {
	return HealthyRevision{
		Commit: rel.Commit, Head: rel.Head, ReleaseDir: rel.Dir, PinFile: rel.PinFile,
		ComposeFiles: slices.Clone(rel.ComposeFiles), Vars: maps.Clone(rel.Vars), EnvFiles: slices.Clone(rel.EnvFiles), At: at.UTC(),
	}
}

// Release is hr as a pass applies it again. It is never paused: a
// rollback is an operator's or the gate's decision, not the pin's.
func (hr HealthyRevision) Release() gitsource.Release {
	return gitsource.Release{
		Head: hr.Head, Commit: hr.Commit, Dir: hr.ReleaseDir, PinFile: hr.PinFile,
		ComposeFiles: slices.Clone(hr.ComposeFiles), Vars: maps.Clone(hr.Vars), EnvFiles: slices.Clone(hr.EnvFiles),
	}
}

// HealthyKept is how many healthy revisions are remembered per
// environment: a manual rollback from the last healthy one goes to the one
// before it.
const HealthyKept = 5

// Healthy returns env's healthy revisions, newest first.
func (s *Store) Healthy(env string) ([]HealthyRevision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy(env)
}

func (s *Store) healthy(env string) ([]HealthyRevision, error) {
	var list []HealthyRevision
	if err := s.readJSON(path(env, "healthy.json"), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// PushHealthy records hr as env's newest healthy revision (moved to the
// front if it was there already), keeping HealthyKept. An unreadable
// record is started over: it costs the older rollback targets, not the
// deployment. Nothing is written when hr already is the newest.
func (s *Store) PushHealthy(env string, hr HealthyRevision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := s.healthy(env)
	if err != nil {
		s.log.Warn().Err(err).Str("env", env).Msg("the record of healthy revisions is unreadable: starting it over")
		list = nil
	}
	if len(list) > 0 && list[0].Commit == hr.Commit && list[0].ReleaseDir == hr.ReleaseDir {
		return nil
	}
	out := []HealthyRevision{hr}
	for _, old := range list {
		if old.Commit != hr.Commit && len(out) < HealthyKept {
			out = append(out, old)
		}
	}
	return s.writeJSON(path(env, "healthy.json"), out)
}

// RollbackTarget is the newest healthy revision that is not commit, the
// one being left.
func RollbackTarget(list []HealthyRevision, commit string) (HealthyRevision, bool) {
	for _, hr := range list {
		if hr.Commit != commit {
			return hr, true
		}
	}
	return HealthyRevision{}, false
}

// Quarantine is a commit that is not applied to an environment until the
// pin names a different commit or an operator runs `lockstep retry`.
type Quarantine struct {
	Commit  string    `json:"commit"`
	Service string    `json:"service,omitempty"` // the service that failed the gate
	Reason  string    `json:"reason"`
	Manual  bool      `json:"manual,omitempty"` // held by `lockstep rollback`, not by a failure
	At      time.Time `json:"at"`
}

// Quarantine returns the commits env holds back, newest first. An
// unreadable record is an error, never "none": failing open would
// redeploy a release known to be broken.
func (s *Store) Quarantine(env string) ([]Quarantine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quarantine(env)
}

func (s *Store) quarantine(env string) ([]Quarantine, error) {
	var list []Quarantine
	if err := s.readJSON(path(env, "quarantine.json"), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// Hold quarantines q.Commit for env (replacing an older entry of the same
// commit).
func (s *Store) Hold(env string, q Quarantine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := s.quarantine(env)
	if err != nil {
		return err
	}
	out := []Quarantine{q}
	for _, old := range list {
		if old.Commit != q.Commit {
			out = append(out, old)
		}
	}
	return s.writeJSON(path(env, "quarantine.json"), out)
}

// ClearQuarantine releases every commit env holds back and returns them;
// nothing is written when there were none.
func (s *Store) ClearQuarantine(env string) ([]Quarantine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := s.quarantine(env)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return list, s.writeJSON(path(env, "quarantine.json"), []Quarantine{})
}

// Quarantined finds commit in list.
func Quarantined(list []Quarantine, commit string) (Quarantine, bool) {
	for _, q := range list {
		if q.Commit == commit && commit != "" {
			return q, true
		}
	}
	return Quarantine{}, false
}

// Commits lists the commits of list, in its order.
func Commits(list []Quarantine) []string {
	var out []string
	for _, q := range list {
		out = append(out, q.Commit)
	}
	return out
}

// adoptions is the record of adopted containers of an environment, for one
// project (a record of another project says nothing about this one).
type adoptions struct {
	Project    string              `json:"project"`
	Containers []reconcile.Adopted `json:"containers"`
}

// Adopted returns the containers lockstep took over from Docker Compose in
// env, as last recorded; nil when none, or when recorded for another
// project.
func (s *Store) Adopted(env, project string) ([]reconcile.Adopted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec adoptions
	if err := s.readJSON(path(env, "adopted.json"), &rec); err != nil {
		return nil, err
	}
	if rec.Project != project {
		return nil, nil
	}
	return rec.Containers, nil
}

// SaveAdopted records list as the adopted containers of env's project.
// Nothing is written when the record is the same (ignoring when each was
// adopted), nor when there is none and never was: a pass of a project
// lockstep created writes nothing.
func (s *Store) SaveAdopted(env, project string, list []reconcile.Adopted) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old adoptions
	err := s.readJSON(path(env, "adopted.json"), &old)
	if err == nil && old.Project == project && sameAdopted(old.Containers, list) {
		return nil
	}
	if err == nil && old.Project == "" && len(list) == 0 {
		return nil
	}
	return s.writeJSON(path(env, "adopted.json"), adoptions{Project: project, Containers: list})
}

func sameAdopted(a, b []reconcile.Adopted) bool {
	return slices.EqualFunc(a, b, func(x, y reconcile.Adopted) bool {
		x.At, y.At = time.Time{}, time.Time{}
		return x == y
	})
}
