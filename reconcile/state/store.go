package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/rs/zerolog"
)

// DefaultHistorySize is how many passes per environment are kept.
const DefaultHistorySize = 200

// Store reads and writes the records of every environment under one state
// dir. A Store with no dir keeps the records in memory, for tests and for
// a one-off run that must not write: it behaves the same, it only forgets
// on exit. A Store is safe for concurrent use within one process; across
// processes every write replaces a whole file atomically.
type Store struct {
	dir         string
	historySize int
	log         zerolog.Logger

	mu    sync.Mutex          // serializes read-modify-write of one process
	mem   map[string][]byte   // the files, when dir is ""
	locks map[string]*envLock // the in-process half of each environment's apply lock
}

// New returns the store of dir ("" = in memory only). historySize <= 0 is
// DefaultHistorySize. log is where a record that cannot be read is
// reported (it is moved aside, not lost).
func New(dir string, historySize int, log zerolog.Logger) *Store {
	if historySize <= 0 {
		historySize = DefaultHistorySize
	}
	return &Store{dir: dir, historySize: historySize, log: log, mem: map[string][]byte{}}
}

// Dir is the state dir ("" for a store in memory).
func (s *Store) Dir() string { return s.dir }

// CheckEnvironment refuses an environment name that cannot be a directory
// name under the state dir.
func CheckEnvironment(env string) error {
	if env == "" || env == "." || env == ".." || containsAny(env, "/\\\x00") {
		return fmt.Errorf("environment name %q cannot be a directory name; use letters, digits, '-' and '_'", env)
	}
	return nil
}

func containsAny(s, chars string) bool {
	for _, c := range s {
		for _, d := range chars {
			if c == d {
				return true
			}
		}
	}
	return false
}

// path is the file of one record of env, relative to the store.
func path(env, name string) string { return filepath.Join("environments", env, name) }

// read returns the bytes of a record; a missing record is (nil, nil).
func (s *Store) read(rel string) ([]byte, error) {
	if s.dir == "" {
		return s.mem[rel], nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// write replaces a record atomically.
func (s *Store) write(rel string, data []byte) error {
	if s.dir == "" {
		s.mem[rel] = append([]byte(nil), data...)
		return nil
	}
	p := filepath.Join(s.dir, rel)
	if err := WriteFileAtomic(p, data); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// readJSON decodes a record into v; a missing record leaves v as it is.
func (s *Store) readJSON(rel string, v any) error {
	b, err := s.read(rel)
	if err != nil || b == nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w (delete it to start over)", s.shown(rel), err)
	}
	return nil
}

func (s *Store) writeJSON(rel string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", s.shown(rel), err)
	}
	return s.write(rel, append(b, '\n'))
}

// shown is how a record is named in messages: its path on disk.
func (s *Store) shown(rel string) string {
	if s.dir == "" {
		return rel
	}
	return filepath.Join(s.dir, rel)
}

// WriteFileAtomic writes data to a temp file beside path, syncs it, renames
// it over path and syncs the directory: a crash leaves the old file or the
// new one.
func WriteFileAtomic(path string, data []byte) error {
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
