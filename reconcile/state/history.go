package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// History returns up to limit of env's most recent passes, newest last;
// limit <= 0 returns all that are kept. A history file that does not parse
// is moved aside (so a person can look at it) and the history starts
// empty: losing the list of past passes must never stop a deployment.
func (s *Store) History(env string, limit int) ([]reconcile.PassRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.history(env)
	if limit > 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return recs, err
}

// AppendHistory adds rec to env's history, keeping the newest
// historySize passes, and writes the whole list atomically.
func (s *Store) AppendHistory(env string, rec reconcile.PassRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.history(env)
	if err != nil {
		return err
	}
	recs = append(recs, rec)
	if over := len(recs) - s.historySize; over > 0 {
		recs = slices.Delete(recs, 0, over)
	}
	return s.writeJSON(path(env, "history.json"), recs)
}

// history reads env's history; the caller holds s.mu.
func (s *Store) history(env string) ([]reconcile.PassRecord, error) {
	rel := path(env, "history.json")
	b, err := s.read(rel)
	if err != nil || b == nil {
		return nil, err
	}
	var recs []reconcile.PassRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		s.moveAside(env, rel, err)
		return nil, nil
	}
	if over := len(recs) - s.historySize; over > 0 {
		recs = slices.Delete(recs, 0, over)
	}
	return recs, nil
}

// moveAside keeps an unreadable history for a person to look at.
func (s *Store) moveAside(env, rel string, cause error) {
	if s.dir == "" {
		delete(s.mem, rel)
		return
	}
	p := filepath.Join(s.dir, rel)
	aside := p + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	s.log.Error().Err(cause).Str("env", env).Str("file", p).Str("moved_to", aside).
		Msg("pass history unreadable: moved aside, starting an empty history")
	if err := os.Rename(p, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error().Err(fmt.Errorf("move aside: %w", err)).Str("env", env).Str("file", p).
			Msg("cannot move the unreadable history aside; it will be overwritten by the next pass")
	}
}
