//go:build !linux

package compose

import "errors"

// isTmpfs cannot tell a tmpfs outside Linux, so decrypted files are never
// written there.
func isTmpfs(string) (bool, error) {
	return false, errors.New("decrypted secrets can only be materialized on a Linux tmpfs")
}
