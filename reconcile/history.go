package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultHistorySize is how many passes per environment are kept.
const DefaultHistorySize = 200

// UnknownEnvironmentError is returned for an environment the agent does not
// run (a typo in `lockstep history ENV` or `lockstep sync ENV`).
type UnknownEnvironmentError struct {
	Name  string
	Known []string
}

func (e *UnknownEnvironmentError) Error() string {
	return fmt.Sprintf("no environment named %q; this agent runs: %s", e.Name, strings.Join(e.Known, ", "))
}

// NotFound is true: the API answers 404.
func (e *UnknownEnvironmentError) NotFound() bool { return true }

// history is the bounded list of one environment's passes, oldest first,
// mirrored to <state_dir>/environments/<env>/history.json (a JSON array of
// PassRecord). It is not safe for concurrent use: the agent holds its lock.
type history struct {
	path    string // "" keeps it in memory only
	size    int
	records []PassRecord
}

func historyPath(stateDir, env string) string {
	return filepath.Join(stateDir, "environments", env, "history.json")
}

// loadHistory reads env's history. A missing file is an empty history. A
// file that does not parse is moved aside (so a person can look at it) and
// the history starts empty: losing the list of past passes must never stop
// the agent from deploying.
func loadHistory(stateDir, env string, size int, now time.Time, log zerolog.Logger) *history {
	h := &history{size: size}
	if stateDir == "" {
		return h
	}
	h.path = historyPath(stateDir, env)
	b, err := os.ReadFile(h.path)
	if errors.Is(err, fs.ErrNotExist) {
		return h
	}
	if err == nil {
		err = json.Unmarshal(b, &h.records)
	}
	if err != nil {
		h.records = nil
		aside := h.path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
		log.Error().Err(err).Str("env", env).Str("file", h.path).Str("moved_to", aside).
			Msg("pass history unreadable: moved aside, starting an empty history")
		if rerr := os.Rename(h.path, aside); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			log.Error().Err(rerr).Str("env", env).Str("file", h.path).Msg("cannot move the unreadable history aside; it will be overwritten by the next pass")
		}
		return h
	}
	h.trim()
	return h
}

func (h *history) trim() {
	if over := len(h.records) - h.size; over > 0 {
		h.records = slices.Delete(h.records, 0, over)
	}
}

// add appends rec and writes the whole list atomically. A write failure is
// returned for logging; the record stays in memory either way.
func (h *history) add(rec PassRecord) error {
	h.records = append(h.records, rec)
	h.trim()
	if h.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(h.records, "", "  ")
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	if err := writeFileAtomic(h.path, append(b, '\n')); err != nil {
		return fmt.Errorf("write history %s: %w", h.path, err)
	}
	return nil
}

// last returns up to limit records, newest last; limit <= 0 means all.
func (h *history) last(limit int) []PassRecord {
	recs := h.records
	if limit > 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return slices.Clone(recs)
}
