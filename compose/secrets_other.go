//go:build !linux

package compose

import (
	"errors"
	"io/fs"
)

// isTmpfs cannot tell a tmpfs outside Linux, so decrypted files are never
// written there.
func isTmpfs(string) (bool, error) {
	return false, errors.New("decrypted secrets can only be materialized on a Linux tmpfs")
}

// fileOwner is never reached outside Linux (isTmpfs refuses first); it
// reports the owner unknown, which the runtime-dir checks refuse.
func fileOwner(fs.FileInfo) (uint32, bool) { return 0, false }
