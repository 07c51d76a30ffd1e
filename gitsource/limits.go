package gitsource

import (
	"fmt"
	"path"
)

// Size limits of what lockstep reads from git. A real deploy stays far
// below them; they exist so that a commit cannot make lockstep read a
// 50 MB compose file into memory or fill the disk with a release. Each is
// checked from the sizes git records for the blobs, before anything is
// written, and refused as a *LimitError naming the file and the limit.
const (
	// MaxComposeFileBytes bounds each compose file: the pin's
	// compose_files (or the default compose.yaml), and the files they
	// include or extend (checked by the compose loader).
	MaxComposeFileBytes = 4 << 20
	// MaxEnvFileBytes bounds each env file: the release's .env and
	// .env.age, the pin's env_files, and a service's env_file (checked by
	// the compose loader).
	MaxEnvFileBytes = 4 << 20
	// MaxReleaseBytes bounds the regular files of a release together.
	MaxReleaseBytes = 1 << 30
	// MaxReleaseEntries bounds the files, directories and symlinks of a
	// release.
	MaxReleaseEntries = 200_000
)

// LimitError says a file of a commit (or the commit's tree as a whole) is
// over one of the size limits above.
type LimitError struct {
	Path  string // repo-relative; "" for the whole tree
	What  string // "compose file", "env file", "release tree"
	Size  int64  // bytes, or entries for MaxReleaseEntries
	Limit int64
	Unit  string // "bytes" or "entries"
}

func (e *LimitError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("the %s has %d %s, over lockstep's limit of %d %s; keep large assets out of the infrastructure repository (build them into images)",
			e.What, e.Size, e.Unit, e.Limit, e.Unit)
	}
	return fmt.Sprintf("%s: %s of %d %s is over lockstep's limit of %d %s (%s); split it or move the data out of the repository",
		e.Path, e.What, e.Size, e.Unit, e.Limit, e.Unit, humanBytes(e.Limit))
}

// Permanent is true: the commit's tree never changes; only a new commit can
// fix it.
func (e *LimitError) Permanent() bool { return true }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// defaultComposeFiles are the names the compose loader tries when a pin
// names no compose_files, in its order.
var defaultComposeFiles = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}

// readFiles are the files of a release that lockstep itself reads while
// loading, as far as they are known before the compose files are parsed.
type readFiles struct {
	compose []string // repo-relative; empty: the default names
	env     []string // the pin's env_files
}

// checkLimits refuses a tree over the release limits, or one whose
// compose or env files named in rf are over theirs. Entries that do not
// exist are left to the loader, which says so in its own words.
func checkLimits(entries []manifestEntry, rf readFiles) error {
	if len(entries) > MaxReleaseEntries {
		return &LimitError{What: "release tree", Size: int64(len(entries)), Limit: MaxReleaseEntries, Unit: "entries"}
	}
	var total int64
	byPath := make(map[string]manifestEntry, len(entries))
	for _, e := range entries {
		byPath[e.Path] = e
		if e.Kind == kindFile || e.Kind == kindExec {
			total += e.Size
		}
	}
	if total > MaxReleaseBytes {
		return &LimitError{What: "release tree", Size: total, Limit: MaxReleaseBytes, Unit: "bytes"}
	}
	compose := rf.compose
	if len(compose) == 0 {
		compose = defaultComposeFiles
	}
	check := func(p, what string, limit int64) error {
		e, ok := byPath[path.Clean(p)]
		if ok && e.Size > limit && e.Kind != kindDir && e.Kind != kindSymlink {
			return &LimitError{Path: e.Path, What: what, Size: e.Size, Limit: limit, Unit: "bytes"}
		}
		return nil
	}
	for _, p := range compose {
		if err := check(p, "compose file", MaxComposeFileBytes); err != nil {
			return err
		}
	}
	for _, p := range append([]string{".env", ".env.age"}, rf.env...) {
		if err := check(p, "env file", MaxEnvFileBytes); err != nil {
			return err
		}
	}
	return nil
}
