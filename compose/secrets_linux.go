package compose

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// isTmpfs reports whether dir lives on a tmpfs or ramfs: memory, never
// written to disk (tmpfs may swap; an encrypted or absent swap is the
// host's business).
func isTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	t := uint32(st.Type)
	return t == uint32(unix.TMPFS_MAGIC) || t == uint32(unix.RAMFS_MAGIC), nil
}

// fileOwner returns the uid that owns the file fi describes.
func fileOwner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
