package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Member records that an environment belongs to an [[environment_set]]:
// what makes a review environment whose pin file is gone known after a
// restart (and torn down then, also after a kill -9 during its teardown),
// and in which order the running ones came (the oldest are kept under
// the set's max).
type Member struct {
	Set     string    `json:"set"`
	Project string    `json:"project"`
	PinFile string    `json:"pin_file"`
	Since   time.Time `json:"since"` // when the agent first started it
	// Expired is the commit whose ttl ran out: the environment is torn
	// down and not deployed again until its pin names another commit.
	Expired string `json:"expired,omitempty"`
}

// SaveMember records m for env, the first time or when it changed.
func (s *Store) SaveMember(env string, m Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old *Member
	if err := s.readJSON(path(env, "member.json"), &old); err == nil && old != nil && *old == m {
		return nil
	}
	return s.writeJSON(path(env, "member.json"), m)
}

// Member returns env's set membership, nil when it is none's.
func (s *Store) Member(env string) (*Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m *Member
	if err := s.readJSON(path(env, "member.json"), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Members returns every environment the state dir records as a member of
// set, by name.
func (s *Store) Members(set string) (map[string]Member, error) {
	envs, err := s.environments()
	if err != nil {
		return nil, err
	}
	out := map[string]Member{}
	for _, env := range envs {
		m, err := s.Member(env)
		if err != nil {
			return nil, err
		}
		if m != nil && m.Set == set {
			out[env] = *m
		}
	}
	return out, nil
}

// environments lists the environments the state dir has records of.
func (s *Store) environments() ([]string, error) {
	if s.dir == "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		seen := map[string]bool{}
		for rel := range s.mem {
			if parts := strings.Split(filepath.ToSlash(rel), "/"); len(parts) == 3 && parts[0] == "environments" {
				seen[parts[1]] = true
			}
		}
		var out []string
		for env := range seen {
			out = append(out, env)
		}
		sort.Strings(out)
		return out, nil
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "environments"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list environments in %s: %w", s.dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Forget removes what env's deployment left in the state dir once it is
// torn down: what runs, its healthy revisions, its quarantine, its
// adopted containers and (unless keepMember, for an environment held
// back by its ttl) its set membership. The history stays. Each file goes
// by one unlink: a kill -9 between two leaves some, which the teardown
// that the restart runs removes.
func (s *Store) Forget(env string, keepMember bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{"deployed.json", "healthy.json", "quarantine.json", "adopted.json"}
	if !keepMember {
		names = append(names, "member.json")
	}
	for _, name := range names {
		rel := path(env, name)
		if s.dir == "" {
			delete(s.mem, rel)
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("forget %s: %w", env, err)
		}
	}
	return nil
}
