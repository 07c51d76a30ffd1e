package gitsource

import (
	"io/fs"
	"syscall"
)

// statOf is the part of a file's stat that any write changes: the inode
// (a file replaced), mtime, and ctime, which also moves on chmod or a
// touch that sets mtime back and cannot itself be set back.
func statOf(fi fs.FileInfo) fileStat {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStat{}
	}
	return fileStat{Ino: st.Ino, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}
